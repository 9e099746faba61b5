//! Upstreams that compress their answers, driven by op-node's Go client (which asks for gzip on
//! every call): every routing row stays readable, builder blocks are still used and the health
//! stays 200, while the raw proxy hands the EL's compressed bytes through untouched.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    harness::{attributes, eventually, forkchoice},
    mock_engine::Compression,
    peers::{Peers, compressing, gunzip, start},
};

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

async fn op_geth_pair() -> Peers {
    start(
        compressing(Compression::Geth),
        compressing(Compression::Geth),
        &[],
    )
    .await
}

/// op-geth as local EL and builder EL (gzips every answer whose request accepts gzip, the
/// engine port included), op-node's Go client asking for gzip: FCU with attributes,
/// getPayload, newPayload and FCU without attributes are all read by engine-mux, the builder's
/// blocks are proposed, and `/healthz` stays 200.
#[tokio::test]
async fn op_geth_gzip_engine_calls_still_give_builder_blocks_and_health_200() {
    let p = op_geth_pair().await;
    p.builder_blocks(3).await;
    assert_eq!(
        test_utils::metric(
            &p.mux.metrics_text(),
            r#"engine_mux_blocks_proposed_total{source="local"}"#
        ),
        0.0
    );
    assert_eq!(p.healthz().await, 200);
    // engine-mux asked the local EL for uncompressed engine answers.
    let engine = p.local.engine_calls();
    assert!(!engine.is_empty());
    for call in &engine {
        assert_eq!(
            call.accept_encoding.as_deref(),
            Some("identity"),
            "{}",
            call.method
        );
    }
    // op-node gets engine-mux's answer plain, without a stale Content-Encoding.
    let res = p
        .op_node
        .post(
            request(
                7,
                "engine_forkchoiceUpdatedV3",
                json!([forkchoice(103), null]),
            )
            .to_string(),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.content_encoding(), None);
    assert_eq!(res.json()["result"]["payloadStatus"]["status"], "VALID");
    // Mirrored calls reached the gzipping builder and were read there too.
    eventually(Duration::from_secs(2), "newPayload mirrored", || async {
        p.builder.calls_of("engine_newPayloadV3").len() == 3
    })
    .await;
}

/// op-geth local EL: FCU with `noTxPool`, `engine_exchangeCapabilities` (local only) and
/// `eth_sendRawTransaction` (copied to the builder) all reach op-node readable through Go's
/// gzip decoding, and the copy reaches the op-geth builder.
#[tokio::test]
async fn op_geth_gzip_other_engine_calls_and_transaction_copies_stay_readable() {
    let p = op_geth_pair().await;
    let fcu = p
        .op_node
        .call(
            "engine_forkchoiceUpdatedV3",
            json!([forkchoice(100), attributes(true)]),
        )
        .await
        .unwrap();
    assert!(fcu["payloadId"].as_str().unwrap().starts_with("0x03"));
    let caps = p
        .op_node
        .call(
            "engine_exchangeCapabilities",
            json!([["engine_getPayloadV3"]]),
        )
        .await
        .unwrap();
    assert!(caps.as_array().is_some(), "{caps}");
    let sent = p
        .op_node
        .call("eth_sendRawTransaction", json!(["0x02f8"]))
        .await
        .unwrap();
    assert_eq!(sent["engine"], "local");
    eventually(
        Duration::from_secs(2),
        "the copy reached the builder",
        || async { p.builder.calls_of("eth_sendRawTransaction").len() == 1 },
    )
    .await;
    assert_eq!(p.healthz().await, 200);
}

/// op-geth local EL, raw proxy (`eth_chainId`): op-node's `Accept-Encoding: gzip` reaches the
/// EL, and op-node receives the EL's exact gzipped bytes with `Content-Encoding: gzip` (Go
/// decodes them itself).
#[tokio::test]
async fn op_geth_gzip_raw_proxy_returns_the_els_exact_compressed_bytes() {
    let p = op_geth_pair().await;
    let res = p
        .op_node
        .post(request(5, "eth_chainId", json!([])).to_string())
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.content_encoding(), Some("gzip"));
    assert!(
        p.local.sent_on_the_wire(&res.wire),
        "the body is the EL's own gzip bytes"
    );
    assert_eq!(res.json()["result"]["method"], "eth_chainId");
    assert_eq!(
        p.local.calls_of("eth_chainId")[0]
            .accept_encoding
            .as_deref(),
        Some("gzip")
    );
}

