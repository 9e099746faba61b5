//! The failover flags, flattened into [`crate::config::args::Args`]. Named like rollup-boost's
//! flashblocks flags (`--flashblocks-*`, `FLASHBLOCKS_*`).

use clap::Args as ClapArgs;

/// Following peers' flashblocks to carry a dead leader's preconfirmations over.
#[derive(Clone, Debug, Default, ClapArgs)]
#[command(next_help_heading = "Failover (high-availability sets)")]
pub struct FailoverArgs {
    /// A peer sequencer's flashblocks WebSocket URL (its engine-mux's --flashblocks-port, or a
    /// flashblocks-proxy in front of it); repeatable. When op-node asks this engine-mux to build
    /// on a parent for which a peer's preconfirmed block is held (the peer died before sealing
    /// it), the new block starts with the peer's preconfirmed transactions.
    #[arg(
        long = "flashblocks-peer-url",
        env = "FLASHBLOCKS_PEER_URLS",
        value_delimiter = ','
    )]
    pub flashblocks_peer_urls: Vec<String>,
    /// Deadline for reading a carried transaction's sender nonce from the local EL, ms.
    #[arg(long, env = "FLASHBLOCKS_PEER_NONCE_TIMEOUT_MS", default_value_t = 200)]
    pub flashblocks_peer_nonce_timeout_ms: u64,
    /// First reconnect delay after a peer's stream drops, ms (doubles up to the max).
    #[arg(
        long,
        env = "FLASHBLOCKS_PEER_INITIAL_RECONNECT_MS",
        default_value_t = 10
    )]
    pub flashblocks_peer_initial_reconnect_ms: u64,
    /// Largest reconnect delay to a peer, ms.
    #[arg(
        long,
        env = "FLASHBLOCKS_PEER_MAX_RECONNECT_MS",
        default_value_t = 1000
    )]
    pub flashblocks_peer_max_reconnect_ms: u64,
    /// The secret the high-availability set shares (64 hex digits, like a JWT secret): a peer's
    /// flashblocks are accepted only when signed with it, and this engine-mux signs what it
    /// serves its peers on its --flashblocks-port at /peer. Required with --flashblocks-peer-url.
    #[arg(long, env = "FLASHBLOCKS_PEER_SECRET", hide_env_values = true)]
    pub flashblocks_peer_secret: Option<String>,
    /// File holding that secret (instead of --flashblocks-peer-secret).
    #[arg(long, env = "FLASHBLOCKS_PEER_SECRET_PATH")]
    pub flashblocks_peer_secret_path: Option<std::path::PathBuf>,
    /// Most time carrying a peer's transactions may add to op-node's forkchoiceUpdated, ms:
    /// no further attempt with carried transactions starts after it (op-node's own request goes
    /// through instead).
    #[arg(long, env = "FLASHBLOCKS_PEER_CARRY_BUDGET_MS", default_value_t = 100)]
    pub flashblocks_peer_carry_budget_ms: u64,
    /// Interval between pings to a peer, ms (a peer silent for two intervals is reconnected).
    #[arg(long, env = "FLASHBLOCKS_PEER_PING_INTERVAL_MS", default_value_t = 500)]
    pub flashblocks_peer_ping_interval_ms: u64,
}
