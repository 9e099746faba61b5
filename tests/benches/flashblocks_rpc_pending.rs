//! Benchmark (not a test), `cargo bench -p e2e --bench flashblocks_rpc_pending`:
//! 1. submission → pending receipt latency on the devnet (transfers sent through engine-mux at
//!    random points of the slot, receipt polled every 2 ms on two flashblocks-rpc instances:
//!    one on engine-mux's re-published stream, one on the builder's own stream), p50 / p99;
//! 2. `eth_getTransactionReceipt` requests/s answered from pending state (a scripted stream
//!    holds one pending block; concurrent HTTP clients hammer one preconfirmed hash), with the
//!    same call forwarded to the upstream for comparison.
//!
//! `FBRPC_BENCH_TXS` (default 100), `FBRPC_BENCH_SECS` (default 5), `FBRPC_BENCH_CONC`
//! (default 16) tune it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, U256};
use e2e::{
    LoneEngine, call, client, eventually_some, flashblock, quantity, scripted_server, start_rpc,
};
use flashblocks_rpc::metrics::Source;
use serde_json::json;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    latency(env("FBRPC_BENCH_TXS", 100) as usize).await;
    throughput(
        Duration::from_secs(env("FBRPC_BENCH_SECS", 5)),
        env("FBRPC_BENCH_CONC", 16) as usize,
    )
    .await;
}

async fn latency(n: usize) {
    let net = e2e::Net::start(10.0).await;
    // Two instances on the same chain: one on engine-mux's re-published stream (production),
    // one on the builder's own stream; every transfer is timed on both.
    let via_mux = start_rpc(&net.flashblocks_url(), &net.upstream_url(), &[]).await;
    let via_builder = start_rpc(&net.builder_flashblocks_url(), &net.upstream_url(), &[]).await;
    let clients = [
        client(&via_mux.http_url(), None),
        client(&via_builder.http_url(), None),
    ];
    for ours in &clients {
        eventually_some(Duration::from_secs(20), "pending blocks", || async {
            let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            let p = call(ours, "eth_getBlockByNumber", json!(["pending", false])).await;
            (quantity(&p["number"]) > head).then_some(())
        })
        .await;
    }
    let sender = net.sender.address();
    let mut nonce = quantity(
        &call(
            &net.local,
            "eth_getTransactionCount",
            json!([sender, "pending"]),
        )
        .await,
    );
    let mut samples: [Vec<Duration>; 2] = [Vec::with_capacity(n), Vec::with_capacity(n)];
    for _ in 0..n {
        // A random pause decorrelates submissions from the flashblock and slot phase (sending
        // right after a receipt would always land just after a flashblock).
        let pause = e2e::BLOCK_TIME.mul_f64(rand::random::<f64>());
        tokio::time::sleep(pause).await;
        let to = Address::from(rand::random::<[u8; 20]>());
        let start = Instant::now();
        let hash = net.send_transfer(nonce, to, U256::from(1)).await;
        nonce += 1;
        let mut seen: [Option<Duration>; 2] = [None, None];
        while seen.iter().any(Option::is_none) {
            for (i, ours) in clients.iter().enumerate() {
                if seen[i].is_none()
                    && !call(ours, "eth_getTransactionReceipt", json!([hash]))
                        .await
                        .is_null()
                {
                    seen[i] = Some(start.elapsed());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no receipt for {hash}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for (i, s) in seen.into_iter().enumerate() {
            samples[i].push(s.unwrap_or_default());
        }
    }
    for (label, mut s) in ["engine-mux stream", "builder stream"]
        .into_iter()
        .zip(samples)
    {
        s.sort();
        println!(
            "submission -> pending receipt via {label} ({n} transfers, block time {:?}, flashblock interval {:?}): p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
            e2e::BLOCK_TIME,
            e2e::FLASHBLOCK_INTERVAL,
            percentile(&s, 0.5).as_secs_f64() * 1e3,
            percentile(&s, 0.99).as_secs_f64() * 1e3,
            s.first().copied().unwrap_or_default().as_secs_f64() * 1e3,
            s.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    via_mux.shutdown().await;
    via_builder.shutdown().await;
    net.stop().await;
}

async fn throughput(duration: Duration, concurrency: usize) {
    let LoneEngine {
        engine,
        upstream: _,
        signers,
        chain_id,
        head_hash,
    } = LoneEngine::start().await;
    let (url, frames) = scripted_server().await;
    let rpc = start_rpc(&url, &engine.http_url(), &[]).await;
    let (raw, hash) = e2e::transfer(&signers[0], chain_id, 0);
    frames
        .send(flashblock(
            1,
            0,
            1,
            head_hash,
            0,
            &[(raw.clone(), hash)],
            B256::repeat_byte(1),
        ))
        .await
        .unwrap();
    let ours = client(&rpc.http_url(), None);
    eventually_some(Duration::from_secs(5), "the pending receipt", || async {
        let r = call(&ours, "eth_getTransactionReceipt", json!([hash])).await;
        (!r.is_null()).then_some(())
    })
    .await;

    for (label, target) in [
        ("pending", hash),
        ("forwarded to upstream", B256::repeat_byte(9)),
    ] {
        let pending_before = rpc.ctx.metrics.answers(Source::Pending);
        let done = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + duration;
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let c = client(&rpc.http_url(), None);
                let done = done.clone();
                tokio::spawn(async move {
                    while Instant::now() < end {
                        let _ = call(&c, "eth_getTransactionReceipt", json!([target])).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
        let n = done.load(Ordering::Relaxed);
        let from_pending = rpc.ctx.metrics.answers(Source::Pending) - pending_before;
        println!(
            "eth_getTransactionReceipt {label}: {:.0} req/s ({n} requests, {concurrency} concurrent HTTP clients, {duration:?}; {from_pending} answered from pending)",
            n as f64 / duration.as_secs_f64()
        );
    }
    rpc.shutdown().await;
    engine.stop().await;
}
