//! The measurement behind docs/benchmarks.md "flashblocks-rpc on op-reth" (run by hand; it
//! asserts nothing about the numbers, only that enough was measured): transfers and contract
//! calls sent one at a time through engine-mux; for each, as soon as an instance serves the
//! transaction's receipt from a pending block, that instance's pending answers — receipt,
//! balances (sender, recipient, L1 and base fee vaults), nonce, `eth_call`, `eth_estimateGas`,
//! `eth_getLogs` — are read, and once the block is sealed compared with what the local EL
//! serves for it. Two instances: on engine-mux's stream (metadata) and on it stripped of
//! metadata. The local EL is op-reth when `OP_RETH_BIN` is set, else the devnet engine.
//!
//! ```sh
//! OP_RETH_BIN=/path/to/op-reth MEASURE_TXS=60 \
//!   cargo nextest run -p e2e --run-ignored only --no-capture measure
//! ```
//!
//! Latencies, per instance: from the flashblock that carried the transaction reaching the
//! instance (its `newFlashblocks` subscription, notified when the flashblock is accepted) to
//! the pending receipt and to the last of the pending answers; and from sending the
//! transaction (before `eth_sendRawTransaction`) to the pending receipt. Answers read after the
//! block was sealed (the local EL's head reached it before the reads ended) are counted apart:
//! they may be the upstream's own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use engine_api::Upstream;
use futures::{SinkExt, StreamExt, future::join_all};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use e2e::{BLOCK_TIME, Net, OP_RETH_BIN, Overlays, STREAMS, call, eventually_some, quantity};

use crate::pending_call::{initcode, stored, word};

/// Fee vaults whose pending balances the simulation must correct.
const VAULTS: [Address; 2] = [
    Address::new(alloy_primitives::hex!(
        "420000000000000000000000000000000000001a"
    )),
    Address::new(alloy_primitives::hex!(
        "4200000000000000000000000000000000000019"
    )),
];

/// The methods compared, in report order.
const METHODS: [&str; 6] = [
    "receipt",
    "balance",
    "nonce",
    "eth_call",
    "eth_estimateGas",
    "eth_getLogs",
];

/// When each transaction's flashblock reached an instance (first notification carrying it).
type Arrivals = Arc<Mutex<HashMap<B256, Instant>>>;

/// Records every transaction of every flashblock the instance at `ws_url` accepts.
async fn watch_arrivals(ws_url: String) -> (Arrivals, tokio::task::JoinHandle<()>) {
    let arrivals: Arrivals = Arc::default();
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
        "params": ["newFlashblocks"]});
    ws.send(Message::Text(body.to_string().into()))
        .await
        .unwrap();
    let a = arrivals.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let at = Instant::now();
            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                continue;
            };
            let txs = &v["params"]["result"]["diff"]["transactions"];
            for raw in txs.as_array().into_iter().flatten() {
                let Some(bytes) = raw.as_str().and_then(|s| hex::decode(&s[2..]).ok()) else {
                    continue;
                };
                a.lock().unwrap().entry(keccak256(&bytes)).or_insert(at);
            }
        }
    });
    (arrivals, task)
}

/// What one instance served for one transaction while it was pending.
struct Reading {
    /// Send to pending receipt.
    sent_to_receipt: Duration,
    /// When the receipt was first served, and when the last answer came back.
    receipt_at: Instant,
    done_at: Instant,
    receipt: Value,
    balances: Vec<Value>,
    nonce: Value,
    stored: Bytes,
    estimate: u64,
    logs: Value,
    /// The local EL's head was still below the block when the reads ended.
    pending: bool,
}

struct Case {
    sender: Address,
    to: Address,
    contract: Address,
}

impl Case {
    fn accounts(&self) -> Vec<Address> {
        let mut a = vec![self.sender, self.to];
        a.extend(VAULTS);
        a
    }

    fn estimate_request(&self) -> Value {
        json!({"from": self.sender, "to": self.contract, "data": word(7)})
    }

    fn logs_filter(&self, from: u64, to: Value) -> Value {
        json!({"fromBlock": format!("{from:#x}"), "toBlock": to, "address": self.contract})
    }
}

