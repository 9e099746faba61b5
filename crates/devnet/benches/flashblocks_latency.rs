//! Flashblocks latency on the devnet: from the builder handing a flashblock to its WebSocket
//! subscribers (send time stamped in-process by the builder's publisher) to a subscriber of
//! engine-mux's outbound stream receiving it. A second subscriber reads the builder's stream
//! directly, as the baseline of what the extra hop through engine-mux costs.
//!
//! Run: `cargo bench -p devnet --bench flashblocks_latency` (`DURATION_SECS=n` per
//! configuration, default 60).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_rpc_types_engine::PayloadId;
use devnet::app::{Devnet, DevnetConfig, DevnetFlashblocks, metric_value};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// Most receptions recorded per subscriber.
const MAX_SAMPLES: usize = 100_000;

type Received = Arc<Mutex<Vec<(PayloadId, u64, Instant, usize)>>>;

#[derive(serde::Deserialize)]
struct Key {
    payload_id: PayloadId,
    index: u64,
}

/// Subscribes to `ws://addr` and records when each flashblock arrived.
async fn subscribe(addr: SocketAddr) -> (Received, tokio::task::JoinHandle<()>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
        .await
        .expect("subscriber connects");
    let received: Received = Arc::default();
    let rec = received.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let at = Instant::now();
            let Message::Text(text) = msg else { continue };
            let Ok(key) = serde_json::from_str::<Key>(text.as_str()) else {
                continue;
            };
            let mut r = rec.lock().unwrap();
            if r.len() < MAX_SAMPLES {
                r.push((key.payload_id, key.index, at, text.len()));
            }
        }
    });
    (received, task)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

struct Run {
    label: &'static str,
    block_time: Duration,
    interval: Duration,
    tx_rate: f64,
}

async fn measure(run: &Run, duration: Duration) {
    let devnet = Devnet::start(DevnetConfig {
        block_time: run.block_time,
        tx_rate: run.tx_rate,
        flashblocks: Some(DevnetFlashblocks {
            builder_port: 0,
            interval: run.interval,
            mux_port: 0,
            rpc_port: None,
        }),
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let publisher = devnet
        .builder
        .flashblocks_publisher()
        .expect("builder publishes")
        .clone();
    let (via_mux, mux_task) =
        subscribe(devnet.mux.flashblocks_addr.expect("engine-mux publishes")).await;
    let (direct, direct_task) =
        subscribe(devnet.builder.flashblocks_addr.expect("builder publishes")).await;
    // Latencies are read while the builder still remembers the send times (bounded ring).
    let mut lat_mux = Vec::new();
    let mut lat_direct = Vec::new();
    let mut unmatched = 0usize;
    let mut frame_bytes = Vec::new();
    let (mut done_mux, mut done_direct) = (0, 0);
    let started = Instant::now();
    let mut collect = |lat_mux: &mut Vec<Duration>, lat_direct: &mut Vec<Duration>| {
        for (received, done, out) in [
            (&via_mux, &mut done_mux, lat_mux),
            (&direct, &mut done_direct, lat_direct),
        ] {
            let r = received.lock().unwrap();
            for (id, index, at, _) in &r[*done..] {
                match publisher.sent_at(*id, *index) {
                    Some(sent) => out.push(at.saturating_duration_since(sent)),
                    None => unmatched += 1,
                }
            }
            *done = r.len();
        }
    };
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        collect(&mut lat_mux, &mut lat_direct);
    }
    collect(&mut lat_mux, &mut lat_direct);
    frame_bytes.extend(via_mux.lock().unwrap().iter().map(|r| r.3));
    let text = devnet.mux.metrics_text();
    let blocks = metric_value(&text, "engine_mux_flashblocks_blocks_total", &[]);
    let per_block = metric_value(&text, "engine_mux_flashblocks_per_block_sum", &[])
        / metric_value(&text, "engine_mux_flashblocks_per_block_count", &[]).max(1.0);
    mux_task.abort();
    direct_task.abort();
    devnet.stop().await;
    for (path, lat) in [
        ("builder → direct subscriber", &mut lat_direct),
        ("builder → engine-mux → subscriber", &mut lat_mux),
    ] {
        lat.sort();
        if lat.is_empty() {
            println!("| {} | {path} | 0 | - | - | - | - |", run.label);
            continue;
        }
        println!(
            "| {} | {path} | {} | {} | {} | {} | {} |",
            run.label,
            lat.len(),
            ms(percentile(lat, 0.5)),
            ms(percentile(lat, 0.9)),
            ms(percentile(lat, 0.99)),
            ms(lat[lat.len() - 1]),
        );
    }
    let bytes = frame_bytes.iter().sum::<usize>() / frame_bytes.len().max(1);
    eprintln!(
        "{}: {blocks} flashblocks-backed blocks, {per_block:.1} flashblocks per block at getPayload, {bytes} bytes per frame on average, {unmatched} receptions without a send time",
        run.label
    );
}

fn main() {
    let duration = Duration::from_secs(
        std::env::var("DURATION_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("| blocks / flashblocks | path | samples | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for run in [
        Run {
            label: "1 s / 200 ms, 50 tx/s",
            block_time: Duration::from_secs(1),
            interval: Duration::from_millis(200),
            tx_rate: 50.0,
        },
        Run {
            label: "250 ms / 50 ms, 50 tx/s",
            block_time: Duration::from_millis(250),
            interval: Duration::from_millis(50),
            tx_rate: 50.0,
        },
        Run {
            label: "250 ms / 50 ms, 400 tx/s",
            block_time: Duration::from_millis(250),
            interval: Duration::from_millis(50),
            tx_rate: 400.0,
        },
    ] {
        runtime.block_on(measure(&run, duration));
    }
}
