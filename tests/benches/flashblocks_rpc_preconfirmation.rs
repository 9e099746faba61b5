//! Benchmark (not a test), `cargo bench -p e2e --bench flashblocks_rpc_preconfirmation`, on
//! the in-process devnet with flashblocks (1 s blocks, a flashblock every 250 ms, a spammer
//! at `FBRPC_BENCH_RATE` transactions/s on the other dev accounts) and two flashblocks-rpc
//! instances: one on engine-mux's stream (metadata with receipts) and one on the same stream
//! cut to `{block_number}` metadata (Base's shape: receipts come from executing the pending
//! chain through the engine's `eth_simulateV1`).
//!
//! 1. Submission → pending receipt on each instance, and submission → sealed receipt (the
//!    local engine's own `eth_getTransactionReceipt`), p50 / p99, for `FBRPC_BENCH_TXS`
//!    transfers sent through engine-mux at random points of the slot. The three endpoints are
//!    polled in turn every 2 ms.
//! 2. `eth_call` at `pending` (answered by simulating the pending blocks and then the call) on
//!    each instance, `FBRPC_BENCH_CALLS` sequential calls, p50 / p99, next to the same call at
//!    `latest` (forwarded to the engine).

use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, TxKind, U256, hex};
use e2e::{
    BLOCK_TIME, FLASHBLOCK_INTERVAL, Net, Relay, call, client, eventually_some, quantity, start_rpc,
};
use flashblocks_rpc::metrics::Source;
use serde_json::json;

/// Runtime: with calldata, stores its first word in slot 0; without, returns slot 0.
const STORE_INITCODE: [u8; 35] =
    hex!("601880600b6000396000f3" "3615600c57600035600055005b60005460005260206000f3");

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn report(what: &str, mut s: Vec<Duration>) {
    s.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what} (n={}): p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        s.len(),
        ms(percentile(&s, 0.5)),
        ms(percentile(&s, 0.99)),
        ms(s.first().copied().unwrap_or_default()),
        ms(s.last().copied().unwrap_or_default()),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let txs = env("FBRPC_BENCH_TXS", 100) as usize;
    let calls = env("FBRPC_BENCH_CALLS", 200) as usize;
    let rate = env("FBRPC_BENCH_RATE", 10) as f64;
    let net = Net::start(rate).await;
    let relay = Relay::stripping_metadata(net.flashblocks_url()).await;
    let with_metadata = start_rpc(&net.flashblocks_url(), &net.upstream_url(), &[]).await;
    let without_metadata = start_rpc(&relay.url(), &net.upstream_url(), &[]).await;
    let instances = [
        ("with metadata", &with_metadata),
        ("without metadata", &without_metadata),
    ];
    let clients: Vec<_> = instances
        .iter()
        .map(|(_, r)| client(&r.http_url(), None))
        .collect();
    for ours in &clients {
        eventually_some(Duration::from_secs(20), "pending blocks", || async {
            let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            let p = call(ours, "eth_getBlockByNumber", json!(["pending", false])).await;
            (quantity(&p["number"]) > head).then_some(())
        })
        .await;
    }
    println!(
        "devnet: block time {BLOCK_TIME:?}, flashblock interval {FLASHBLOCK_INTERVAL:?}, spammer {rate} tx/s"
    );
    let sender = net.sender.address();
    let mut nonce = quantity(
        &call(
            &net.local,
            "eth_getTransactionCount",
            json!([sender, "pending"]),
        )
        .await,
    );

    // 1. Submission -> pending receipt (each instance) and -> sealed receipt.
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for _ in 0..txs {
        // A random pause decorrelates submissions from the flashblock and slot phase.
        tokio::time::sleep(BLOCK_TIME.mul_f64(rand::random::<f64>())).await;
        let to = Address::from(rand::random::<[u8; 20]>());
        let start = Instant::now();
        let hash = net.send_transfer(nonce, to, U256::from(1)).await;
        nonce += 1;
        let mut seen: [Option<Duration>; 3] = [None; 3];
        while seen.iter().any(Option::is_none) {
            for (i, endpoint) in [&clients[0], &clients[1], &net.local]
                .into_iter()
                .enumerate()
            {
                if seen[i].is_none()
                    && !call(endpoint, "eth_getTransactionReceipt", json!([hash]))
                        .await
                        .is_null()
                {
                    seen[i] = Some(start.elapsed());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no receipt for {hash}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for (i, s) in seen.into_iter().enumerate() {
            samples[i].push(s.unwrap_or_default());
        }
    }
    let [a, b, sealed] = samples;
    report("submission -> pending receipt, stream with metadata", a);
    report(
        "submission -> pending receipt, stream without metadata (receipts by eth_simulateV1)",
        b,
    );
    report("submission -> sealed receipt (engine)", sealed);

    // 2. eth_call at pending vs latest.
    let contract = sender.create(nonce);
    let deploy = net
        .send_call(
            nonce,
            TxKind::Create,
            U256::ZERO,
            Bytes::from_static(&STORE_INITCODE),
        )
        .await;
    net.sealed_in(deploy).await;
    let request = json!({"to": contract});
    // Interleaved, with random pauses, so both instances see the same mix of slot phases;
    // a pending call is counted only when it was answered from pending state (between a
    // block's seal and the next block's first flashblock there is none, and it is forwarded).
    let mut pending: [Vec<Duration>; 2] = Default::default();
    let mut latest: [Vec<Duration>; 2] = Default::default();
    let mut forwarded = [0usize; 2];
    for _ in 0..calls {
        for (i, ((_, rpc), ours)) in instances.iter().zip(&clients).enumerate() {
            for tag in ["pending", "latest"] {
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 10)).await;
                let before = rpc.ctx.metrics.answers(Source::Pending);
                let start = Instant::now();
                call(ours, "eth_call", json!([request, tag])).await;
                let took = start.elapsed();
                let from_pending = rpc.ctx.metrics.answers(Source::Pending) > before;
                match (tag, from_pending) {
                    ("pending", true) => pending[i].push(took),
                    ("pending", false) => forwarded[i] += 1,
                    _ => latest[i].push(took),
                }
            }
        }
    }
    for (i, (label, _)) in instances.iter().enumerate() {
        report(
            &format!(
                "eth_call at pending answered from pending, stream {label} ({} more forwarded: no pending block)",
                forwarded[i]
            ),
            std::mem::take(&mut pending[i]),
        );
        report(
            &format!("eth_call at latest (forwarded), stream {label}"),
            std::mem::take(&mut latest[i]),
        );
    }
    with_metadata.shutdown().await;
    without_metadata.shutdown().await;
    drop(relay);
    net.stop().await;
}
