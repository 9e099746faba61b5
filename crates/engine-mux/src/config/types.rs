//! The configuration's types: [`Config`] and its parts. Their own file because both the
//! command line's path (`TryFrom<Args>` in `mod.rs`) and [`super::ConfigBuilder`] build them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ed25519_dalek::VerifyingKey;
use engine_api::{JwtSecret, flashblocks_p2p::AuthorizerKey};

use super::{BuilderConfig, LocalElConfig, args::LogFormat};
use crate::{
    execution_mode::ExecutionMode,
    flashblocks::inbound::InboundConfig,
    select::{BuilderPolicy, SelectionPolicy},
};

/// Health probing parameters.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// Interval between probes while everything is healthy.
    pub check_interval: Duration,
    /// Interval between probes while the builder or the local EL is unhealthy.
    pub fast_interval: Duration,
    /// How far an upstream's latest block may lag the wall clock.
    pub max_unsafe_interval: Duration,
    /// How long the builders' verdict must hold before `/healthz` follows it.
    pub tolerance: crate::health::Tolerance,
}

/// Logging setup.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Filter directive (`info`, `engine_mux=debug`, ...).
    pub level: String,
    /// Text or JSON.
    pub format: LogFormat,
    /// Log file instead of stdout.
    pub file: Option<PathBuf>,
    /// Whether OTLP export was requested.
    pub otlp: Option<String>,
}

/// Flashblocks in and out.
#[derive(Clone, Debug)]
pub struct FlashblocksConfig {
    /// How builders' streams are kept (the URL is --flashblocks-builder-url's; each builder
    /// uses its own).
    pub inbound: InboundConfig,
    /// Where engine-mux re-publishes.
    pub outbound_addr: SocketAddr,
}

/// Flashblocks P2P authorization: each FCU with attributes the builder gets in `enabled` mode
/// carries the authorizer's signed permission for `builder_vk`.
#[derive(Clone, Debug)]
pub struct FlashblocksP2pConfig {
    /// The authorizer's signing key (its Debug shows only the public half).
    pub authorizer: AuthorizerKey,
    /// The builder's verifying key.
    pub builder_vk: VerifyingKey,
}

/// Everything engine-mux needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The local execution client: over HTTP, or in process.
    pub l2: LocalElConfig,
    /// The builders, in priority order (the first is --builder-url's unless priorities say
    /// otherwise).
    pub builders: Vec<BuilderConfig>,
    /// How builders' blocks are ranked against each other.
    pub builder_policy: BuilderPolicy,
    /// How long getPayload waits for the other builders once one builder's block is in.
    pub builder_grace: Duration,
    /// Secret op-node's tokens are checked against; `None` disables inbound auth.
    pub inbound_secret: Option<JwtSecret>,
    /// Whether every method needs the JWT (`false`: only `engine_*` does).
    pub require_auth_all: bool,
    /// Engine API listen address.
    pub rpc_addr: SocketAddr,
    /// Debug server listen address.
    pub debug_addr: SocketAddr,
    /// Metrics listen address, when metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    /// Largest request body.
    pub max_request_body: usize,
    /// Mode at startup.
    pub execution_mode: ExecutionMode,
    /// Block selection policy.
    pub selection: SelectionPolicy,
    /// Overall getPayload budget.
    pub get_payload_deadline: Duration,
    /// Builder blocks with a zero state root are rebuilt by the local EL.
    pub external_state_root: bool,
    /// How long before each slot's end the builders' blocks are fetched and the best validated;
    /// `None`: not before op-node asks.
    pub prevalidate_lead: Option<Duration>,
    /// Skip an unhealthy builder.
    pub ignore_unhealthy_builders: bool,
    /// Payload id map capacity.
    pub payload_id_capacity: usize,
    /// Builder queue depth.
    pub builder_queue_depth: usize,
    /// Recent payloads kept for catch-up; `None` turns catch-up off.
    pub catch_up_depth: Option<usize>,
    /// How long one catch-up run may replay.
    pub catch_up_budget: Duration,
    /// Health probing.
    pub health: HealthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Flashblocks, when enabled.
    pub flashblocks: Option<FlashblocksConfig>,
    /// Flashblocks P2P authorization, when enabled.
    pub flashblocks_p2p: Option<FlashblocksP2pConfig>,
    /// Failover carry-over: peers followed for their preconfirmations; `None`: no peers.
    pub failover: Option<crate::failover::FailoverConfig>,
    /// The high-availability set's shared secret: signs the peer stream served on the
    /// flashblocks port and authenticates the peers' streams.
    pub peer_key: Option<crate::failover::signed::PeerKey>,
    /// Roots every `https://` and `wss://` upstream's certificate must chain to (the local EL,
    /// the builders and their flashblocks streams, the peers): what `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR` name when the configuration is built from the command line, else the
    /// system's.
    pub tls_roots: engine_api::tls::TrustedRoots,
}