/// op-geth local EL, batches from op-node's Go client: a batch without engine calls is proxied
/// untouched (the EL's gzip bytes); a batch holding an engine call is answered by engine-mux
/// item by item, every item read as JSON.
#[tokio::test]
async fn op_geth_gzip_batches_stay_readable() {
    let p = op_geth_pair().await;
    let plain = json!([
        request(1, "eth_blockNumber", json!([])),
        request(2, "eth_sendRawTransaction", json!(["0x02aa"]))
    ]);
    let res = p.op_node.post(plain.to_string()).await;
    assert_eq!(res.content_encoding(), Some("gzip"));
    assert!(p.local.sent_on_the_wire(&res.wire));
    assert_eq!(res.json().as_array().unwrap().len(), 2);

    let mixed = json!([
        request(
            3,
            "engine_forkchoiceUpdatedV3",
            json!([forkchoice(100), attributes(false)])
        ),
        request(4, "eth_chainId", json!([]))
    ]);
    let res = p.op_node.post(mixed.to_string()).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.content_encoding(), None);
    let items = res.json();
    let items = items.as_array().unwrap();
    assert!(
        items[0]["result"]["payloadId"]
            .as_str()
            .is_some_and(|id| id.starts_with("0x03")),
        "{items:?}"
    );
    assert_eq!(items[1]["result"]["method"], "eth_chainId", "{items:?}");
    // engine-mux reads the items itself, so it asked for none compressed.
    assert_eq!(p.local.calls_of("eth_chainId")[0].accept_encoding, None);
    assert_eq!(p.healthz().await, 200);
}

/// reth as local EL and builder (tower-http compression: gzip, deflate, br, zstd, the coding
/// the client prefers): engine calls stay plain and give builder blocks; on the raw proxy
/// op-node's gzip request gets gzip, and a client preferring br gets the EL's br untouched.
#[tokio::test]
async fn reth_compression_follows_each_clients_preference_through_the_raw_proxy() {
    let p = start(
        compressing(Compression::Reth),
        compressing(Compression::Reth),
        &[],
    )
    .await;
    p.builder_blocks(2).await;
    assert_eq!(p.healthz().await, 200);

    let body = request(9, "eth_chainId", json!([])).to_string();
    let res = p.op_node.post(body.clone()).await;
    assert_eq!(res.content_encoding(), Some("gzip"));
    assert_eq!(res.json()["result"]["method"], "eth_chainId");

    let res = p.op_node.post_accepting(body, "gzip;q=0.5, br;q=1.0").await;
    assert_eq!(res.content_encoding(), Some("br"));
    let decoded = engine_api::content_encoding::decode(
        res.headers.get("content-encoding"),
        res.wire.clone(),
        1 << 20,
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(v["result"]["method"], "eth_chainId");
    // Sanity: the gzip path above really was gzip on the wire.
    assert!(
        !gunzip(
            &p.op_node
                .post(request(10, "eth_chainId", json!([])).to_string())
                .await
                .wire
        )
        .await
        .is_empty()
    );
}

/// Upstreams behind a proxy that compresses every answer whatever the client asked (br, zstd,
/// deflate, gzip): engine-mux decodes everything it reads itself (engine path, builder calls,
/// validation on the local EL, probes, batch items), so builder blocks are used and
/// `/healthz` stays 200.
#[tokio::test]
async fn answers_compressed_regardless_of_accept_encoding_are_decoded_on_every_read() {
    for coding in ["br", "zstd", "deflate", "gzip"] {
        // About decoding, not deadlines: the most generous ones allowed, so a loaded machine cannot turn a slow
        // (but decoded) answer into a fallback.
        let p = start(
            compressing(Compression::Always(coding)),
            compressing(Compression::Always(coding)),
            &[
                "--builder-timeout",
                "900",
                "--get-payload-deadline-ms",
                "950",
            ],
        )
        .await;
        p.builder_blocks(2).await;
        assert_eq!(p.healthz().await, 200, "{coding}");
        let mixed = json!([
            request(
                1,
                "engine_forkchoiceUpdatedV3",
                json!([forkchoice(102), null])
            ),
            request(2, "eth_chainId", json!([]))
        ]);
        let res = p.op_node.post(mixed.to_string()).await;
        let items = res.json();
        assert_eq!(
            items[0]["result"]["payloadStatus"]["status"], "VALID",
            "{coding}: {items}"
        );
        assert_eq!(
            items[1]["result"]["method"], "eth_chainId",
            "{coding}: {items}"
        );
    }
}

/// A builder behind an always-compressing proxy (zstd) that restarts after missing blocks:
/// catch-up reads its compressed probe answers and replays the missed blocks, and it builds
/// the next block again.
#[tokio::test]
async fn catch_up_reads_a_compressing_builder() {
    let p = start(
        compressing(Compression::Geth),
        compressing(Compression::Always("zstd")),
        &["--max-unsafe-interval", "30"],
    )
    .await;
    p.builder_blocks(1).await;
    p.builder.down();
    for _ in 0..3 {
        p.block().await;
    }
    p.builder.clear_calls();
    p.builder.up().await;
    eventually(
        Duration::from_secs(5),
        "catch-up replayed 3 blocks",
        || async {
            test_utils::metric(
                &p.mux.metrics_text(),
                r#"engine_mux_catch_up_replayed_blocks_total{source="recent"}"#,
            ) == 3.0
        },
    )
    .await;
    assert_eq!(p.builder.calls_of("engine_newPayloadV3").len(), 3);
    let number = 105;
    assert_eq!(p.block().await, p.builder.block_hash(number).to_string());
    assert_eq!(
        p.healthz().await,
        200,
        "its good block clears the outage's 206"
    );
}
