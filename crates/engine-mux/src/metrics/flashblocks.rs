//! The flashblocks series: the builder's stream, the store's verdicts, re-publication to
//! subscribers, P2P authorization, and preconfirmation telemetry per block.

use super::{
    FLASHBLOCKS_PER_BLOCK, Metrics, PRECONFIRMED_NOT_SEALED_PER_BLOCK,
    PRECONFIRMED_NOT_SEALED_REASONS,
};

impl Metrics {
    /// A flashblocks P2P authorization sent with a build.
    pub fn flashblocks_p2p_authorization(&self) {
        self.counter("engine_mux_flashblocks_p2p_authorizations_total", &[], 1);
    }

    /// A builder answered a build with another payload id than the one authorized for it.
    pub fn flashblocks_p2p_payload_id_mismatch(&self) {
        self.counter(
            "engine_mux_flashblocks_p2p_payload_id_mismatches_total",
            &[],
            1,
        );
    }

    /// A flashblock event (`received`, `accepted`).
    pub fn flashblock(&self, event: &'static str) {
        self.counter("engine_mux_flashblocks_total", &[("event", event)], 1);
    }

    /// A flashblock refused or skipped, by reason (`malformed`, `duplicate`, `equivocation`, ...).
    pub fn flashblock_rejected(&self, reason: &'static str) {
        self.counter(
            "engine_mux_flashblocks_rejected_total",
            &[("reason", reason)],
            1,
        );
    }

    /// Flashblocks held until they can be applied.
    pub fn flashblocks_held(&self, n: usize) {
        self.gauge("engine_mux_flashblocks_held", &[], n as f64);
    }

    /// Whether the builder's flashblocks stream is connected.
    pub fn flashblocks_connected(&self, up: bool) {
        self.gauge(
            "engine_mux_flashblocks_connected",
            &[],
            if up { 1.0 } else { 0.0 },
        );
    }

    /// A reconnect attempt to the builder's flashblocks stream.
    pub fn flashblocks_reconnect(&self) {
        self.counter("engine_mux_flashblocks_reconnects_total", &[], 1);
    }

    /// Current outbound subscribers.
    pub fn flashblocks_subscribers(&self, n: usize) {
        self.gauge("engine_mux_flashblocks_subscribers", &[], n as f64);
    }

    /// An outbound subscriber refused at the subscriber limit.
    pub fn flashblocks_subscriber_refused(&self) {
        self.counter("engine_mux_flashblocks_subscribers_refused_total", &[], 1);
    }

    /// An outbound subscriber disconnected for falling behind.
    pub fn flashblocks_lagging_disconnect(&self) {
        self.counter("engine_mux_flashblocks_lagging_disconnects_total", &[], 1);
    }

    /// Flashblocks behind a block at getPayload, and how many were missing (gaps never filled).
    pub fn flashblocks_per_block(&self, count: usize, missing: u64) {
        self.histogram(FLASHBLOCKS_PER_BLOCK, &[], count as f64);
        self.counter("engine_mux_flashblocks_missing_total", &[], missing);
    }

    /// Which flashblocks path a builder block took (`builder_payload`, `assembled`, `preserved`,
    /// `rebuilt` by the local EL from the preconfirmed transactions, or `lost`).
    pub fn flashblocks_block(&self, path: &'static str) {
        self.counter("engine_mux_flashblocks_blocks_total", &[("path", path)], 1);
    }
}

/// Preconfirmation telemetry, recorded through a builder's view after op-node had its answer.
impl Metrics {
    /// How one block's flashblocks stream behaved (see [`crate::preconfirmations::Figures`]).
    pub fn preconfirmation_stream(&self, f: &crate::preconfirmations::Figures) {
        if let Some(d) = f.first_delay {
            self.histogram(
                "engine_mux_flashblocks_first_delay_seconds",
                &[],
                d.as_secs_f64(),
            );
        }
        for d in &f.intervals {
            self.histogram(
                "engine_mux_flashblocks_interval_seconds",
                &[],
                d.as_secs_f64(),
            );
        }
        if let Some(d) = f.jitter {
            self.gauge(
                "engine_mux_flashblocks_interval_jitter_seconds",
                &[],
                d.as_secs_f64(),
            );
        }
        // Created at the first block, so a rate reads zero rather than nothing.
        self.counter("engine_mux_flashblocks_index_gaps_total", &[], f.gaps);
        self.counter(
            "engine_mux_flashblocks_out_of_order_total",
            &[],
            f.out_of_order,
        );
        if let Some(d) = f.last_to_get_payload {
            self.histogram(
                "engine_mux_flashblocks_last_to_get_payload_seconds",
                &[],
                d.as_secs_f64(),
            );
        }
        self.histogram(
            "engine_mux_flashblocks_get_payload_to_answer_seconds",
            &[],
            f.get_payload_to_answer.as_secs_f64(),
        );
    }

    /// Exports the not-sealed counter at 0 for every reason (a builder that streams
    /// flashblocks, at its start), so an alert on its increase sees the first occurrence.
    pub fn preconfirmed_not_sealed_init(&self) {
        for reason in PRECONFIRMED_NOT_SEALED_REASONS {
            self.counter(
                "engine_mux_preconfirmed_not_sealed_total",
                &[("reason", reason)],
                0,
            );
        }
    }

    /// Re-published transactions the block op-node got lacks (one observation per block whose
    /// flashblocks were re-published), counted by `reason` when there are any.
    pub fn preconfirmed_not_sealed(&self, n: u64, reason: &'static str) {
        self.histogram(PRECONFIRMED_NOT_SEALED_PER_BLOCK, &[], n as f64);
        if n > 0 {
            self.counter(
                "engine_mux_preconfirmed_not_sealed_total",
                &[("reason", reason)],
                n,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::sample;

    #[test]
    fn flashblocks_per_block_uses_count_buckets() {
        let m = Metrics::new();
        m.flashblocks_per_block(5, 0);
        m.flashblocks_per_block(12, 1);
        m.get_payload_total(Duration::from_millis(3));
        let text = m.render();
        // Counts land in whole-number buckets: 5 is within le="5", 12 is not.
        assert_eq!(
            sample(&text, r#"engine_mux_flashblocks_per_block_bucket{le="5"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"engine_mux_flashblocks_per_block_bucket{le="12"}"#),
            Some(2.0)
        );
        // No latency bucket on the count, and latencies keep theirs.
        assert_eq!(
            sample(
                &text,
                r#"engine_mux_flashblocks_per_block_bucket{le="0.0005"}"#
            ),
            None
        );
        assert_eq!(
            sample(
                &text,
                r#"engine_mux_get_payload_duration_seconds_bucket{le="0.005"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "engine_mux_flashblocks_missing_total"),
            Some(1.0)
        );
    }
}
