//! Per-instance Prometheus metrics (plain atomics rendered as text, so two instances in one
//! process — as in the tests — never share counters).

use std::{
    fmt::Write,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Built from the pending flashblocks state.
    Pending,
    /// Forwarded to the upstream EL.
    Upstream,
}

/// Why a flashblock was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not valid JSON of an `OpFlashblockPayload`.
    Malformed,
    /// Index, base or payload id out of sequence.
    OutOfOrder,
    /// Its block is at or below the upstream head.
    Stale,
    /// A transaction or receipt could not be decoded or is missing.
    BadContent,
    /// A per-block or per-state bound was hit.
    OverCapacity,
}

const REJECTIONS: [(Rejection, &str); 5] = [
    (Rejection::Malformed, "malformed"),
    (Rejection::OutOfOrder, "out_of_order"),
    (Rejection::Stale, "stale"),
    (Rejection::BadContent, "bad_content"),
    (Rejection::OverCapacity, "over_capacity"),
];

/// How one `eth_simulateV1` run of the pending blocks ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simulation {
    /// Ran, and its gas matched the stream's at every flashblock.
    Ok,
    /// Ran, but its gas differs from the stream's: its receipts are not served.
    Divergent,
    /// The upstream answered with an error or not at all.
    Failed,
    /// The upstream has no `eth_simulateV1`: metadata or the upstream answer instead.
    Unsupported,
}

const SIMULATIONS: [(Simulation, &str); 4] = [
    (Simulation::Ok, "ok"),
    (Simulation::Divergent, "divergent"),
    (Simulation::Failed, "failed"),
    (Simulation::Unsupported, "unsupported"),
];

/// All counters and gauges of one instance.
#[derive(Debug, Default)]
pub struct Metrics {
    answers_pending: AtomicU64,
    answers_upstream: AtomicU64,
    flashblocks_applied: AtomicU64,
    rejected: [AtomicU64; 5],
    pending_blocks: AtomicU64,
    serveable_blocks: AtomicU64,
    held_blocks: AtomicU64,
    stream_lag_ms: AtomicI64,
    last_frame_unix_ms: AtomicU64,
    stream_connected: AtomicU64,
    stream_connects: AtomicU64,
    upstream_head: AtomicU64,
    head_poll_failures: AtomicU64,
    reorgs: AtomicU64,
    subscribers: AtomicU64,
    subscribers_dropped: AtomicU64,
    simulations: [AtomicU64; 4],
    simulation_last_ms: AtomicU64,
    executions_cached: AtomicU64,
    probes: AtomicU64,
}

