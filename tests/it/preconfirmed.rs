//! A transfer is preconfirmed: its receipt, the recipient's balance and the sender's nonce
//! show up from pending state within a flashblock interval, before its block is sealed.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use serde_json::{Value, json};

use e2e::{
    BLOCK_TIME, FLASHBLOCK_INTERVAL, Net, call, client, eventually_some, metric, pending_ahead,
    quantity, quantity256, start_rpc,
};

/// Timing on a loaded machine can push one transfer past a flashblock; the property must
/// hold for one of this many transfers (with the overlay broken, none ever shows it).
const ATTEMPTS: u64 = 3;

/// What one attempt observed.
struct Observation {
    hash: B256,
    to: Address,
    nonce: u64,
    value: U256,
    receipt: Value,
    latency: Duration,
    /// Upstream head read just before the receipt was fetched.
    upstream_head_before: u64,
    /// The pending block being built when the transfer was sent.
    building: u64,
}

impl Observation {
    fn preconfirmed_in_time(&self) -> bool {
        let block = quantity(&self.receipt["blockNumber"]);
        block > self.upstream_head_before
            && block == self.building
            && self.latency < 2 * FLASHBLOCK_INTERVAL
    }
}

async fn attempt(net: &Net, ours: &engine_api::Upstream, nonce: u64) -> Observation {
    // Send right after a new block's first flashblock: the transfer can then only wait for
    // the next flashblock of the same block (one interval), not for a slot boundary.
    let tip =
        quantity(&call(ours, "eth_getBlockByNumber", json!(["pending", false])).await["number"]);
    let building = eventually_some(
        4 * BLOCK_TIME,
        "the next block's first flashblock",
        || async {
            let now = quantity(
                &call(ours, "eth_getBlockByNumber", json!(["pending", false])).await["number"],
            );
            (now > tip).then_some(now)
        },
    )
    .await;
    let to = Address::from(rand::random::<[u8; 20]>());
    let value = U256::from(123_456_789u64);
    let sent_at = Instant::now();
    let hash = net.send_transfer(nonce, to, value).await;
    let (receipt, upstream_head_before) =
        eventually_some(4 * BLOCK_TIME, "the pending receipt", || async {
            let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            let r = call(ours, "eth_getTransactionReceipt", json!([hash])).await;
            (!r.is_null()).then_some((r, head))
        })
        .await;
    Observation {
        hash,
        to,
        nonce,
        value,
        receipt,
        latency: sent_at.elapsed(),
        upstream_head_before,
        building,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_preconfirmed_within_a_flashblock_interval_before_sealing() {
    let net = Net::start(10.0).await;
    let rpc = start_rpc(&net.flashblocks_url(), &net.upstream_url(), &[]).await;
    let ours = client(&rpc.http_url(), None);
    eventually_some(10 * BLOCK_TIME, "a pending block from flashblocks", || {
        pending_ahead(&net.local, &ours)
    })
    .await;

    let sender = net.sender.address();
    let first_nonce = quantity(
        &call(
            &net.local,
            "eth_getTransactionCount",
            json!([sender, "latest"]),
        )
        .await,
    );
    let pending_before = metric(
        &rpc.metrics_text(),
        r#"flashblocks_rpc_answers_total{source="pending"}"#,
    );
    let mut seen = Vec::new();
    let mut good = None;
    for nonce in first_nonce..first_nonce + ATTEMPTS {
        let o = attempt(&net, &ours, nonce).await;
        if o.preconfirmed_in_time() {
            good = Some(o);
            break;
        }
        seen.push(format!(
            "block {} (building {}, upstream head {}) after {:?}",
            o.receipt["blockNumber"], o.building, o.upstream_head_before, o.latency
        ));
    }
    let Some(o) = good else {
        panic!("no transfer preconfirmed within an interval before sealing: {seen:?}");
    };
    assert_eq!(o.receipt["status"], json!("0x1"));
    assert_eq!(o.receipt["transactionHash"], json!(o.hash));

    let balance = call(&ours, "eth_getBalance", json!([o.to, "pending"])).await;
    assert_eq!(quantity256(&balance), o.value);
    let pending_nonce = call(&ours, "eth_getTransactionCount", json!([sender, "pending"])).await;
    assert_eq!(quantity(&pending_nonce), o.nonce + 1);
    let tx = call(&ours, "eth_getTransactionByHash", json!([o.hash])).await;
    assert_eq!(tx["blockNumber"], o.receipt["blockNumber"]);
    assert_eq!(tx["from"], json!(sender));
    let head_after = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
    if head_after < quantity(&o.receipt["blockNumber"]) {
        // Still unsealed: the upstream's own view has none of it yet.
        let upstream_balance = call(&net.local, "eth_getBalance", json!([o.to, "latest"])).await;
        assert_eq!(quantity256(&upstream_balance), U256::ZERO);
    }
    assert!(
        metric(
            &rpc.metrics_text(),
            r#"flashblocks_rpc_answers_total{source="pending"}"#
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