async fn read_pending(
    net: &Net,
    ours: &Upstream,
    hash: B256,
    case: &Case,
    sent_at: Instant,
) -> Reading {
    let receipt = eventually_some(8 * BLOCK_TIME, "the pending receipt", || async {
        let r: Value = call(ours, "eth_getTransactionReceipt", json!([hash])).await;
        (!r.is_null()).then_some(r)
    })
    .await;
    let receipt_at = Instant::now();
    let block = quantity(&receipt["blockNumber"]);
    let balances = join_all(
        case.accounts()
            .iter()
            .map(|a| call(ours, "eth_getBalance", json!([a, "pending"]))),
    );
    let nonce = call(
        ours,
        "eth_getTransactionCount",
        json!([case.sender, "pending"]),
    );
    let stored = stored(ours, case.contract, "pending");
    let estimate = call(
        ours,
        "eth_estimateGas",
        json!([case.estimate_request(), "pending"]),
    );
    let logs = call(
        ours,
        "eth_getLogs",
        json!([case.logs_filter(block, json!("pending"))]),
    );
    let (balances, nonce, stored, estimate, logs) =
        tokio::join!(balances, nonce, stored, estimate, logs);
    let done_at = Instant::now();
    let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
    Reading {
        sent_to_receipt: receipt_at - sent_at,
        receipt_at,
        done_at,
        receipt,
        balances,
        nonce,
        stored,
        estimate: quantity(&estimate),
        logs,
        pending: head < block,
    }
}

/// Whether every field `sealed` has is in `ours` with the same value (arrays element-wise).
fn covers(sealed: &Value, ours: &Value) -> bool {
    match (sealed, ours) {
        (Value::Object(s), Value::Object(o)) => s
            .iter()
            .all(|(k, v)| o.get(k).is_some_and(|mine| covers(v, mine))),
        (Value::Array(s), Value::Array(o)) => {
            s.len() == o.len() && s.iter().zip(o).all(|(a, b)| covers(a, b))
        }
        (s, o) => s == o,
    }
}

/// An `eth_call` at `tag` with `gas` succeeds.
async fn succeeds_with(rpc: &Upstream, request: &Value, gas: u64, tag: &str) -> bool {
    let mut request = request.clone();
    request["gas"] = json!(format!("{gas:#x}"));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [request, tag]});
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let res = rpc
        .forward(&headers, body.to_string().into(), Duration::from_secs(5))
        .await
        .unwrap();
    flashblocks_rpc::rpc::parse_response(res.body()).is_ok()
}

#[derive(Default)]
struct Tally {
    agree: [u64; 6],
    disagree: [u64; 6],
    /// Transactions whose reads ended after the block was sealed.
    late: u64,
    fb_to_receipt: Vec<Duration>,
    fb_to_all: Vec<Duration>,
    sent_to_receipt: Vec<Duration>,
    /// Transactions whose flashblock arrival was not seen (no latency from it).
    no_arrival: u64,
    disagreements: Vec<String>,
}

