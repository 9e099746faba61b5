//! The failover carry-over series: peers' streams and held blocks, and the preconfirmations
//! carried into (or dropped from) the new leader's block.

use super::Metrics;

impl Metrics {
    /// A carry-over stopped trying carried transactions: its time budget was spent.
    pub fn carry_budget_spent(&self) {
        self.counter("engine_mux_failover_carry_budget_spent_total", &[], 1);
    }

    /// How long an FCU with a carry-over took, nonce reads and every attempt included.
    pub fn carry_duration(&self, seconds: f64) {
        self.histogram("engine_mux_failover_carry_seconds", &[], seconds);
    }

    /// op-node asked to build on a parent for which a peer's preconfirmed block is held.
    pub fn failover_seen(&self) {
        self.counter("engine_mux_failovers_total", &[], 1);
    }

    /// Preconfirmed transactions of a peer carried into the block op-node asked for.
    pub fn preconfirmed_carried(&self, n: u64) {
        self.counter("engine_mux_preconfirmed_carried_total", &[], n);
    }

    /// Preconfirmed transactions of a peer not carried over, by reason.
    pub fn preconfirmed_dropped(&self, reason: &'static str, n: u64) {
        self.counter(
            "engine_mux_preconfirmed_dropped_total",
            &[("reason", reason)],
            n,
        );
    }

    /// A peer's flashblock, by outcome (`accepted`, or why it was refused).
    pub fn peer_flashblock(&self, outcome: &'static str) {
        self.counter(
            "engine_mux_peer_flashblocks_total",
            &[("outcome", outcome)],
            1,
        );
    }

    /// The bounded store of peers' preconfirmed blocks: blocks and transactions held.
    pub fn peer_preconfirmations_held(&self, blocks: usize, transactions: usize) {
        self.gauge(
            "engine_mux_peer_preconfirmed_blocks_held",
            &[],
            blocks as f64,
        );
        self.gauge(
            "engine_mux_peer_preconfirmed_transactions_held",
            &[],
            transactions as f64,
        );
    }

    /// Peers' flashblocks streams currently connected.
    pub fn peer_streams_connected(&self, n: usize) {
        self.gauge("engine_mux_peer_streams_connected", &[], n as f64);
    }
}
