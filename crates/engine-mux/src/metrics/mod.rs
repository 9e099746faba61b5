//! Per-instance Prometheus metrics. Each engine-mux instance owns its recorder (no global
//! recorder), so several instances in one process — the devnet, the tests — keep separate books.

use std::{sync::Arc, time::Duration};

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::{execution_mode::ExecutionMode, select::fallback::FallbackReason};

mod builders;
mod failover;
mod flashblocks;

const METADATA: Metadata<'static> =
    Metadata::new("engine_mux", metrics::Level::INFO, Some(module_path!()));

/// Latency buckets in seconds: loopback calls are sub-millisecond, builder deadlines ~1 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
];

/// The one histogram that counts rather than times.
const FLASHBLOCKS_PER_BLOCK: &str = "engine_mux_flashblocks_per_block";

/// Buckets for a count of flashblocks behind one block: a builder streams one every 200 ms or
/// so (5 per 1 s block, 10 at 100 ms), chains with longer blocks or faster streams reach dozens.
const FLASHBLOCK_COUNT_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0, 64.0,
];

/// Preconfirmed transactions missing from a block: a count per block, not a latency.
const PRECONFIRMED_NOT_SEALED_PER_BLOCK: &str = "engine_mux_preconfirmed_not_sealed_per_block";

/// Every reason [`crate::preconfirmations::reason`] gives, the not-sealed counter's label
/// values: each builder that streams flashblocks exports all of them from its start, at 0, so
/// `increase()` sees the first occurrence of each.
pub(crate) const PRECONFIRMED_NOT_SEALED_REASONS: &[&str] = &[
    "mode_change",
    "builder_block",
    "policy",
    "builder_died",
    "invalid",
    "late",
    "local_fallback",
    "no_block",
];

/// Buckets for transactions per block: none at all is the healthy case, a whole block's worth
/// (hundreds to thousands) the worst.
const TX_COUNT_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

/// rollup-boost's blocks counter as its dashboards read it (`rpc.blocks_created` under the
/// `rollup-boost` prefix, as the Prometheus exporter sanitizes it).
pub(crate) const ROLLUP_BOOST_BLOCKS_CREATED: &str = "rollup_boost_rpc_blocks_created";
/// rollup-boost's execution mode gauge (`rollup_boost_execution_mode` under its prefix).
pub(crate) const ROLLUP_BOOST_EXECUTION_MODE: &str = "rollup_boost_rollup_boost_execution_mode";

/// Where a proposed block came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSource {
    /// The builder's payload, validated VALID by the local EL.
    Builder,
    /// The local EL's own payload.
    Local,
}

impl BlockSource {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builder => "builder",
            Self::Local => "local",
        }
    }
}

/// The metrics of one engine-mux instance, or a view of them that adds labels to every series
/// it records (one per builder: `builder="<name>"`).
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// Labels added to every series recorded through this view.
    scope: Vec<Label>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &'static str)], scope: &[Label]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, *v))
            .chain(scope.iter().cloned())
            .collect::<Vec<_>>(),
    )
}

