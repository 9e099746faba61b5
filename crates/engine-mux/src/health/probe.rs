//! Background probe of both upstreams' latest block against --max-unsafe-interval: evidence
//! for health, and the trigger for builder catch-up when the builder is behind.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::U64;
use serde::Deserialize;
use tokio::sync::watch;

use super::{HealthStatus, ProbeOutcome, Upstreams};
use crate::config::HealthConfig;
use crate::health::evidence::{HeadSeen, Heads};

#[derive(Deserialize)]
struct LatestBlock {
    number: U64,
    timestamp: U64,
}

fn outcome_of(
    res: &Result<LatestBlock, engine_api::UpstreamError>,
    max_unsafe: Duration,
) -> ProbeOutcome {
    match res {
        Ok(b) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let age = Duration::from_secs(now.saturating_sub(b.timestamp.to::<u64>()));
            if age > max_unsafe {
                ProbeOutcome::Stale { age }
            } else {
                ProbeOutcome::Synced
            }
        }
        Err(e) => ProbeOutcome::Failed(e.to_string()),
    }
}

/// The last outcome logged per upstream, so a persisting condition is logged once, not per probe.
#[derive(Debug, Default)]
pub(crate) struct LastLogged {
    local: Option<&'static str>,
    builders: HashMap<&'static str, &'static str>,
    /// The head each builder was behind at when that was last logged: a builder stuck at one
    /// head (its catch-up given up, left to its own sync) is logged once, not every probe.
    behind: HashMap<&'static str, u64>,
}

fn log_transition(last: &mut Option<&'static str>, upstream: &'static str, outcome: &ProbeOutcome) {
    if *last == Some(outcome.as_str()) {
        return;
    }
    match outcome {
        ProbeOutcome::Synced if last.is_some() => tracing::info!(upstream, "probe: synced again"),
        ProbeOutcome::Synced => {}
        other => tracing::warn!(upstream, outcome = ?other, "probe: not healthy"),
    }
    *last = Some(outcome.as_str());
}

/// Which builders a probe looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every builder (the periodic probe).
    All,
    /// Only the builders skipped as unreachable or out of sync (the probe that lets them rejoin
    /// as soon as they are back).
    Skipped,
}

async fn probe(mux: &Upstreams, config: &HealthConfig, logged: &mut LastLogged, scope: Scope) {
    let params = ("latest", false);
    let builders: Vec<_> = mux
        .builders
        .iter()
        .filter(|b| scope == Scope::All || !b.health().usable())
        .collect();
    if builders.is_empty() && scope == Scope::Skipped {
        return;
    }
    let (local, answers) = tokio::join!(
        mux.local
            .call::<LatestBlock>("eth_getBlockByNumber", &params, mux.local.timeout()),
        futures::future::join_all(builders.iter().map(|b| b.call::<LatestBlock>(
            "eth_getBlockByNumber",
            &params,
            b.timeout()
        ))),
    );
    let local_outcome = outcome_of(&local, config.max_unsafe_interval);
    mux.metrics.probe("l2", local_outcome.as_str());
    log_transition(&mut logged.local, "l2", &local_outcome);
    mux.local.health().probe(&local_outcome);
    if let Ok(l) = &local {
        mux.local.health().saw_head(HeadSeen {
            number: l.number.to::<u64>(),
            timestamp: l.timestamp.to::<u64>(),
        });
    }
    for (b, answer) in builders.iter().zip(&answers) {
        let outcome = outcome_of(answer, config.max_unsafe_interval);
        b.metrics().probe("builder", outcome.as_str());
        let mut last = logged.builders.get(b.name()).copied();
        log_transition(&mut last, b.name(), &outcome);
        if let Some(l) = last {
            logged.builders.insert(b.name(), l);
        }
        b.health().probe(&outcome);
        let (Ok(l), Ok(head)) = (&local, answer) else {
            continue;
        };
        let (head, local_head) = (head.number.to::<u64>(), l.number.to::<u64>());
        b.health().saw_heads(Heads {
            builder: head,
            local: local_head,
        });
        if mux.mode.get().talks_to_builder() && head < local_head {
            if logged.behind.insert(b.name(), head) != Some(head) {
                tracing::info!(
                    builder = b.name(),
                    head,
                    local = local_head,
                    "builder is behind the local head; queueing catch-up"
                );
            }
            b.catch_up_soon();
        } else {
            logged.behind.remove(b.name());
        }
    }
}

/// Probes every `--health-check-interval`, sooner while something is unhealthy or a builder is
/// skipped; and, for a builder skipped for a block, probes it (alone) right away, so a builder
/// that comes back is caught up and asked to build again within a block or two instead of
/// waiting out the interval. One probe runs at a time, so a builder that hangs costs at most
/// one call in flight.
pub(crate) async fn run(
    state: Upstreams,
    config: HealthConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut logged = LastLogged::default();
    let mut scope = Scope::All;
    let mut next_full = tokio::time::Instant::now();
    loop {
        if scope == Scope::All {
            probe(&state, &config, &mut logged, Scope::All).await;
            state.metrics.health(state.status().code());
            state.metrics.execution_mode(state.mode.get());
            state.metrics.upkeep();
            let skipping = state.builders.iter().any(|b| !b.health().usable());
            // Paced on the evidence, not on what the tolerance shows: a failure the tolerance
            // is holding back is watched as closely as one already shown.
            let wait = if state.raw_status() == HealthStatus::Healthy && !skipping {
                config.check_interval
            } else {
                config.fast_interval
            };
            next_full = tokio::time::Instant::now() + wait;
        } else {
            probe(&state, &config, &mut logged, Scope::Skipped).await;
            state.metrics.health(state.status().code());
        }
        scope = Scope::All;
        tokio::select! {
            _ = tokio::time::sleep_until(next_full) => {}
            _ = state.local.health().turned_unhealthy() => {
                // Let the failing call's neighbours land before probing.
                tokio::time::sleep(config.fast_interval).await;
            }
            _ = futures::future::select_all(
                state.builders.iter().map(|b| Box::pin(b.health().turned_unhealthy()))
            ) => {
                tokio::time::sleep(config.fast_interval).await;
            }
            _ = futures::future::select_all(
                state.builders.iter().map(|b| Box::pin(b.health().was_skipped()))
            ) => scope = Scope::Skipped,
            _ = shutdown.changed() => return,
        }
    }
}
