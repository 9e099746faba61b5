//! The flag groups [`super::args::Args`] flattens, one per concern (local EL, builder, several
//! builders, flashblocks, inbound auth, P2P authorization), and the value enums they take.

use std::path::PathBuf;

use clap::{Args as ClapArgs, ValueEnum};

/// The local execution client (op-geth / op-reth) engine endpoint.
#[derive(Clone, Debug, ClapArgs)]
#[command(next_help_heading = "Local execution client (L2)")]
pub struct L2Args {
    /// Engine API URL of the local execution client.
    #[arg(long, env = "L2_URL", default_value = "http://127.0.0.1:8551")]
    pub l2_url: String,
    /// Hex JWT secret shared with the local execution client.
    #[arg(long, env = "L2_JWT_TOKEN", value_name = "HEX", hide_env_values = true)]
    pub l2_jwt_token: Option<String>,
    /// File holding the hex JWT secret (used when --l2-jwt-token is not given).
    #[arg(long, env = "L2_JWT_PATH", value_name = "PATH")]
    pub l2_jwt_path: Option<PathBuf>,
    /// Per-call timeout in milliseconds.
    #[arg(long, env = "L2_TIMEOUT", default_value_t = 1000)]
    pub l2_timeout: u64,
}

/// The external block builder's engine endpoint.
#[derive(Clone, Debug, ClapArgs)]
#[command(next_help_heading = "Builder")]
pub struct BuilderArgs {
    /// Engine API URL of the builder.
    #[arg(long, env = "BUILDER_URL", default_value = "http://127.0.0.1:8551")]
    pub builder_url: String,
    /// Hex JWT secret shared with the builder.
    #[arg(
        long,
        env = "BUILDER_JWT_TOKEN",
        value_name = "HEX",
        hide_env_values = true
    )]
    pub builder_jwt_token: Option<String>,
    /// File holding the builder's hex JWT secret (used when --builder-jwt-token is not given).
    #[arg(long, env = "BUILDER_JWT_PATH", value_name = "PATH")]
    pub builder_jwt_path: Option<PathBuf>,
    /// Per-call timeout in milliseconds.
    #[arg(long, env = "BUILDER_TIMEOUT", default_value_t = 1000)]
    pub builder_timeout: u64,
    /// Name of this builder in logs, metrics (`builder="<name>"`) and the debug API.
    #[arg(long, env = "BUILDER_NAME", default_value = "builder")]
    pub builder_name: String,
}

/// Builders beyond the one --builder-url names. One builder needs none of these.
#[derive(Clone, Debug, ClapArgs)]
#[command(next_help_heading = "Several builders")]
pub struct MoreBuildersArgs {
    /// Another builder, as comma-separated key=value pairs (repeatable):
    /// `name=b2,url=http://10.0.0.2:8551,jwt-path=/secrets/b2.hex`. Keys: name, url,
    /// jwt-token | jwt-path, timeout-ms (default --builder-timeout), flashblocks-url (ws/wss),
    /// priority (lower is preferred; default: its position), enabled (true/false).
    /// In the env var, entries are separated by `;`.
    #[arg(
        long = "extra-builder",
        env = "EXTRA_BUILDERS",
        value_name = "SPEC",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub extra_builders: Vec<String>,
    /// A TOML (`[[builders]]` tables) or JSON (array of objects) file of more builders, with
    /// the keys of --extra-builder (`jwt_path` or `jwt-path` alike).
    #[arg(long, env = "BUILDERS_FILE", value_name = "PATH")]
    pub builders_file: Option<PathBuf>,
    /// How builders' blocks are ranked at getPayload; the best is validated first and the next
    /// only if it fails. `gas-used`: most gas used. `priority`: the first healthy builder in
    /// priority order (primary/backup). `block-value`: the highest blockValue the builder
    /// reports, capped at what the block's own transactions can pay in tips.
    #[arg(long, env = "BUILDER_POLICY", value_enum, default_value_t = BuilderPolicyArg::GasUsed)]
    pub builder_policy: BuilderPolicyArg,
    /// With several builders: once one builder's block is in, how long getPayload still waits
    /// for the others, in ms (never past --get-payload-deadline-ms; the elected flashblocks
    /// builder is always waited for).
    #[arg(long, env = "BUILDER_GRACE_MS", default_value_t = 50)]
    pub builder_grace_ms: u64,
}

/// `--builder-policy` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BuilderPolicyArg {
    /// The block with the most gas used first.
    GasUsed,
    /// The first healthy builder in priority order first.
    Priority,
    /// The highest (capped) reported block value first.
    BlockValue,
}

