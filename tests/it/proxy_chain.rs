//! The production fan-out chain, end to end: the devnet builder streams flashblocks to
//! engine-mux, engine-mux re-publishes them to flashblocks-proxy, and the proxy fans them out to
//! a plain WebSocket subscriber and to flashblocks-rpc. A transfer sent to the chain is seen
//! pending through flashblocks-rpc before its block is sealed, the subscriber receives it in a
//! flashblock of that block, and the sealed block is the one that was preconfirmed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use alloy_primitives::{Address, B256, U256};
use e2e::{
    BLOCK_TIME, CALL_TIMEOUT, Net, Ws, assert_covers, call, client, eventually_some, next_json,
    pending_ahead, quantity, quantity256, start_proxy, start_rpc, subscribe, ws_url,
};
use engine_api::Upstream;
use serde_json::{Value, json};

/// A transfer landing in the last flashblock before its block is sealed may not be observable
/// as pending on a loaded machine; the property must hold for one of this many transfers (with
/// the chain broken anywhere, none shows it).
const ATTEMPTS: u64 = 3;

/// Transaction hash → block number of every flashblock receipt the subscriber received.
type Seen = Arc<Mutex<HashMap<String, u64>>>;

/// Reads the subscriber until the stream ends, recording each flashblock's receipts.
fn record(mut ws: Ws, seen: Seen) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let frame = next_json(&mut ws, 10 * BLOCK_TIME).await;
            let number = frame["metadata"]["block_number"]
                .as_u64()
                .expect("metadata.block_number");
            let receipts = frame["metadata"]["receipts"]
                .as_object()
                .expect("metadata.receipts");
            let mut seen = seen.lock().unwrap();
            for hash in receipts.keys() {
                seen.insert(hash.clone(), number);
            }
        }
    })
}

/// What one transfer looked like through flashblocks-rpc.
struct Observation {
    hash: B256,
    to: Address,
    value: U256,
    /// The receipt flashblocks-rpc served first.
    receipt: Value,
    /// The upstream's head read just before that receipt: below the receipt's block when the
    /// receipt came from pending state.
    upstream_head_before: u64,
    /// The last pending block (full transactions, the transfer among them) flashblocks-rpc
    /// served for the transfer's block while the upstream had not sealed it, with the
    /// transfer's receipt read right after.
    last_pending: Option<(Value, Value)>,
}

impl Observation {
    fn number(&self) -> u64 {
        quantity(&self.receipt["blockNumber"])
    }

    fn seen_pending(&self) -> bool {
        self.number() > self.upstream_head_before && self.last_pending.is_some()
    }
}

