//! The per-builder block series: each builder's part in a block, its blocks compared with the
//! local one, validation before op-node asks, and catch-up.

use super::Metrics;

impl Metrics {
    /// One builder's part in one block (recorded through its view, so labelled with its name):
    /// `proposed`, or why its block was not (`not_chosen` when another builder's won).
    pub fn builder_block(&self, outcome: &'static str) {
        self.counter(
            "engine_mux_builder_blocks_total",
            &[("outcome", outcome)],
            1,
        );
    }

    /// Blocks replayed to the builder by catch-up, by where they came from (`recent`: the
    /// payloads op-node sent, `local_el`: fetched from the local EL beyond that window).
    pub fn catch_up_replayed(&self, source: &'static str, blocks: u64) {
        self.counter(
            "engine_mux_catch_up_replayed_blocks_total",
            &[("source", source)],
            blocks,
        );
    }

    /// A catch-up run, by outcome (`synced`, `nothing_to_do`, `budget_exhausted`, `failed`).
    pub fn catch_up_run(&self, outcome: &'static str) {
        self.counter("engine_mux_catch_up_runs_total", &[("outcome", outcome)], 1);
    }

    /// A proposed builder block compared with the local block for the same attributes:
    /// transactions it omitted, and what it adds over the local block.
    pub fn builder_compared(&self, omitted: u64, gas_over_local: i128, txs_over_local: i64) {
        self.counter("engine_mux_builder_compared_blocks_total", &[], 1);
        self.counter(
            "engine_mux_builder_omitted_transactions_total",
            &[],
            omitted,
        );
        if omitted > 0 {
            self.counter("engine_mux_builder_blocks_with_omissions_total", &[], 1);
        }
        // Signed differences of the last compared block (a histogram's buckets are latencies).
        self.gauge(
            "engine_mux_builder_gas_over_local",
            &[],
            gas_over_local as f64,
        );
        self.gauge(
            "engine_mux_builder_txs_over_local",
            &[],
            txs_over_local as f64,
        );
    }

    /// A builder block checked and validated before op-node asked for it (through the builder's
    /// view): `valid`, or the fallback reason it failed with.
    pub fn prevalidation(&self, outcome: &'static str) {
        self.counter(
            "engine_mux_prevalidations_total",
            &[("outcome", outcome)],
            1,
        );
    }

    /// A build whose block was not validated early, and why (`late`, `no_block`, `queue_full`,
    /// `version_unknown`).
    pub fn prevalidation_skipped(&self, reason: &'static str) {
        self.counter(
            "engine_mux_prevalidations_skipped_total",
            &[("reason", reason)],
            1,
        );
    }

    /// A getPayload that met a block validated early: `served` (answered without validating it
    /// again), `rejected` (it was INVALID), `changed` (the builder's block changed since; it was
    /// validated again).
    pub fn prevalidated_get_payload(&self, result: &'static str) {
        self.counter(
            "engine_mux_prevalidated_get_payloads_total",
            &[("result", result)],
            1,
        );
    }
}