/// Flashblocks from the builder, re-published to engine-mux's own subscribers.
#[derive(Clone, Debug, ClapArgs)]
#[command(next_help_heading = "Flashblocks")]
pub struct FlashblocksArgs {
    /// Receive the builder's flashblocks, re-publish them, and assemble blocks from them.
    #[arg(long = "flashblocks", env = "FLASHBLOCKS")]
    pub enabled: bool,
    /// The builder's flashblocks WebSocket URL.
    #[arg(
        long,
        env = "FLASHBLOCKS_BUILDER_URL",
        default_value = "ws://127.0.0.1:1111"
    )]
    pub flashblocks_builder_url: String,
    /// Host of the outbound flashblocks WebSocket server.
    #[arg(long, env = "FLASHBLOCKS_HOST", default_value = "127.0.0.1")]
    pub flashblocks_host: String,
    /// Port of the outbound flashblocks WebSocket server.
    #[arg(long, env = "FLASHBLOCKS_PORT", default_value_t = 1112)]
    pub flashblocks_port: u16,
    /// First reconnect delay after the builder's stream drops, ms (doubles up to the max).
    #[arg(
        long,
        env = "FLASHBLOCK_BUILDER_WS_INITIAL_RECONNECT_MS",
        default_value_t = 10
    )]
    pub flashblock_builder_ws_initial_reconnect_ms: u64,
    /// Largest reconnect delay, ms.
    #[arg(
        long,
        env = "FLASHBLOCK_BUILDER_WS_MAX_RECONNECT_MS",
        default_value_t = 5000
    )]
    pub flashblock_builder_ws_max_reconnect_ms: u64,
    /// Connection attempt timeout, ms.
    #[arg(
        long,
        env = "FLASHBLOCK_BUILDER_WS_CONNECT_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub flashblock_builder_ws_connect_timeout_ms: u64,
    /// Interval between pings to the builder, ms.
    #[arg(
        long,
        env = "FLASHBLOCK_BUILDER_WS_PING_INTERVAL_MS",
        default_value_t = 500
    )]
    pub flashblock_builder_ws_ping_interval_ms: u64,
    /// A connection whose pong is later than this is dropped and reconnected, ms.
    #[arg(
        long,
        env = "FLASHBLOCK_BUILDER_WS_PONG_TIMEOUT_MS",
        default_value_t = 1500
    )]
    pub flashblock_builder_ws_pong_timeout_ms: u64,
}

/// How op-node's requests to engine-mux are authenticated.
#[derive(Clone, Debug, ClapArgs)]
#[command(next_help_heading = "Inbound auth (op-node → engine-mux)")]
pub struct InboundAuthArgs {
    /// Hex JWT secret op-node signs with; default: the L2 secret.
    #[arg(
        long,
        env = "AUTH_JWT_TOKEN",
        value_name = "HEX",
        hide_env_values = true
    )]
    pub auth_jwt_token: Option<String>,
    /// File holding op-node's hex JWT secret; default: the L2 secret.
    #[arg(long, env = "AUTH_JWT_PATH", value_name = "PATH")]
    pub auth_jwt_path: Option<PathBuf>,
    /// Accept unauthenticated engine API requests (compatibility with rollup-boost, which does
    /// not check op-node's JWT). Only for a port nothing else can reach.
    #[arg(long, env = "NO_INBOUND_AUTH")]
    pub no_inbound_auth: bool,
    /// Require op-node's JWT on every method, not only on `engine_*`. By default non-engine
    /// calls (eth_sendRawTransaction from the rollup's RPC nodes, chain reads by tools) pass
    /// without a token, as they do with rollup-boost; a token that is present must be valid.
    #[arg(long, env = "REQUIRE_AUTH_ALL", conflicts_with = "no_inbound_auth")]
    pub require_auth_all: bool,
}

/// Flashblocks P2P authorization (rollup-boost's P2P mode): each FCU with attributes tells
/// the builder, signed by the authorizer key, that it may publish this block's flashblocks.
#[derive(Clone, ClapArgs)]
#[command(next_help_heading = "Flashblocks P2P")]
pub struct FlashblocksP2pArgs {
    /// Authorize the builder per block to publish flashblocks over its P2P network: an FCU
    /// with attributes goes to it as `flashblocks_forkchoiceUpdatedV3` with a signed
    /// authorization. Needs both keys; conflicts with --flashblocks (WebSocket mode).
    #[arg(long, env = "FLASHBLOCKS_P2P")]
    pub flashblocks_p2p: bool,
    /// The authorizer's ed25519 signing key (32 bytes, hex) that signs each authorization.
    #[arg(
        long,
        env = "FLASHBLOCKS_AUTHORIZER_SK",
        value_name = "HEX",
        hide_env_values = true
    )]
    pub flashblocks_authorizer_sk: Option<String>,
    /// The builder's ed25519 verifying key (32 bytes, hex) that each authorization names.
    #[arg(long, env = "FLASHBLOCKS_BUILDER_VK", value_name = "HEX")]
    pub flashblocks_builder_vk: Option<String>,
}

impl std::fmt::Debug for FlashblocksP2pArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashblocksP2pArgs")
            .field("flashblocks_p2p", &self.flashblocks_p2p)
            .field(
                "flashblocks_authorizer_sk",
                &self
                    .flashblocks_authorizer_sk
                    .as_ref()
                    .map(|_| "<redacted>"),
            )
            .field("flashblocks_builder_vk", &self.flashblocks_builder_vk)
            .finish()
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Block selection policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SelectionPolicyArg {
    /// Builder block loses when its gas used is below a fraction of the local block's.
    GasUsed,
}