async fn attempt(net: &Net, ours: &Upstream, nonce: u64) -> Observation {
    // Send right after a new block's first flashblock, so the transfer has most of a slot to be
    // preconfirmed in before its block is sealed.
    let pending_number = || async {
        quantity(&call(ours, "eth_getBlockByNumber", json!(["pending", false])).await["number"])
    };
    let tip = pending_number().await;
    eventually_some(
        4 * BLOCK_TIME,
        "the next block's first flashblock",
        || async { (pending_number().await > tip).then_some(()) },
    )
    .await;
    let to = Address::from(rand::random::<[u8; 20]>());
    let value = U256::from(987_654_321u64);
    let hash = net.send_transfer(nonce, to, value).await;
    let (receipt, upstream_head_before) =
        eventually_some(4 * BLOCK_TIME, "the transfer's receipt", || async {
            let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            let r = call(ours, "eth_getTransactionReceipt", json!([hash])).await;
            (!r.is_null()).then_some((r, head))
        })
        .await;
    let number = quantity(&receipt["blockNumber"]);
    // Follow the pending block until the upstream seals it; keep the last view read entirely
    // before the seal (block and receipt between two reads of the upstream's head).
    let mut last_pending = None;
    let deadline = tokio::time::Instant::now() + 4 * BLOCK_TIME;
    while quantity(&call(&net.local, "eth_blockNumber", json!([])).await) < number {
        assert!(
            tokio::time::Instant::now() < deadline,
            "block {number} not sealed in time"
        );
        let block = call(ours, "eth_getBlockByNumber", json!(["pending", true])).await;
        let r = call(ours, "eth_getTransactionReceipt", json!([hash])).await;
        let head_after = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
        let holds_it = tx_hashes(&block).contains(&json!(hash));
        if head_after < number && quantity(&block["number"]) == number && holds_it && !r.is_null() {
            last_pending = Some((block, r));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Observation {
        hash,
        to,
        value,
        receipt,
        upstream_head_before,
        last_pending,
    }
}

fn tx_hashes(block: &Value) -> Vec<Value> {
    block["transactions"]
        .as_array()
        .expect("full transactions")
        .iter()
        .map(|tx| tx["hash"].clone())
        .collect()
}

fn without_block_hash(receipt: &Value) -> Value {
    let mut r = receipt.clone();
    r.as_object_mut()
        .expect("receipt object")
        .remove("blockHash");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_preconfirmed_through_proxy_then_sealed_as_served() {
    let net = Net::start(4.0).await;
    let proxy = start_proxy(&net.flashblocks_url()).await;
    let proxy_url = ws_url(proxy.local_addr());
    let seen: Seen = Arc::default();
    let subscriber = subscribe(&proxy_url, CALL_TIMEOUT).await;
    let recorder = record(subscriber, seen.clone());
    let rpc = start_rpc(&proxy_url, &net.upstream_url(), &[]).await;
    let ours = client(&rpc.http_url(), None);
    eventually_some(
        10 * BLOCK_TIME,
        "a pending block from flashblocks through the proxy",
        || pending_ahead(&net.local, &ours),
    )
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
    let mut missed = Vec::new();
    let mut good = None;
    for nonce in first_nonce..first_nonce + ATTEMPTS {
        let o = attempt(&net, &ours, nonce).await;
        if o.seen_pending() {
            good = Some(o);
            break;
        }
        missed.push(format!(
            "receipt in block {} with the upstream at {}; pending view before the seal: {}",
            o.number(),
            o.upstream_head_before,
            o.last_pending.is_some()
        ));
    }
    let Some(o) = good else {
        panic!("no transfer seen pending through the proxy before sealing: {missed:?}");
    };
    let n = o.number();
    assert_eq!(o.receipt["status"], json!("0x1"));
    assert_eq!(o.receipt["transactionHash"], json!(o.hash));

    // The plain subscriber got the transfer in a flashblock of the same block.
    let key = json!(o.hash).as_str().unwrap().to_string();
    let in_block = eventually_some(
        2 * BLOCK_TIME,
        "the subscriber's flashblock with the transfer",
        || {
            let found = seen.lock().unwrap().get(&key).copied();
            async move { found }
        },
    )
    .await;
    assert_eq!(
        in_block, n,
        "the subscriber saw the transfer in another block"
    );

    // Sealed as preconfirmed: the pending view's transactions are the sealed block's first
    // ones, the transfer's receipt is the same, and when no transaction was added after the
    // last flashblock read, the block is the same block.
    let (pending, pending_receipt) = o.last_pending.as_ref().expect("seen pending");
    let sealed = call(
        &net.local,
        "eth_getBlockByNumber",
        json!([format!("{n:#x}"), true]),
    )
    .await;
    let (pending_txs, sealed_txs) = (tx_hashes(pending), tx_hashes(&sealed));
    assert!(
        sealed_txs.starts_with(&pending_txs),
        "block {n}: sealed transactions {sealed_txs:?} do not extend the preconfirmed {pending_txs:?}"
    );
    let index = quantity(&pending_receipt["transactionIndex"]) as usize;
    assert_eq!(sealed_txs[index], json!(o.hash), "position in block {n}");
    assert_eq!(sealed["parentHash"], pending["parentHash"]);
    let sealed_receipt = call(&net.local, "eth_getTransactionReceipt", json!([o.hash])).await;
    assert_eq!(
        without_block_hash(&sealed_receipt),
        without_block_hash(pending_receipt),
        "receipt of {}",
        o.hash
    );
    if sealed_txs.len() == pending_txs.len() {
        assert_eq!(
            sealed["hash"], pending["hash"],
            "block {n}: same transactions, other block"
        );
        assert_covers(&format!("block {n}"), &sealed, pending);
        assert_eq!(&sealed_receipt, pending_receipt);
    }
    let balance = call(
        &net.local,
        "eth_getBalance",
        json!([o.to, format!("{n:#x}")]),
    )
    .await;
    assert_eq!(quantity256(&balance), o.value);

    recorder.abort();
    rpc.shutdown().await;
    proxy.shutdown().await;
    net.stop().await;
}