fn percentile(v: &mut [Duration], p: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    let i = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize - 1;
    format!("{:.1}", v[i.min(v.len() - 1)].as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand (docs/benchmarks.md)"]
async fn measure_pending_answers_against_sealed_blocks() {
    let txs: u64 = std::env::var("MEASURE_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let on_op_reth = std::env::var_os(OP_RETH_BIN).is_some_and(|v| !v.is_empty());
    let net = if on_op_reth {
        Net::start_on_op_reth(0.0).await
    } else {
        Net::start(0.0).await
    };
    let o = Overlays::start(net).await;
    let net = &o.net;
    let mut watchers = Vec::new();
    for (_, rpc, _) in &o.rpcs {
        watchers.push(watch_arrivals(rpc.ws_url()).await);
    }
    let sender = net.sender.address();
    let contract = sender.create(0);
    let deploy = net
        .send_call(0, TxKind::Create, U256::ZERO, initcode())
        .await;
    net.sealed_in(deploy).await;

    let mut tallies: Vec<Tally> = STREAMS.iter().map(|_| Tally::default()).collect();
    let started = Instant::now();
    for i in 0..txs {
        let nonce = i + 1;
        // Alternately a plain transfer to a fresh account and a call storing (and logging) a
        // word in the contract.
        let transfer = i % 2 == 0;
        let to = if transfer {
            Address::from(rand::random::<[u8; 20]>())
        } else {
            contract
        };
        let case = Case {
            sender,
            to,
            contract,
        };
        let sent_at = Instant::now();
        let hash = if transfer {
            net.send_transfer(nonce, to, U256::from(1_000_000 + i))
                .await
        } else {
            net.send_call(nonce, TxKind::Call(contract), U256::ZERO, word(1_000 + i))
                .await
        };
        let readings = join_all(
            o.rpcs
                .iter()
                .map(|(_, _, ours)| read_pending(net, ours, hash, &case, sent_at)),
        )
        .await;
        let block = net.sealed_in(hash).await;
        let at = format!("{block:#x}");
        let local = &net.local;
        let sealed_receipt = call(local, "eth_getTransactionReceipt", json!([hash])).await;
        let mut sealed_balances = Vec::new();
        for a in case.accounts() {
            sealed_balances.push(call(local, "eth_getBalance", json!([a, at])).await);
        }
        let sealed_nonce = call(local, "eth_getTransactionCount", json!([sender, at])).await;
        let sealed_stored = stored(local, contract, &at).await;
        let sealed_logs = call(
            local,
            "eth_getLogs",
            json!([case.logs_filter(block, json!(at))]),
        )
        .await;
        for ((r, tally), (watch, _)) in readings.iter().zip(&mut tallies).zip(&watchers) {
            if !r.pending {
                tally.late += 1;
                continue;
            }
            // The least gas at which the store succeeds on the sealed state.
            let estimate_right = succeeds_with(local, &case.estimate_request(), r.estimate, &at)
                .await
                && !succeeds_with(local, &case.estimate_request(), r.estimate - 1, &at).await;
            let results = [
                covers(&sealed_receipt, &r.receipt),
                r.balances == sealed_balances,
                r.nonce == sealed_nonce,
                r.stored == sealed_stored,
                estimate_right,
                covers(&sealed_logs, &r.logs),
            ];
            for (m, ok) in results.iter().enumerate() {
                if *ok {
                    tally.agree[m] += 1;
                } else {
                    tally.disagree[m] += 1;
                    tally.disagreements.push(format!(
                        "tx {i} ({}) block {block}: {}",
                        if transfer { "transfer" } else { "call" },
                        METHODS[m]
                    ));
                }
            }
            tally.sent_to_receipt.push(r.sent_to_receipt);
            match watch.lock().unwrap().get(&hash) {
                Some(arrived) => {
                    tally
                        .fb_to_receipt
                        .push(r.receipt_at.saturating_duration_since(*arrived));
                    if results.iter().all(|ok| *ok) {
                        tally
                            .fb_to_all
                            .push(r.done_at.saturating_duration_since(*arrived));
                    }
                }
                None => tally.no_arrival += 1,
            }
        }
    }
    let el = if on_op_reth {
        "op-reth"
    } else {
        "devnet engine"
    };
    println!(
        "flashblocks-rpc on {el}: {txs} transactions ({} transfers, {} contract calls) in {:.0} s",
        txs.div_ceil(2),
        txs / 2,
        started.elapsed().as_secs_f64()
    );
    println!(
        "| stream | read while pending | {} | flashblock → receipt p50 / p99 ms | flashblock → all answers (all correct) p50 / p99 ms | send → receipt p50 / p99 ms |",
        METHODS.join(" | ")
    );
    for (label, t) in STREAMS.iter().zip(&mut tallies) {
        let counts: Vec<String> = (0..METHODS.len())
            .map(|m| format!("{} / {}", t.agree[m], t.disagree[m]))
            .collect();
        println!(
            "| {label} | {} of {txs} | {} | {} / {} | {} / {} | {} / {} |",
            txs - t.late,
            counts.join(" | "),
            percentile(&mut t.fb_to_receipt, 50.0),
            percentile(&mut t.fb_to_receipt, 99.0),
            percentile(&mut t.fb_to_all, 50.0),
            percentile(&mut t.fb_to_all, 99.0),
            percentile(&mut t.sent_to_receipt, 50.0),
            percentile(&mut t.sent_to_receipt, 99.0),
        );
        if t.no_arrival > 0 {
            println!("{label}: {} flashblock arrivals not seen", t.no_arrival);
        }
        for d in &t.disagreements {
            println!("{label}: disagreement: {d}");
        }
    }
    if let Some(tap) = &o.tap {
        let refused = tap.refusals();
        println!(
            "op-reth: {} eth_simulateV1 requests, {} refused",
            tap.simulations(),
            refused.len()
        );
        for r in refused.iter().take(3) {
            println!("refused: request {} answer {}", r.request, r.response);
        }
    }
    for (label, rpc, _) in &o.rpcs {
        let m = |outcome| {
            e2e::metric(
                &rpc.metrics_text(),
                &format!("flashblocks_rpc_simulations_total{{outcome=\"{outcome}\"}}"),
            )
        };
        println!(
            "{label}: simulations ok {} divergent {} failed {} unsupported {}",
            m("ok"),
            m("divergent"),
            m("failed"),
            m("unsupported")
        );
    }
    for (label, t) in STREAMS.iter().zip(&tallies) {
        assert!(
            txs - t.late >= txs / 2,
            "{label}: only {} of {txs} transactions were read while pending",
            txs - t.late
        );
    }
    for (_, task) in watchers {
        task.abort();
    }
    o.stop().await;
}
