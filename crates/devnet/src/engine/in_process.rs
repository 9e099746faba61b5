//! The engine as engine-mux's local EL in the same process: engine-mux's calls go straight to the
//! engine's auth RPC methods (engine_* and eth_*, the methods its JWT port serves) with no
//! socket, no HTTP and no JWT, as a node that links engine-mux answers them from its own engine.

use std::{fmt, sync::Arc, time::Duration};

use engine_api::UpstreamError;
use engine_mux::local_engine::{LOCAL_LABEL, LocalEngine, LocalFuture};
use jsonrpsee::{MethodsError, RpcModule, core::traits::ToRpcParams};
use serde_json::value::RawValue;

use crate::engine::{
    Engine,
    rpc::{ServerError, engine, eth},
};

/// An [`Engine`] answering engine-mux's local-EL calls in process.
pub struct InProcessEngine {
    module: RpcModule<Arc<Engine>>,
    timeout: Duration,
}

impl fmt::Debug for InProcessEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessEngine")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl InProcessEngine {
    /// `engine`'s auth RPC methods, each call bounded by `timeout` (engine-mux's `--l2-timeout`).
    pub fn new(local: Arc<Engine>, timeout: Duration) -> Result<Self, ServerError> {
        let mut module = RpcModule::new(local);
        engine::register(&mut module, None)?;
        eth::register(&mut module)?;
        Ok(Self { module, timeout })
    }
}

/// Params passed on exactly as engine-mux got them.
struct Raw<'a>(&'a RawValue);

impl ToRpcParams for Raw<'_> {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(Some(self.0.to_owned()))
    }
}

impl LocalEngine for InProcessEngine {
    fn call<'a>(
        &'a self,
        method: &'a str,
        params: &'a RawValue,
        timeout: Duration,
    ) -> LocalFuture<'a, Box<RawValue>> {
        Box::pin(async move {
            let call = self.module.call::<_, Box<RawValue>>(method, Raw(params));
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(MethodsError::JsonRpc(error))) => Err(UpstreamError::Rpc {
                    upstream: LOCAL_LABEL,
                    error,
                }),
                Ok(Err(e)) => Err(UpstreamError::Malformed {
                    upstream: LOCAL_LABEL,
                    detail: e.to_string(),
                }),
                Err(_) => Err(UpstreamError::Timeout {
                    upstream: LOCAL_LABEL,
                    after: timeout,
                }),
            }
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}
