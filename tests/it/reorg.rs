//! A scripted flashblocks server: a second payload for the same height replaces the pending
//! view, and a block that does not build on the pending one drops it.

use std::time::Duration;

use alloy_primitives::B256;
use serde_json::{Value, json};

use e2e::{
    LoneEngine, call, client, eventually_some, flashblock, metric, quantity, scripted_server,
    start_rpc,
};

const DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorged_sequence_replaces_the_pending_view() {
    let LoneEngine {
        engine,
        upstream,
        signers,
        chain_id,
        head_hash,
    } = LoneEngine::start().await;
    assert_eq!(
        quantity(&call(&upstream, "eth_blockNumber", json!([])).await),
        0
    );

    let (url, frames) = scripted_server().await;
    let rpc = start_rpc(&url, &engine.http_url(), &[]).await;
    let ours = client(&rpc.http_url(), None);
    let transfer = |signer: usize, nonce: u64| e2e::transfer(&signers[signer], chain_id, nonce);
    let a1 = transfer(0, 0);
    let a2 = transfer(0, 1);
    let b1 = transfer(1, 0);
    let (hash_a0, hash_a1, hash_b0) = (
        B256::repeat_byte(0xa0),
        B256::repeat_byte(0xa1),
        B256::repeat_byte(0xb0),
    );
    let pending_hash = || async {
        let b = call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await;
        b["hash"].clone()
    };

    // Payload A for block 1: two flashblocks.
    frames
        .send(flashblock(
            0xa,
            0,
            1,
            head_hash,
            0,
            std::slice::from_ref(&a1),
            hash_a0,
        ))
        .await
        .unwrap();
    frames
        .send(flashblock(
            0xa,
            1,
            1,
            head_hash,
            1,
            std::slice::from_ref(&a2),
            hash_a1,
        ))
        .await
        .unwrap();
    eventually_some(DEADLINE, "payload A served", || async {
        (pending_hash().await == json!(hash_a1)).then_some(())
    })
    .await;
    let receipt = call(&ours, "eth_getTransactionReceipt", json!([a2.1])).await;
    assert_eq!(receipt["blockHash"], json!(hash_a1));
    assert_eq!(receipt["cumulativeGasUsed"], json!("0xa410"));
    assert_eq!(receipt["gasUsed"], json!("0x5208"));
    let nonce = call(
        &ours,
        "eth_getTransactionCount",
        json!([signers[0].address(), "pending"]),
    )
    .await;
    assert_eq!(quantity(&nonce), 2);

    // Payload B for the same height replaces A entirely.
    frames
        .send(flashblock(
            0xb,
            0,
            1,
            head_hash,
            0,
            std::slice::from_ref(&b1),
            hash_b0,
        ))
        .await
        .unwrap();
    eventually_some(DEADLINE, "payload B served", || async {
        (pending_hash().await == json!(hash_b0)).then_some(())
    })
    .await;
    for gone in [a1.1, a2.1] {
        let r = call(&ours, "eth_getTransactionReceipt", json!([gone])).await;
        assert_eq!(r, Value::Null, "{gone} belonged to the replaced payload");
        let t = call(&ours, "eth_getTransactionByHash", json!([gone])).await;
        assert_eq!(t, Value::Null);
    }
    let r = call(&ours, "eth_getTransactionReceipt", json!([b1.1])).await;
    assert_eq!(r["blockHash"], json!(hash_b0));
    let nonce = call(
        &ours,
        "eth_getTransactionCount",
        json!([signers[0].address(), "pending"]),
    )
    .await;
    assert_eq!(quantity(&nonce), 0, "A's nonces are gone with A");
    let nonce = call(
        &ours,
        "eth_getTransactionCount",
        json!([signers[1].address(), "pending"]),
    )
    .await;
    assert_eq!(quantity(&nonce), 1);
    assert_eq!(
        metric(&rpc.metrics_text(), "flashblocks_rpc_reorgs_total"),
        1.0
    );
    // A late flashblock of the replaced payload is refused.
    frames
        .send(flashblock(0xa, 2, 1, head_hash, 2, &[], hash_a1))
        .await
        .unwrap();
    eventually_some(DEADLINE, "the late flashblock refused", || async {
        (metric(
            &rpc.metrics_text(),
            r#"flashblocks_rpc_flashblocks_rejected_total{reason="out_of_order"}"#,
        ) == 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(pending_hash().await, json!(hash_b0));

    // Block 2 builds on something other than B: B lost, nothing connects to the head, and
    // answers are the upstream's.
    frames
        .send(flashblock(
            0xc,
            0,
            2,
            B256::repeat_byte(0xee),
            0,
            &[],
            B256::repeat_byte(0xc0),
        ))
        .await
        .unwrap();
    eventually_some(DEADLINE, "B dropped", || async {
        (pending_hash().await == json!(head_hash)).then_some(())
    })
    .await;
    let r = call(&ours, "eth_getTransactionReceipt", json!([b1.1])).await;
    assert_eq!(r, Value::Null);
    assert_eq!(
        metric(
            &rpc.metrics_text(),
            "flashblocks_rpc_pending_serveable_blocks"
        ),
        0.0
    );
    assert_eq!(
        metric(&rpc.metrics_text(), "flashblocks_rpc_pending_held_blocks"),
        1.0
    );

    rpc.shutdown().await;
    engine.stop().await;
}
