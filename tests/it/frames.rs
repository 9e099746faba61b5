//! A scripted stream sending flashblocks the ways real streams do: text JSON, binary JSON,
//! Brotli-compressed binary (websocket-proxy `--enable-compression`, Base), and metadata that is
//! only `{ "block_number": … }` (Base). Each is applied; garbage and an oversized Brotli frame
//! are counted and skipped, and the stream goes on.

use std::time::Duration;

use alloy_primitives::B256;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use e2e::{
    LoneEngine, call, client, eventually_some, flashblock, metric, scripted_server, start_rpc,
    transfer,
};

const DEADLINE: Duration = Duration::from_secs(5);

/// Brotli as websocket-proxy writes it (quality 5, 4 MiB window).
fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    out
}

fn text_of(m: Message) -> String {
    match m {
        Message::Text(t) => t.to_string(),
        other => panic!("support::flashblock sends text, got {other:?}"),
    }
}

/// The same flashblock with its metadata cut down to `block_number`, as Base sends it.
fn metadata_only(m: Message, number: u64) -> String {
    let mut v: Value = serde_json::from_str(&text_of(m)).unwrap();
    v["metadata"] = json!({ "block_number": number });
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_binary_brotli_and_metadata_only_frames_are_applied() {
    let LoneEngine {
        engine,
        upstream: _,
        signers,
        chain_id,
        head_hash,
    } = LoneEngine::start().await;

    let (url, frames) = scripted_server().await;
    // A 64 KiB frame limit: the oversized frame below inflates to 1 MiB.
    let rpc = start_rpc(&url, &engine.http_url(), &["--max-frame-bytes", "65536"]).await;
    let ours = client(&rpc.http_url(), None);
    let txs: Vec<_> = (0..4).map(|n| transfer(&signers[0], chain_id, n)).collect();
    let hashes: Vec<B256> = (0..4).map(|i| B256::repeat_byte(0xb0 + i)).collect();
    let fb = |i: usize| {
        flashblock(
            0xb,
            i as u64,
            1,
            head_hash,
            i as u64,
            std::slice::from_ref(&txs[i]),
            hashes[i],
        )
    };
    let pending_hash = |want: B256| {
        let ours = &ours;
        async move {
            let b = call(ours, "eth_getBlockByNumber", json!(["pending", false])).await;
            (b["hash"] == json!(want)).then_some(())
        }
    };
    let malformed = || {
        metric(
            &rpc.metrics_text(),
            r#"flashblocks_rpc_flashblocks_rejected_total{reason="malformed"}"#,
        )
    };

    // 0: text JSON with receipts.
    frames.send(fb(0)).await.unwrap();
    eventually_some(DEADLINE, "text frame applied", || pending_hash(hashes[0])).await;
    // 1: the same JSON in a binary frame.
    frames
        .send(Message::Binary(text_of(fb(1)).into_bytes().into()))
        .await
        .unwrap();
    eventually_some(DEADLINE, "binary JSON frame applied", || {
        pending_hash(hashes[1])
    })
    .await;
    // Garbage and a Brotli frame inflating past --max-frame-bytes: counted, skipped.
    frames
        .send(Message::Binary(vec![0xff, 0x00, 0x13, 0x37].into()))
        .await
        .unwrap();
    frames
        .send(Message::Binary(brotli(&vec![b' '; 1 << 20]).into()))
        .await
        .unwrap();
    // 2: Brotli-compressed binary, metadata only `block_number` (no receipts, no balances).
    frames
        .send(Message::Binary(
            brotli(metadata_only(fb(2), 1).as_bytes()).into(),
        ))
        .await
        .unwrap();
    eventually_some(DEADLINE, "brotli metadata-only frame applied", || {
        pending_hash(hashes[2])
    })
    .await;
    assert_eq!(malformed(), 2.0);
    // 3: metadata only, as a text frame.
    frames
        .send(Message::Text(metadata_only(fb(3), 1).into()))
        .await
        .unwrap();
    eventually_some(DEADLINE, "text metadata-only frame applied", || {
        pending_hash(hashes[3])
    })
    .await;

    let block = call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await;
    let in_block: Vec<B256> = serde_json::from_value(block["transactions"].clone()).unwrap();
    assert_eq!(in_block, txs.iter().map(|(_, h)| *h).collect::<Vec<_>>());
    // A transaction the stream sent without its receipt is served; its receipt is not made up.
    let tx = call(&ours, "eth_getTransactionByHash", json!([txs[2].1])).await;
    assert_eq!(tx["hash"], json!(txs[2].1));
    let nonce = call(
        &ours,
        "eth_getTransactionCount",
        json!([signers[0].address(), "pending"]),
    )
    .await;
    assert_eq!(nonce, json!("0x4"));
    assert_eq!(
        metric(
            &rpc.metrics_text(),
            "flashblocks_rpc_flashblocks_applied_total"
        ),
        4.0
    );
    assert_eq!(malformed(), 2.0);
    rpc.shutdown().await;
}