impl Metrics {
    /// A fresh, empty set of metrics.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("static bucket list is non-empty")
            .set_buckets_for_metric(
                Matcher::Full(FLASHBLOCKS_PER_BLOCK.to_string()),
                FLASHBLOCK_COUNT_BUCKETS,
            )
            .expect("static bucket list is non-empty")
            .set_buckets_for_metric(
                Matcher::Full(PRECONFIRMED_NOT_SEALED_PER_BLOCK.to_string()),
                TX_COUNT_BUCKETS,
            )
            .expect("static bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        Self {
            recorder: Arc::new(recorder),
            handle,
            scope: Vec::new(),
        }
    }

    /// A view of the same books that adds `builder="<name>"` to everything it records.
    pub fn for_builder(&self, name: &'static str) -> Self {
        let mut scope = self.scope.clone();
        // Static: every series recorded through the view clones it, without allocating.
        scope.push(Label::from_static_parts("builder", name));
        Self {
            recorder: self.recorder.clone(),
            handle: self.handle.clone(),
            scope,
        }
    }

    /// Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Housekeeping the exporter needs periodically (drains histogram buffers).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &'static str)], n: u64) {
        self.recorder
            .register_counter(&key(name, labels, &self.scope), &METADATA)
            .increment(n);
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &'static str)], v: f64) {
        self.recorder
            .register_gauge(&key(name, labels, &self.scope), &METADATA)
            .set(v);
    }

    fn histogram(&self, name: &'static str, labels: &[(&'static str, &'static str)], v: f64) {
        self.recorder
            .register_histogram(&key(name, labels, &self.scope), &METADATA)
            .record(v);
    }

    /// An inbound request served, by method (`proxy` for the raw path, `batch` for batches).
    pub fn inbound(&self, method: &'static str, elapsed: Duration) {
        self.histogram(
            "engine_mux_rpc_request_duration_seconds",
            &[("method", method)],
            elapsed.as_secs_f64(),
        );
    }

    /// One call to an upstream, by upstream, method and outcome (`ok` or an error kind).
    pub fn upstream_call(
        &self,
        upstream: &'static str,
        method: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.histogram(
            "engine_mux_upstream_request_duration_seconds",
            &[("upstream", upstream), ("method", method)],
            elapsed.as_secs_f64(),
        );
        self.counter(
            "engine_mux_upstream_requests_total",
            &[
                ("upstream", upstream),
                ("method", method),
                ("outcome", outcome),
            ],
            1,
        );
    }

    /// A block returned to op-node, by source. Also counted under rollup-boost's name
    /// (`rpc.blocks_created` behind its `rollup-boost` prefix, label `l2` for local blocks) so
    /// existing rollup-boost dashboards keep working.
    pub fn block_proposed(&self, source: BlockSource) {
        self.counter(
            "engine_mux_blocks_proposed_total",
            &[("source", source.as_str())],
            1,
        );
        let legacy = match source {
            BlockSource::Builder => "builder",
            BlockSource::Local => "l2",
        };
        self.counter(ROLLUP_BOOST_BLOCKS_CREATED, &[("source", legacy)], 1);
    }

    /// A getPayload that returned the local block although the builder was asked.
    pub fn fallback(&self, reason: FallbackReason) {
        self.counter(
            "engine_mux_fallbacks_total",
            &[("reason", reason.as_str())],
            1,
        );
    }

    /// Overall getPayload latency as op-node saw it.
    pub fn get_payload_total(&self, elapsed: Duration) {
        self.histogram(
            "engine_mux_get_payload_duration_seconds",
            &[],
            elapsed.as_secs_f64(),
        );
    }

    /// Current health as the HTTP status op-conductor reads (200 / 206 / 503).
    pub fn health(&self, status: u16) {
        self.gauge("engine_mux_health_status", &[], f64::from(status));
    }

    /// The current execution mode: one-hot by label, and rollup-boost's single gauge
    /// (enabled 3, dry_run 2, disabled 1).
    pub fn execution_mode(&self, mode: ExecutionMode) {
        self.gauge(
            ROLLUP_BOOST_EXECUTION_MODE,
            &[],
            match mode {
                ExecutionMode::Enabled => 3.0,
                ExecutionMode::DryRun => 2.0,
                ExecutionMode::Disabled => 1.0,
            },
        );
        for m in [
            ExecutionMode::Enabled,
            ExecutionMode::DryRun,
            ExecutionMode::Disabled,
        ] {
            self.gauge(
                "engine_mux_execution_mode",
                &[("mode", m.as_str())],
                if m == mode { 1.0 } else { 0.0 },
            );
        }
    }

    /// Entries in the local→builder payload id map.
    pub fn payload_ids(&self, len: usize) {
        self.gauge("engine_mux_payload_id_map_entries", &[], len as f64);
    }

    /// Items waiting in a queue.
    pub fn queue_depth(&self, queue: &'static str, depth: usize) {
        self.gauge("engine_mux_queue_depth", &[("queue", queue)], depth as f64);
    }

    /// A call dropped from a queue, and why.
    pub fn queue_dropped(&self, queue: &'static str, reason: &'static str) {
        self.counter(
            "engine_mux_queue_dropped_total",
            &[("queue", queue), ("reason", reason)],
            1,
        );
    }

    /// Recent payloads held for catch-up.
    pub fn recent_payloads(&self, len: usize) {
        self.gauge("engine_mux_recent_payloads", &[], len as f64);
    }

    /// Result of an upstream probe (`synced`, `stale`, `failed`).
    pub fn probe(&self, upstream: &'static str, outcome: &'static str) {
        self.counter(
            "engine_mux_probes_total",
            &[("upstream", upstream), ("outcome", outcome)],
            1,
        );
    }

    /// A request without a JWT let through because it calls no `engine_*` method.
    pub fn unauthenticated_passed(&self) {
        self.counter("engine_mux_unauthenticated_requests_total", &[], 1);
    }

    /// Requests refused before routing (body too large, unparseable, ...).
    pub fn rejected(&self, reason: &'static str) {
        self.counter(
            "engine_mux_rejected_requests_total",
            &[("reason", reason)],
            1,
        );
    }
}

/// Reads one series back from Prometheus text (for tests, benchmarks and status lines).
pub use engine_api::prometheus::sample;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_keep_separate_books() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.block_proposed(BlockSource::Builder);
        a.block_proposed(BlockSource::Builder);
        a.fallback(FallbackReason::Timeout);
        let text = a.render();
        assert_eq!(
            sample(
                &text,
                r#"engine_mux_blocks_proposed_total{source="builder"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"engine_mux_fallbacks_total{reason="timeout"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &b.render(),
                r#"engine_mux_blocks_proposed_total{source="builder"}"#
            ),
            None
        );
    }

    #[test]
    fn rollup_boost_dashboard_names() {
        let m = Metrics::new();
        m.block_proposed(BlockSource::Builder);
        m.block_proposed(BlockSource::Local);
        m.block_proposed(BlockSource::Local);
        m.execution_mode(ExecutionMode::DryRun);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                r#"rollup_boost_rpc_blocks_created{source="builder"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"rollup_boost_rpc_blocks_created{source="l2"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "rollup_boost_rollup_boost_execution_mode"),
            Some(2.0)
        );
        for (mode, v) in [
            (ExecutionMode::Enabled, 3.0),
            (ExecutionMode::Disabled, 1.0),
        ] {
            m.execution_mode(mode);
            assert_eq!(
                sample(&m.render(), "rollup_boost_rollup_boost_execution_mode"),
                Some(v)
            );
        }
    }
}
