//! The debug server: `debug_setExecutionMode` and `debug_getExecutionMode` (rollup-boost
//! compatible), and `debug_getBuilders` / `debug_setBuilderEnabled` for several builders.

use std::{net::SocketAddr, sync::Arc};

use jsonrpsee::{
    RpcModule,
    server::{Server, ServerHandle},
    types::{ErrorObjectOwned, error::INVALID_PARAMS_CODE},
};
use serde::{Deserialize, Serialize};

use crate::{
    builder::Builder,
    execution_mode::ExecutionMode,
    health::evidence::{BuilderState, unix_ms},
    mux::Mux,
};

/// Params of `debug_setExecutionMode` and the answer of both methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionModeBody {
    /// The mode.
    pub execution_mode: ExecutionMode,
}

/// One builder as `debug_getBuilders` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderStatus {
    /// Its configured name.
    pub name: String,
    /// Its engine URL.
    pub url: String,
    /// Whether its health evidence is good.
    pub healthy: bool,
    /// Whether it is called (`debug_setBuilderEnabled`).
    pub enabled: bool,
    /// Its part in the last block: `proposed`, `not_chosen`, `dry_run`, `policy`, or the
    /// reason its block failed (`timeout`, `invalid`, `attributes_mismatch`, ...); `none`
    /// before its first block.
    pub last_outcome: String,
    /// What its evidence makes of it: `healthy`, `failing` (asked to build, but its last
    /// block failed), `skipped` (unreachable or out of sync: not asked until it is back).
    pub state: BuilderState,
    /// When it entered that state (Unix milliseconds).
    pub since_unix_ms: u64,
    /// Its latest block number as last seen (probe or catch-up); `null` before that.
    pub head: Option<u64>,
    /// How many blocks it was behind the local EL then; `null` before that.
    pub behind: Option<u64>,
    /// Its last proposed block next to the local block for the same attributes (omitted
    /// transactions, gas and transactions over local); `null` before its first.
    pub last_comparison: Option<crate::comparison::Comparison>,
}

pub(crate) fn status_of(b: &Builder) -> BuilderStatus {
    let (state, since) = b.health().state();
    let heads = b.health().heads();
    BuilderStatus {
        name: b.name().to_string(),
        url: b.upstream().url().to_string(),
        healthy: !b.health().failing(),
        enabled: b.enabled(),
        last_outcome: b.last_outcome().to_string(),
        state,
        since_unix_ms: unix_ms(since),
        head: heads.map(|h| h.builder),
        behind: heads.map(|h| h.local.saturating_sub(h.builder)),
        last_comparison: b.recent_comparison().last(),
    }
}

/// Starts the debug server on `addr`.
pub(crate) async fn start(
    addr: SocketAddr,
    state: Arc<Mux>,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let server = Server::builder().build(addr).await?;
    let local = server.local_addr()?;
    let mut module = RpcModule::new(state);
    module
        .register_method("debug_setExecutionMode", |params, state, _| {
            let (body,): (ExecutionModeBody,) = params.parse()?;
            let before = state.mode.get();
            state.mode.set(body.execution_mode);
            state.metrics.execution_mode(body.execution_mode);
            tracing::info!(from = %before, to = %body.execution_mode, "execution mode changed via debug API");
            Ok::<_, ErrorObjectOwned>(body)
        })
        .expect("method registered once");
    module
        .register_method("debug_getExecutionMode", |_, state, _| {
            Ok::<_, ErrorObjectOwned>(ExecutionModeBody {
                execution_mode: state.mode.get(),
            })
        })
        .expect("method registered once");
    module
        .register_method("debug_getBuilders", |_, state, _| {
            Ok::<_, ErrorObjectOwned>(
                state
                    .builders
                    .iter()
                    .map(|b| status_of(b))
                    .collect::<Vec<_>>(),
            )
        })
        .expect("method registered once");
    module
        .register_method("debug_setBuilderEnabled", |params, state, _| {
            let (name, enabled): (String, bool) = params.parse()?;
            let Some(b) = state.builders.get(&name) else {
                return Err(ErrorObjectOwned::owned(
                    INVALID_PARAMS_CODE,
                    format!("no builder named {name:?}"),
                    None::<()>,
                ));
            };
            let before = b.set_enabled(enabled);
            if before != enabled {
                tracing::info!(
                    builder = b.name(),
                    enabled,
                    "builder switched via debug API"
                );
            }
            Ok(status_of(b))
        })
        .expect("method registered once");
    Ok((local, server.start(module)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_matches_rollup_boost() {
        let body = ExecutionModeBody {
            execution_mode: ExecutionMode::DryRun,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"execution_mode":"dry_run"}"#
        );
        let parsed: ExecutionModeBody =
            serde_json::from_str(r#"{"execution_mode":"enabled"}"#).unwrap();
        assert_eq!(parsed.execution_mode, ExecutionMode::Enabled);
    }
}
