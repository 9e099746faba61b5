//! The debug server (rollup-boost compatible): `debug_setExecutionMode` and
//! `debug_getExecutionMode`.

use std::{net::SocketAddr, sync::Arc};

use jsonrpsee::{
    RpcModule,
    server::{Server, ServerHandle},
    types::ErrorObjectOwned,
};
use serde::{Deserialize, Serialize};

use crate::{execution_mode::ExecutionMode, mux::Mux};

/// Params of `debug_setExecutionMode` and the answer of both methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionModeBody {
    /// The mode.
    pub execution_mode: ExecutionMode,
}

/// Starts the debug server on `addr`.
pub async fn start(
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
