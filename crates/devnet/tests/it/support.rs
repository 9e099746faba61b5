//! Shared helpers: start a devnet with short slots, collect driver events with deadlines,
//! query `/healthz` and the engines.

use std::time::Duration;

use alloy_primitives::B256;
use devnet::{
    devnet::{Devnet, DevnetConfig, metric_value},
    driver::{DriverEvent, ProposedBlock},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::broadcast,
};

/// Slot length used by every scenario: short so the suite is quick.
pub const BLOCK_TIME: Duration = Duration::from_millis(250);

/// A devnet config with short slots and the given extras.
pub fn config() -> DevnetConfig {
    DevnetConfig {
        block_time: BLOCK_TIME,
        tx_rate: 20.0,
        mux_args: vec!["--health-check-interval".into(), "1".into()],
        ..DevnetConfig::default()
    }
}

/// One observed slot with the engine-mux counters right after it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub event: DriverEvent,
    pub builder_blocks: f64,
    pub local_blocks: f64,
    pub fallbacks: f64,
    pub health: u16,
}

impl Observed {
    pub fn proposed(&self) -> Option<&ProposedBlock> {
        match &self.event {
            DriverEvent::Proposed(b) => Some(b),
            DriverEvent::Missed { .. } => None,
        }
    }
}

/// Snapshot of engine-mux's counters.
pub fn counters(devnet: &Devnet) -> (f64, f64, f64) {
    let text = devnet.mux.metrics_text();
    (
        metric_value(
            &text,
            "engine_mux_blocks_proposed_total",
            &[("source", "builder")],
        ),
        metric_value(
            &text,
            "engine_mux_blocks_proposed_total",
            &[("source", "local")],
        ),
        metric_value(&text, "engine_mux_fallbacks_total", &[]),
    )
}

/// Collects slots until `n` blocks were proposed (missed slots are recorded too), failing
/// after `deadline`. `on_slot` runs after each observed slot.
pub async fn observe(
    devnet: &Devnet,
    events: &mut broadcast::Receiver<DriverEvent>,
    n: usize,
    deadline: Duration,
    mut on_slot: impl FnMut(&Observed),
) -> Vec<Observed> {
    let mut out = Vec::new();
    let run = async {
        while out
            .iter()
            .filter(|o: &&Observed| o.proposed().is_some())
            .count()
            < n
        {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let (builder_blocks, local_blocks, fallbacks) = counters(devnet);
            let o = Observed {
                event,
                builder_blocks,
                local_blocks,
                fallbacks,
                health: healthz(devnet).await,
            };
            on_slot(&o);
            out.push(o);
        }
    };
    if tokio::time::timeout(deadline, run).await.is_err() {
        panic!(
            "deadline {deadline:?} passed after {} slots: {out:#?}",
            out.len()
        );
    }
    out
}

/// `GET /healthz` on engine-mux's RPC port; returns the HTTP status (0 if unreachable).
pub async fn healthz(devnet: &Devnet) -> u16 {
    healthz_at(devnet.mux.rpc_addr).await
}

/// `GET /healthz` on `addr`; returns the HTTP status (0 if unreachable).
pub async fn healthz_at(addr: std::net::SocketAddr) -> u16 {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Polls `check` every 50 ms until it holds, panicking after `deadline`.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> F,
) {
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many times each hash occurs in the local engine's canonical chain.
pub fn canonical_occurrences(devnet: &Devnet, hashes: &[B256]) -> Vec<usize> {
    let head = devnet.local.engine.head().number();
    let wanted: std::collections::HashMap<B256, usize> =
        hashes.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let mut counts = vec![0; hashes.len()];
    devnet.local.engine.with_chain(|chain| {
        for n in 1..=head {
            if let Some(block) = chain.canonical_block(n) {
                for tx in &block.transactions {
                    if let Some(i) = wanted.get(&tx.tx_hash()) {
                        counts[*i] += 1;
                    }
                }
            }
        }
    });
    counts
}

/// Missed slots in `slots`.
pub fn missed(slots: &[Observed]) -> Vec<&DriverEvent> {
    slots
        .iter()
        .filter(|o| o.proposed().is_none())
        .map(|o| &o.event)
        .collect()
}
