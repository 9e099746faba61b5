//! Once a block is sealed, what was served for it from pending state is what the upstream
//! serves for it: block, transactions, receipts, balances and nonces.

use std::collections::BTreeSet;

use alloy_primitives::{Address, U256};
use futures::future::join_all;
use serde_json::{Value, json};

use e2e::{BLOCK_TIME, Net, assert_covers, call, client, quantity, start_rpc};

/// Fee vaults and the fee recipient are touched by every transaction.
const VAULTS: [&str; 2] = [
    "0x4200000000000000000000000000000000000019",
    "0x420000000000000000000000000000000000001a",
];

/// Everything served from pending state for one pending block, read between two identical
/// block hashes so it all belongs to the same flashblock.
struct Snapshot {
    number: u64,
    block: Value,
    receipts: Vec<Value>,
    balances: Vec<(Address, Value)>,
    nonces: Vec<(Address, Value)>,
}

async fn snapshot(ours: &engine_api::Upstream) -> Option<Snapshot> {
    let block = call(ours, "eth_getBlockByNumber", json!(["pending", true])).await;
    let txs = block["transactions"].as_array()?.clone();
    // Concurrent reads keep the snapshot shorter than a flashblock interval.
    let receipts = join_all(
        txs.iter()
            .map(|tx| call(ours, "eth_getTransactionReceipt", json!([tx["hash"]]))),
    )
    .await;
    let mut accounts = BTreeSet::new();
    for tx in &txs {
        if let Some(to) = tx["to"].as_str() {
            accounts.insert(to.parse::<Address>().ok()?);
        }
        accounts.insert(tx["from"].as_str()?.parse::<Address>().ok()?);
    }
    accounts.insert(block["miner"].as_str()?.parse().ok()?);
    for v in VAULTS {
        accounts.insert(v.parse().ok()?);
    }
    let accounts: Vec<Address> = accounts.into_iter().collect();
    let balances = join_all(
        accounts
            .iter()
            .map(|a| call(ours, "eth_getBalance", json!([a, "pending"]))),
    )
    .await;
    let nonces = join_all(
        accounts
            .iter()
            .map(|a| call(ours, "eth_getTransactionCount", json!([a, "pending"]))),
    )
    .await;
    let balances: Vec<(Address, Value)> = accounts.iter().copied().zip(balances).collect();
    let nonces: Vec<(Address, Value)> = accounts.iter().copied().zip(nonces).collect();
    let again = call(ours, "eth_getBlockByNumber", json!(["pending", false])).await;
    (again["hash"] == block["hash"]).then(|| Snapshot {
        number: quantity(&block["number"]),
        block,
        receipts,
        balances,
        nonces,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_block_matches_what_pending_served() {
    let net = Net::start(8.0).await;
    let rpc = start_rpc(&net.flashblocks_url(), &net.upstream_url(), &[]).await;
    let ours = client(&rpc.http_url(), None);

    let mut last: Option<Snapshot> = None;
    let mut matched = 0;
    let mut compared_txs = 0;
    let deadline = tokio::time::Instant::now() + 60 * BLOCK_TIME;
    while matched < 2 || compared_txs < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "compared only {matched} sealed blocks ({compared_txs} transactions)"
        );
        let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
        if let Some(snap) = last.take_if(|s| s.number <= head) {
            let sealed = call(
                &net.local,
                "eth_getBlockByNumber",
                json!([format!("{:#x}", snap.number), true]),
            )
            .await;
            // The last flashblock we saw may not be the one that was sealed: compare only
            // when it was.
            if sealed["hash"] == snap.block["hash"] {
                compare(&net, &snap, &sealed).await;
                matched += 1;
                compared_txs += snap.receipts.len();
            }
        }
        // Kept only if the upstream had not sealed the block by the end of the snapshot: then
        // pending state held it throughout and every answer in it came from the flashblocks
        // (once sealed, calls go to the upstream, whose own `pending` includes its mempool).
        if let Some(s) = snapshot(&ours).await {
            let head_after = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            if s.number > head_after {
                last = Some(s);
            }
        }
    }

    rpc.shutdown().await;
    net.stop().await;
}

fn field_names(v: &Value) -> Vec<&String> {
    v.as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default()
}

async fn compare(net: &Net, snap: &Snapshot, sealed: &Value) {
    let n = format!("{:#x}", snap.number);
    assert_covers(&format!("block {n}"), sealed, &snap.block);
    assert_eq!(
        field_names(&snap.block),
        field_names(sealed),
        "block {n}: field sets"
    );
    // Both render receipts through rpc-objects: the pending receipt is the sealed one, L1 fee
    // fields and log positions included.
    for (i, ours) in snap.receipts.iter().enumerate() {
        let hash = &sealed["transactions"][i]["hash"];
        let theirs = call(&net.local, "eth_getTransactionReceipt", json!([hash])).await;
        assert_eq!(&theirs, ours, "receipt {hash}");
    }
    for (a, ours) in &snap.balances {
        let theirs = call(&net.local, "eth_getBalance", json!([a, n])).await;
        assert_eq!(
            theirs.as_str().map(|s| s.parse::<U256>().unwrap()),
            ours.as_str().map(|s| s.parse::<U256>().unwrap()),
            "balance of {a} at block {n}"
        );
    }
    for (a, ours) in &snap.nonces {
        let theirs = call(&net.local, "eth_getTransactionCount", json!([a, n])).await;
        assert_eq!(
            quantity(&theirs),
            quantity(ours),
            "nonce of {a} at block {n}"
        );
    }
}
