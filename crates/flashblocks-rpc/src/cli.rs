//! Command-line flags (every one also settable through its environment variable).

use clap::Parser;

/// `flashblocks-rpc` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flashblocks-rpc",
    about = "Serves pending-tag JSON-RPC from a flashblocks stream; forwards everything else"
)]
pub struct Args {
    /// Flashblocks WebSocket to subscribe to (engine-mux outbound or flashblocks-proxy).
    #[arg(
        long,
        env = "FLASHBLOCKS_WS_URL",
        default_value = "ws://127.0.0.1:1111"
    )]
    pub flashblocks_url: String,
    /// Upstream EL JSON-RPC (HTTP) that answers everything not served from pending state.
    #[arg(
        long,
        env = "UPSTREAM_RPC_URL",
        default_value = "http://127.0.0.1:8545"
    )]
    pub upstream_url: String,
    /// Hex JWT secret for an upstream that wants Engine-API-style auth (an EL's auth port,
    /// engine-mux's RPC port); none for a plain RPC.
    #[arg(
        long,
        env = "UPSTREAM_JWT_SECRET",
        value_name = "HEX",
        hide_env_values = true
    )]
    pub upstream_jwt_secret: Option<String>,
    /// File holding the upstream's hex JWT secret (alternative to --upstream-jwt-secret).
    #[arg(
        long,
        env = "UPSTREAM_JWT_PATH",
        value_name = "PATH",
        conflicts_with = "upstream_jwt_secret"
    )]
    pub upstream_jwt_path: Option<std::path::PathBuf>,
    /// Listen address for HTTP and WebSocket JSON-RPC (one port serves both).
    #[arg(long, env = "RPC_ADDR", default_value = "127.0.0.1:8547")]
    pub rpc_addr: String,
    /// Most pending blocks held at once (connected to the head or waiting for their parent).
    #[arg(long, env = "MAX_PENDING_BLOCKS", default_value_t = 4)]
    pub max_pending_blocks: usize,
    /// Most flashblocks accepted per pending block.
    #[arg(long, env = "MAX_FLASHBLOCKS_PER_BLOCK", default_value_t = 256)]
    pub max_flashblocks_per_block: u64,
    /// Largest flashblocks frame accepted, in bytes.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// Deadline for each upstream call, in milliseconds.
    #[arg(long, env = "UPSTREAM_TIMEOUT_MS", default_value_t = 2_000)]
    pub upstream_timeout_ms: u64,
    /// How often the upstream's latest block is polled, in milliseconds.
    #[arg(long, env = "HEAD_POLL_INTERVAL_MS", default_value_t = 50)]
    pub head_poll_interval_ms: u64,
    /// Pending state is not served when the last successful head poll is older than this (ms).
    #[arg(long, env = "HEAD_MAX_AGE_MS", default_value_t = 1_000)]
    pub head_max_age_ms: u64,
    /// First reconnect delay after the stream drops, in milliseconds (doubles, jittered).
    #[arg(long, env = "RECONNECT_MIN_MS", default_value_t = 100)]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, in milliseconds.
    #[arg(long, env = "RECONNECT_MAX_MS", default_value_t = 5_000)]
    pub reconnect_max_ms: u64,
    /// The stream is considered dead (pending state dropped, reconnect) after this long
    /// without a frame, in milliseconds.
    #[arg(long, env = "STREAM_IDLE_TIMEOUT_MS", default_value_t = 10_000)]
    pub stream_idle_timeout_ms: u64,
    /// Most concurrent HTTP + WebSocket connections.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1_000)]
    pub max_connections: u32,
    /// Largest JSON-RPC request body accepted, in bytes.
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_request_bytes: u32,
    /// Largest upstream response accepted, in bytes.
    #[arg(long, env = "MAX_RESPONSE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Serve Prometheus metrics.
    #[arg(long, env = "METRICS", default_value_t = false)]
    pub metrics: bool,
    /// Prometheus listen address (`GET /metrics`).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9092")]
    pub metrics_addr: String,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}
