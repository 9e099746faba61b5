//! The validated, typed configuration built once from [`Args`]; components take their slice.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ed25519_dalek::VerifyingKey;
use engine_api::{
    JwtSecret,
    flashblocks_p2p::{AuthorizerKey, parse_verifying_key},
};

pub mod args;
mod builder;
pub mod builders;
mod error;
mod flags;
mod local;
mod parse;

pub(crate) use self::parse::{load_secret, millis, parse_url, parse_ws_url};
use self::{
    args::{Args, BuilderPolicyArg, FlashblocksArgs, LogFormat, SelectionPolicyArg},
    parse::resolve,
};
pub use self::{
    builder::ConfigBuilder,
    builders::BuilderConfig,
    error::ConfigError,
    local::{DEFAULT_L2_TIMEOUT, LocalElConfig},
};
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

fn flashblocks_config(a: &FlashblocksArgs) -> Result<Option<FlashblocksConfig>, ConfigError> {
    if !a.enabled {
        return Ok(None);
    }
    let url = parse_ws_url("flashblocks-builder-url", &a.flashblocks_builder_url)?;
    Ok(Some(FlashblocksConfig {
        inbound: InboundConfig {
            url,
            initial_reconnect: millis(
                "flashblock-builder-ws-initial-reconnect-ms",
                a.flashblock_builder_ws_initial_reconnect_ms,
            )?,
            max_reconnect: millis(
                "flashblock-builder-ws-max-reconnect-ms",
                a.flashblock_builder_ws_max_reconnect_ms,
            )?,
            connect_timeout: millis(
                "flashblock-builder-ws-connect-timeout-ms",
                a.flashblock_builder_ws_connect_timeout_ms,
            )?,
            ping_interval: millis(
                "flashblock-builder-ws-ping-interval-ms",
                a.flashblock_builder_ws_ping_interval_ms,
            )?,
            pong_timeout: millis(
                "flashblock-builder-ws-pong-timeout-ms",
                a.flashblock_builder_ws_pong_timeout_ms,
            )?,
        },
        outbound_addr: resolve("flashblocks-host", &a.flashblocks_host, a.flashblocks_port)?,
    }))
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

fn flashblocks_p2p_config(a: &Args) -> Result<Option<FlashblocksP2pConfig>, ConfigError> {
    let p = &a.flashblocks_p2p;
    if !p.flashblocks_p2p {
        for (set, flag) in [
            (
                p.flashblocks_authorizer_sk.is_some(),
                "flashblocks-authorizer-sk",
            ),
            (p.flashblocks_builder_vk.is_some(), "flashblocks-builder-vk"),
        ] {
            if set {
                return Err(ConfigError::Requires {
                    flag,
                    reason: "only used with --flashblocks-p2p; set it or unset this",
                });
            }
        }
        return Ok(None);
    }
    if a.flashblocks.enabled {
        return Err(ConfigError::Conflict {
            flag: "flashblocks-p2p",
            other: "flashblocks",
            reason: "the builder publishes flashblocks itself over P2P; engine-mux does not receive them over WebSocket",
        });
    }
    let sk = p
        .flashblocks_authorizer_sk
        .as_deref()
        .ok_or(ConfigError::Requires {
            flag: "flashblocks-authorizer-sk",
            reason: "required with --flashblocks-p2p (32-byte ed25519 signing key, hex)",
        })?;
    let vk = p
        .flashblocks_builder_vk
        .as_deref()
        .ok_or(ConfigError::Requires {
            flag: "flashblocks-builder-vk",
            reason: "required with --flashblocks-p2p (32-byte ed25519 verifying key, hex)",
        })?;
    let authorizer = AuthorizerKey::from_hex(sk).map_err(|e| ConfigError::BadKey {
        flag: "flashblocks-authorizer-sk",
        reason: e.to_string(),
    })?;
    let builder_vk = parse_verifying_key(vk).map_err(|e| ConfigError::BadKey {
        flag: "flashblocks-builder-vk",
        reason: e.to_string(),
    })?;
    Ok(Some(FlashblocksP2pConfig {
        authorizer,
        builder_vk,
    }))
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

/// The high-availability set's shared secret (`--flashblocks-peer-secret[-path]`), if given.
fn peer_key(
    a: &crate::failover::cli::FailoverArgs,
) -> Result<Option<crate::failover::signed::PeerKey>, ConfigError> {
    let secret = load_secret(
        a.flashblocks_peer_secret.as_deref(),
        a.flashblocks_peer_secret_path.as_deref(),
        "flashblocks-peer-secret",
        "flashblocks-peer-secret-path",
    )?;
    Ok(secret.as_ref().map(crate::failover::signed::PeerKey::new))
}

/// Failover carry-over: the peers' flashblocks URLs (`ws://` or `wss://` with a host), the
/// secret their frames must be signed with, and the stream timings; no peer URL turns the
/// feature off.
fn failover_config(
    a: &crate::failover::cli::FailoverArgs,
    key: Option<&crate::failover::signed::PeerKey>,
) -> Result<Option<crate::failover::FailoverConfig>, ConfigError> {
    if a.flashblocks_peer_urls.is_empty() {
        return Ok(None);
    }
    for url in &a.flashblocks_peer_urls {
        parse_ws_url("flashblocks-peer-url", url)?;
    }
    let Some(key) = key else {
        return Err(ConfigError::Requires {
            flag: "flashblocks-peer-url",
            reason: "needs --flashblocks-peer-secret or --flashblocks-peer-secret-path: what a peer preconfirmed is forced into this sequencer's blocks, so its stream is accepted only when signed with the secret the set shares",
        });
    };
    Ok(Some(crate::failover::FailoverConfig {
        peers: crate::failover::peers::PeerStreams {
            urls: a.flashblocks_peer_urls.clone(),
            initial_reconnect: millis(
                "flashblocks-peer-initial-reconnect-ms",
                a.flashblocks_peer_initial_reconnect_ms,
            )?,
            max_reconnect: millis(
                "flashblocks-peer-max-reconnect-ms",
                a.flashblocks_peer_max_reconnect_ms,
            )?,
            connect_timeout: Duration::from_secs(5),
            ping_interval: millis(
                "flashblocks-peer-ping-interval-ms",
                a.flashblocks_peer_ping_interval_ms,
            )?,
            key: key.clone(),
        },
        carry_budget: millis(
            "flashblocks-peer-carry-budget-ms",
            a.flashblocks_peer_carry_budget_ms,
        )?,
        nonce_lookup_timeout: millis(
            "flashblocks-peer-nonce-timeout-ms",
            a.flashblocks_peer_nonce_timeout_ms,
        )?,
    }))
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    /// Parses each flag (errors name it), then builds through [`Config::builder`], so the
    /// command line and an embedder get the same defaults and the same checks.
    fn try_from(a: Args) -> Result<Self, Self::Error> {
        let peer_key = peer_key(&a.failover)?;
        let l2_secret = load_secret(
            a.l2.l2_jwt_token.as_deref(),
            a.l2.l2_jwt_path.as_deref(),
            "l2-jwt-token",
            "l2-jwt-path",
        )?
        .ok_or(ConfigError::MissingJwt {
            what: "the local execution client",
            flag: "l2",
        })?;
        let l2 = LocalElConfig::http(
            parse_url("l2-url", &a.l2.l2_url)?,
            l2_secret,
            millis("l2-timeout", a.l2.l2_timeout)?,
        );
        let mut b = Config::builder(l2);
        for builder in builders::builders(&a)? {
            b = b.builder(builder);
        }
        let inbound = load_secret(
            a.auth.auth_jwt_token.as_deref(),
            a.auth.auth_jwt_path.as_deref(),
            "auth-jwt-token",
            "auth-jwt-path",
        )?;
        b = match (a.auth.no_inbound_auth, inbound) {
            (true, _) => b.no_inbound_auth(),
            (false, Some(secret)) => b.inbound_secret(secret),
            (false, None) => b,
        };
        if let Some(p2p) = flashblocks_p2p_config(&a)? {
            b = b.flashblocks_p2p(p2p);
        }
        let get_payload_deadline = millis("get-payload-deadline-ms", a.get_payload_deadline_ms)?;
        // With an external state root the rebuild is the validation, on the first ask only.
        let prevalidate_lead = if a.prevalidate_builder_payload && !a.external_state_root {
            Some(millis("prevalidate-lead-ms", a.prevalidate_lead_ms)?)
        } else {
            None
        };
        let mut health = HealthConfig::every(
            Duration::from_secs(a.health_check_interval),
            Duration::from_secs(a.max_unsafe_interval),
        );
        health.tolerance = crate::health::Tolerance {
            degrade_after: Duration::from_millis(a.health_degrade_after_ms),
            recover_after: Duration::from_millis(a.health_recover_after_ms),
        };
        b = b
            .builder_policy(match a.builders.builder_policy {
                BuilderPolicyArg::GasUsed => BuilderPolicy::GasUsed,
                BuilderPolicyArg::Priority => BuilderPolicy::Priority,
                BuilderPolicyArg::BlockValue => BuilderPolicy::BlockValue,
            })
            .builder_grace(Duration::from_millis(a.builders.builder_grace_ms))
            .require_auth_all(a.auth.require_auth_all)
            .rpc_addr(resolve("rpc-host", &a.rpc_host, a.rpc_port)?)
            .debug_addr(resolve("debug-host", &a.debug_host, a.debug_server_port)?)
            .max_request_body(a.max_request_body_bytes)
            .execution_mode(a.execution_mode)
            .selection(match a.block_selection_policy {
                Some(SelectionPolicyArg::GasUsed) => SelectionPolicy::GasUsed {
                    min_percent: a.selection_min_gas_percent,
                },
                None => SelectionPolicy::AlwaysBuilder,
            })
            .get_payload_deadline(get_payload_deadline)
            .external_state_root(a.external_state_root)
            .prevalidate(prevalidate_lead)
            .ignore_unhealthy_builders(a.ignore_unhealthy_builders)
            .payload_id_capacity(a.payload_id_cache_size)
            .builder_queue_depth(a.builder_queue_depth)
            .catch_up(
                (!a.no_builder_catch_up).then_some(a.catch_up_depth),
                millis("catch-up-budget-ms", a.catch_up_budget_ms)?,
            )
            .health(health)
            .tls_roots(engine_api::tls::TrustedRoots::from_env())
            .log(LogConfig {
                level: a.log_level,
                format: a.log_format,
                file: a.log_file,
                otlp: a.tracing.then_some(a.otlp_endpoint),
            });
        if a.metrics {
            b = b.metrics_addr(resolve("metrics-host", &a.metrics_host, a.metrics_port)?);
        }
        if let Some(fb) = flashblocks_config(&a.flashblocks)? {
            b = b.flashblocks(fb);
        }
        match (failover_config(&a.failover, peer_key.as_ref())?, peer_key) {
            (Some(failover), Some(key)) => b = b.failover(failover, key),
            (None, Some(key)) => b = b.peer_key(key),
            // failover_config refuses peers without the secret.
            (_, None) => {}
        }
        b.build()
    }
}

#[cfg(test)]
mod tests;
