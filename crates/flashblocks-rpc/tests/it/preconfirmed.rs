//! A transfer is preconfirmed: its receipt, the recipient's balance and the sender's nonce
//! show up from pending state within a flashblock interval, before its block is sealed.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use serde_json::{Value, json};

use crate::support::{
    BLOCK_TIME, FLASHBLOCK_INTERVAL, Net, call, client, metric, quantity, quantity256, start_rpc,
    wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_preconfirmed_within_a_flashblock_interval_before_sealing() {
    let net = Net::start(10.0).await;
    let rpc = start_rpc(&net.flashblocks_url(), &net.upstream_url(), &[]).await;
    let ours = client(&rpc.http_url(), None);

    // Wait until pending blocks are served (stream connected, head known).
    wait_for(
        "a pending block from flashblocks",
        10 * BLOCK_TIME,
        || async {
            let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            let pending = call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await;
            (quantity(&pending["number"]) > head).then_some(())
        },
    )
    .await;

    let sender = net.sender.address();
    let to = Address::from(rand::random::<[u8; 20]>());
    let value = U256::from(123_456_789u64);
    let nonce = quantity(
        &call(
            &net.local,
            "eth_getTransactionCount",
            json!([sender, "latest"]),
        )
        .await,
    );
    let pending_before = metric(
        &rpc,
        "flashblocks_rpc_answers_total",
        &[("source", "pending")],
    );

    // Send right after a new block's first flashblock: the transfer can then only wait for
    // the next flashblock of the same block (one interval), not for a slot boundary.
    let tip =
        quantity(&call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await["number"]);
    wait_for(
        "the next block's first flashblock",
        4 * BLOCK_TIME,
        || async {
            let now = quantity(
                &call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await["number"],
            );
            (now > tip).then_some(())
        },
    )
    .await;
    let sent_at = Instant::now();
    let hash = net.send_transfer(nonce, to, value).await;
    let (receipt, upstream_head_before) =
        wait_for("the pending receipt", 4 * BLOCK_TIME, || async {
            let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            let r = call(&ours, "eth_getTransactionReceipt", json!([hash])).await;
            (!r.is_null()).then_some((r, head))
        })
        .await;
    let latency = sent_at.elapsed();
    let block = quantity(&receipt["blockNumber"]);
    assert!(
        block > upstream_head_before,
        "receipt for block {block} was served while the upstream head was already {upstream_head_before}"
    );
    assert_eq!(receipt["status"], json!("0x1"));
    assert_eq!(receipt["transactionHash"], json!(hash));
    // One interval until the next flashblock, plus its build and our polling.
    assert!(
        latency < FLASHBLOCK_INTERVAL + Duration::from_millis(150),
        "pending receipt after {latency:?}"
    );

    let balance = call(&ours, "eth_getBalance", json!([to, "pending"])).await;
    assert_eq!(quantity256(&balance), value);
    let pending_nonce = call(&ours, "eth_getTransactionCount", json!([sender, "pending"])).await;
    assert_eq!(quantity(&pending_nonce), nonce + 1);
    let tx = call(&ours, "eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(tx["blockNumber"], receipt["blockNumber"]);
    assert_eq!(tx["from"], json!(sender));
    let head_after = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
    if head_after < block {
        // Still unsealed: the upstream's own view has none of it yet.
        let upstream_balance = call(&net.local, "eth_getBalance", json!([to, "latest"])).await;
        assert_eq!(quantity256(&upstream_balance), U256::ZERO);
    }
    assert!(
        metric(
            &rpc,
            "flashblocks_rpc_answers_total",
            &[("source", "pending")]
        ) > pending_before,
        "answers counted as pending"
    );
    let caps = call(&ours, "op_supportedCapabilities", json!([])).await;
    assert_eq!(caps, json!(["flashblocksv1"]));
    // Not a pending question: forwarded untouched.
    let chain_id: Value = call(&ours, "eth_chainId", json!([])).await;
    assert_eq!(chain_id, call(&net.local, "eth_chainId", json!([])).await);

    rpc.shutdown().await;
    net.stop().await;
}
