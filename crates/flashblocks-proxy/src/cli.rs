//! Command-line flags and environment variables (compatible with rollup-boost's websocket-proxy).

use clap::{ArgAction, Parser, ValueEnum};

/// Raw command-line arguments; validated into [`crate::config::Config`] with `TryFrom`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flashblocks-proxy",
    version,
    about = "WebSocket fan-out of the flashblocks stream"
)]
pub struct Args {
    /// Address to accept subscriber connections on.
    #[arg(long, env, default_value = "0.0.0.0:8545")]
    pub listen_addr: String,

    /// WebSocket URL(s) of the upstream flashblocks source(s), comma separated.
    #[arg(long, env, value_delimiter = ',', required = true)]
    pub upstream_ws: Vec<String>,

    /// Number of messages a subscriber may fall behind before it is disconnected.
    #[arg(long, env, default_value_t = 20)]
    pub message_buffer_size: usize,

    /// Maximum concurrent subscribers on this instance.
    #[arg(long, env, default_value_t = 100)]
    pub instance_connection_limit: usize,

    /// Maximum concurrent subscribers per client IP (across instances with `--redis-url`); 0 = no limit.
    #[arg(long, env, default_value_t = 10)]
    pub per_ip_connection_limit: usize,

    /// API keys as `app:key:limit` (or `app:key` for no per-app limit), comma separated.
    #[arg(long, env, value_delimiter = ',')]
    pub api_keys: Vec<String>,

    /// Brotli-compress messages sent to subscribers (sent as binary frames).
    #[arg(long, env, action = ArgAction::SetTrue)]
    pub enable_compression: bool,

    /// Header carrying the client IP when the peer is a trusted proxy.
    #[arg(long, env, default_value = "X-Forwarded-For")]
    pub ip_addr_http_header: String,

    /// Peers (IPs or CIDRs, comma separated) whose IP header is trusted; others count by socket address.
    #[arg(long, env, value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Redis URL for connection limits shared across instances; in-memory limits when unset.
    #[arg(long, env)]
    pub redis_url: Option<String>,

    /// `--redis-url` is a Redis Cluster: one or more seed nodes, comma separated.
    #[arg(long, env, action = ArgAction::SetTrue)]
    pub redis_cluster: bool,

    /// Prefix for every Redis key this proxy writes (its hash tag: one cluster slot).
    #[arg(long, env, default_value = "flashblocks")]
    pub redis_key_prefix: String,

    /// What to do when Redis is unreachable: `open` (fall back to local limits) or `closed` (reject).
    #[arg(long, env, value_enum, default_value_t = FailurePolicy::Open)]
    pub redis_failure_policy: FailurePolicy,

    /// Lifetime of this instance's Redis keys; refreshed by a heartbeat every third of it.
    #[arg(long, env, default_value_t = 30_000)]
    pub redis_instance_ttl_ms: u64,

    /// Timeout for one Redis operation.
    #[arg(long, env, default_value_t = 500)]
    pub redis_timeout_ms: u64,

    /// Serve Prometheus metrics (`--metrics false` to disable).
    #[arg(long, env, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metrics: bool,

    /// Address of the Prometheus metrics endpoint.
    #[arg(long, env, default_value = "0.0.0.0:9000")]
    pub metrics_addr: String,

    /// Labels added to every metric, `name=value,name=value`.
    #[arg(long, env, default_value = "")]
    pub metrics_global_labels: String,

    /// Add the host name as a `host` label to every metric.
    #[arg(long, env, action = ArgAction::SetTrue)]
    pub metrics_host_label: bool,

    /// Maximum upstream reconnect backoff.
    #[arg(long, env, default_value_t = 20_000)]
    pub subscriber_max_interval_ms: u64,

    /// Interval between pings to each upstream.
    #[arg(long, env, default_value_t = 2_000)]
    pub subscriber_ping_interval_ms: u64,

    /// An upstream silent (no pong, no message) for this long is reconnected.
    #[arg(long, env, default_value_t = 4_000)]
    pub subscriber_pong_timeout_ms: u64,

    /// Ping subscribers and disconnect those that stop answering.
    #[arg(long, env, action = ArgAction::SetTrue)]
    pub client_ping_enabled: bool,

    /// Interval between pings to each subscriber.
    #[arg(long, env, default_value_t = 15_000)]
    pub client_ping_interval_ms: u64,

    /// A subscriber that has not answered a ping for this long is disconnected.
    #[arg(long, env, default_value_t = 30_000)]
    pub client_pong_timeout_ms: u64,

    /// Writer shards (tasks that write frames to subscriber sockets); 0 = one per CPU core.
    #[arg(long, env, default_value_t = 0)]
    pub fanout_shards: usize,

    /// How writer shards send frames: `auto` (io_uring batches where the kernel allows them,
    /// otherwise direct writes), `io-uring` (refuse to start without it) or `write`.
    #[arg(long, env, value_enum, default_value_t = SendPath::Auto)]
    pub send_path: SendPath,

    /// Log filter (`info`, `debug`, `flashblocks_proxy=trace`, ...).
    #[arg(long, env, default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Behaviour when the shared limit store (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailurePolicy {
    /// Admit the connection, counting it against this instance's local limits only.
    Open,
    /// Reject the connection with 503.
    Closed,
}

/// How writer shards send frames to subscriber sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendPath {
    /// io_uring where available, direct writes otherwise.
    Auto,
    /// io_uring batches only.
    IoUring,
    /// One non-blocking `send` system call per subscriber and frame.
    Write,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