impl Metrics {
    /// Counts one answered call.
    pub fn answered(&self, source: Source) {
        match source {
            Source::Pending => &self.answers_pending,
            Source::Upstream => &self.answers_upstream,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one simulation of the pending blocks and records how long it took.
    pub fn simulated(&self, outcome: Simulation, ms: u64) {
        let i = SIMULATIONS
            .iter()
            .position(|(o, _)| *o == outcome)
            .unwrap_or(0);
        self.simulations[i].fetch_add(1, Ordering::Relaxed);
        self.simulation_last_ms.store(ms, Ordering::Relaxed);
    }

    /// Simulations that ended with `outcome` so far.
    pub fn simulations(&self, outcome: Simulation) -> u64 {
        let i = SIMULATIONS
            .iter()
            .position(|(o, _)| *o == outcome)
            .unwrap_or(0);
        self.simulations[i].load(Ordering::Relaxed)
    }

    /// Sets the number of cached executions.
    pub fn set_executions_cached(&self, n: usize) {
        self.executions_cached.store(n as u64, Ordering::Relaxed);
    }

    /// Counts one state read (balance, code, storage) answered by a simulation probe.
    pub fn probed(&self) {
        self.probes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an applied flashblock.
    pub fn applied(&self) {
        self.flashblocks_applied.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a rejected flashblock.
    pub fn rejected(&self, why: Rejection) {
        if let Some(i) = REJECTIONS.iter().position(|(r, _)| *r == why) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the pending-state gauges: all held blocks, those served, those waiting.
    pub fn set_depth(&self, total: usize, serveable: usize) {
        self.pending_blocks.store(total as u64, Ordering::Relaxed);
        self.serveable_blocks
            .store(serveable as u64, Ordering::Relaxed);
        self.held_blocks
            .store(total.saturating_sub(serveable) as u64, Ordering::Relaxed);
    }

    /// Records a frame arriving at `now_ms` for a block with timestamp `block_timestamp` (s):
    /// the lag is signed, since builders start a block before its timestamp.
    pub fn frame_arrived(&self, now_ms: u64, block_timestamp: Option<u64>) {
        self.last_frame_unix_ms.store(now_ms, Ordering::Relaxed);
        if let Some(ts) = block_timestamp {
            let lag = i128::from(now_ms) - i128::from(ts) * 1000;
            let lag = i64::try_from(lag).unwrap_or(if lag < 0 { i64::MIN } else { i64::MAX });
            self.stream_lag_ms.store(lag, Ordering::Relaxed);
        }
    }

    /// Stream connection state.
    pub fn set_connected(&self, up: bool) {
        self.stream_connected
            .store(u64::from(up), Ordering::Relaxed);
        if up {
            self.stream_connects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Latest upstream head number.
    pub fn set_head(&self, number: u64) {
        self.upstream_head.store(number, Ordering::Relaxed);
    }

    /// Counts a failed head poll.
    pub fn head_poll_failed(&self) {
        self.head_poll_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a pending block replaced by a different payload for the same height.
    pub fn reorged(&self) {
        self.reorgs.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the flashblocks subscription gauge.
    pub fn set_subscribers(&self, n: usize) {
        self.subscribers.store(n as u64, Ordering::Relaxed);
    }

    /// Counts a subscriber dropped for lagging.
    pub fn subscriber_dropped(&self) {
        self.subscribers_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers served from `source` so far.
    pub fn answers(&self, source: Source) -> u64 {
        match source {
            Source::Pending => &self.answers_pending,
            Source::Upstream => &self.answers_upstream,
        }
        .load(Ordering::Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "flashblocks_rpc_simulation_last_ms",
            "gauge",
            "Duration of the last eth_simulateV1 run of the pending blocks.",
            get(&self.simulation_last_ms),
        );
        one(
            "flashblocks_rpc_executions_cached",
            "gauge",
            "Executions of pending chains held (bounded).",
            get(&self.executions_cached),
        );
        one(
            "flashblocks_rpc_probes_total",
            "counter",
            "Pending balance, code and storage reads answered through an eth_simulateV1 probe.",
            get(&self.probes),
        );
        one(
            "flashblocks_rpc_flashblocks_applied_total",
            "counter",
            "Flashblocks applied to the pending state.",
            get(&self.flashblocks_applied),
        );
        one(
            "flashblocks_rpc_pending_blocks",
            "gauge",
            "Pending blocks held (served and waiting for their parent).",
            get(&self.pending_blocks),
        );
        one(
            "flashblocks_rpc_pending_serveable_blocks",
            "gauge",
            "Pending blocks connected to the upstream head (the pending depth served).",
            get(&self.serveable_blocks),
        );
        one(
            "flashblocks_rpc_pending_held_blocks",
            "gauge",
            "Pending blocks held until their parent is canonical.",
            get(&self.held_blocks),
        );
        let last = get(&self.last_frame_unix_ms);
        one(
            "flashblocks_rpc_stream_last_frame_age_ms",
            "gauge",
            "Time since the last flashblocks frame arrived (0 before the first).",
            if last == 0 {
                0
            } else {
                unix_ms().saturating_sub(last)
            },
        );
        one(
            "flashblocks_rpc_stream_connected",
            "gauge",
            "1 while the flashblocks WebSocket is connected.",
            get(&self.stream_connected),
        );
        one(
            "flashblocks_rpc_stream_connects_total",
            "counter",
            "Successful stream connections.",
            get(&self.stream_connects),
        );
        one(
            "flashblocks_rpc_upstream_head",
            "gauge",
            "Latest block number seen on the upstream.",
            get(&self.upstream_head),
        );
        one(
            "flashblocks_rpc_head_poll_failures_total",
            "counter",
            "Failed upstream head polls.",
            get(&self.head_poll_failures),
        );
        one(
            "flashblocks_rpc_reorgs_total",
            "counter",
            "Pending blocks replaced by another payload for the same height.",
            get(&self.reorgs),
        );
        one(
            "flashblocks_rpc_subscribers",
            "gauge",
            "Open flashblocks subscriptions.",
            get(&self.subscribers),
        );
        one(
            "flashblocks_rpc_subscribers_dropped_total",
            "counter",
            "Subscriptions closed because the subscriber lagged.",
            get(&self.subscribers_dropped),
        );
        let _ = writeln!(
            out,
            "# HELP flashblocks_rpc_stream_lag_ms Arrival of the last flashblock minus its block timestamp (negative: before it).\n# TYPE flashblocks_rpc_stream_lag_ms gauge\nflashblocks_rpc_stream_lag_ms {}",
            self.stream_lag_ms.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP flashblocks_rpc_answers_total Answers by source.\n# TYPE flashblocks_rpc_answers_total counter\nflashblocks_rpc_answers_total{{source=\"pending\"}} {}\nflashblocks_rpc_answers_total{{source=\"upstream\"}} {}",
            get(&self.answers_pending),
            get(&self.answers_upstream)
        );
        let _ = writeln!(
            out,
            "# HELP flashblocks_rpc_flashblocks_rejected_total Flashblocks not applied, by reason.\n# TYPE flashblocks_rpc_flashblocks_rejected_total counter"
        );
        for (i, (_, label)) in REJECTIONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "flashblocks_rpc_flashblocks_rejected_total{{reason=\"{label}\"}} {}",
                get(&self.rejected[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP flashblocks_rpc_simulations_total eth_simulateV1 runs of the pending blocks, by outcome.\n# TYPE flashblocks_rpc_simulations_total counter"
        );
        for (i, (_, label)) in SIMULATIONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "flashblocks_rpc_simulations_total{{outcome=\"{label}\"}} {}",
                get(&self.simulations[i])
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_exposes_signed_lag_answers_by_source_and_rejections() {
        let m = Metrics::default();
        m.answered(Source::Pending);
        m.answered(Source::Pending);
        m.answered(Source::Upstream);
        m.rejected(Rejection::Stale);
        m.frame_arrived(1_000_500, Some(1_001));
        m.set_depth(3, 1);
        let text = m.render();
        for line in [
            "flashblocks_rpc_answers_total{source=\"pending\"} 2",
            "flashblocks_rpc_answers_total{source=\"upstream\"} 1",
            "flashblocks_rpc_flashblocks_rejected_total{reason=\"stale\"} 1",
            "flashblocks_rpc_stream_lag_ms -500",
            "flashblocks_rpc_pending_blocks 3",
            "flashblocks_rpc_pending_serveable_blocks 1",
            "flashblocks_rpc_pending_held_blocks 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
