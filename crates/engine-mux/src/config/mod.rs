//! The validated, typed configuration built once from [`Args`]; components take their slice.

use std::time::Duration;

use engine_api::flashblocks_p2p::{AuthorizerKey, parse_verifying_key};

pub mod args;
mod builder;
pub mod builders;
mod error;
mod flags;
mod local;
mod parse;
mod types;

pub(crate) use self::parse::{load_secret, millis, parse_url, parse_ws_url};
use self::{
    args::{Args, BuilderPolicyArg, FlashblocksArgs, SelectionPolicyArg},
    parse::resolve,
};
pub use self::{
    builder::ConfigBuilder,
    builders::BuilderConfig,
    error::ConfigError,
    local::{DEFAULT_L2_TIMEOUT, LocalElConfig},
    types::{Config, FlashblocksConfig, FlashblocksP2pConfig, HealthConfig, LogConfig},
};
use crate::{
    flashblocks::inbound::InboundConfig,
    select::{BuilderPolicy, SelectionPolicy},
};

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
