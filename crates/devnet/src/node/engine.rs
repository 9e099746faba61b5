//! The engine the driver calls: engine-mux (or an engine) over HTTP JSON-RPC with a JWT, the
//! way op-node calls it from its own process, or engine-mux's typed in-process handle
//! ([`engine_mux::EngineHandle`]), the way a node that links engine-mux calls it. Both
//! make the same calls in the same order; only the transport differs.

use std::{future::Future, time::Duration};

use alloy_primitives::{B256, Bytes};
use alloy_rpc_types_engine::{ForkchoiceState, ForkchoiceUpdated, JwtSecret, PayloadStatus};
use engine_api::{PayloadId, Upstream, UpstreamConfig};
use engine_mux::EngineHandle;
use op_alloy_rpc_types_engine::{
    OpExecutionPayloadEnvelopeV3, OpExecutionPayloadEnvelopeV4, OpPayloadAttributes,
};
use serde_json::{Value, json};

use super::error::DriverError;

/// Where the driver's engine calls go.
#[derive(Debug, Clone)]
pub enum DriverEngine {
    /// JSON-RPC over HTTP with a JWT (engine-mux's RPC port, or an engine's auth port).
    Http(Box<Upstream>),
    /// engine-mux in this process, through its typed handle (no HTTP, no JWT).
    Embedded(EngineHandle),
}

/// A payload getPayload returned, in the version the fork calls for.
#[derive(Debug, Clone)]
pub(crate) enum BuiltPayload {
    /// `engine_getPayloadV3` (Ecotone to Holocene).
    V3(OpExecutionPayloadEnvelopeV3),
    /// `engine_getPayloadV4` (Isthmus on).
    V4(OpExecutionPayloadEnvelopeV4),
}

impl BuiltPayload {
    /// Block hash, transaction count and gas used.
    pub(crate) fn summary(&self) -> (B256, usize, u64) {
        let inner = match self {
            Self::V3(env) => &env.execution_payload.payload_inner.payload_inner,
            Self::V4(env) => {
                &env.execution_payload
                    .payload_inner
                    .payload_inner
                    .payload_inner
            }
        };
        (inner.block_hash, inner.transactions.len(), inner.gas_used)
    }
}

impl DriverEngine {
    /// JSON-RPC over HTTP to `url` with `jwt`, each call bounded by `timeout`.
    pub fn http(url: http::Uri, jwt: JwtSecret, timeout: Duration) -> Self {
        Self::Http(Box::new(Upstream::new(UpstreamConfig {
            name: "driver",
            url,
            secret: Some(jwt),
            timeout,
            max_response_bytes: engine_api::upstream::DEFAULT_MAX_RESPONSE_BYTES,
        })))
    }

    /// The latest block (`eth_getBlockByNumber("latest", false)`), as JSON.
    pub(crate) async fn latest_block(&self, timeout: Duration) -> Result<Value, DriverError> {
        let params = json!(["latest", false]);
        match self {
            Self::Http(c) => Ok(c.call("eth_getBlockByNumber", &params, timeout).await?),
            Self::Embedded(h) => {
                bounded("eth_getBlockByNumber", timeout, async {
                    h.call("eth_getBlockByNumber", params).await
                })
                .await
            }
        }
    }

    /// `engine_forkchoiceUpdatedV3`.
    pub(crate) async fn fork_choice_updated(
        &self,
        state: ForkchoiceState,
        attributes: Option<OpPayloadAttributes>,
        timeout: Duration,
    ) -> Result<ForkchoiceUpdated, DriverError> {
        let method = "engine_forkchoiceUpdatedV3";
        match self {
            Self::Http(c) => Ok(c.call(method, &json!([state, attributes]), timeout).await?),
            Self::Embedded(h) => {
                bounded(method, timeout, h.fork_choice_updated_v3(state, attributes)).await
            }
        }
    }

    /// `engine_getPayloadV4` when `v4`, else `engine_getPayloadV3`.
    pub(crate) async fn get_payload(
        &self,
        id: PayloadId,
        v4: bool,
        timeout: Duration,
    ) -> Result<BuiltPayload, DriverError> {
        let params = json!([id]);
        Ok(match (self, v4) {
            (Self::Http(c), true) => {
                BuiltPayload::V4(c.call("engine_getPayloadV4", &params, timeout).await?)
            }
            (Self::Http(c), false) => {
                BuiltPayload::V3(c.call("engine_getPayloadV3", &params, timeout).await?)
            }
            (Self::Embedded(h), true) => BuiltPayload::V4(
                bounded("engine_getPayloadV4", timeout, h.get_payload_v4(id)).await?,
            ),
            (Self::Embedded(h), false) => BuiltPayload::V3(
                bounded("engine_getPayloadV3", timeout, h.get_payload_v3(id)).await?,
            ),
        })
    }

    /// `engine_newPayloadV3`/`V4` for `payload` (no blob hashes and no requests: OP blocks have
    /// neither).
    pub(crate) async fn new_payload(
        &self,
        payload: BuiltPayload,
        timeout: Duration,
    ) -> Result<PayloadStatus, DriverError> {
        let no_hashes = Vec::<B256>::new();
        match (self, payload) {
            (Self::Http(c), BuiltPayload::V3(env)) => {
                let params = json!([
                    env.execution_payload,
                    no_hashes,
                    env.parent_beacon_block_root
                ]);
                Ok(c.call("engine_newPayloadV3", &params, timeout).await?)
            }
            (Self::Http(c), BuiltPayload::V4(env)) => {
                let params = json!([
                    env.execution_payload,
                    no_hashes,
                    env.parent_beacon_block_root,
                    Vec::<Bytes>::new()
                ]);
                Ok(c.call("engine_newPayloadV4", &params, timeout).await?)
            }
            (Self::Embedded(h), BuiltPayload::V3(env)) => {
                let call = h.new_payload_v3(
                    env.execution_payload,
                    no_hashes,
                    env.parent_beacon_block_root,
                );
                bounded("engine_newPayloadV3", timeout, call).await
            }
            (Self::Embedded(h), BuiltPayload::V4(env)) => {
                let call = h.new_payload_v4(
                    env.execution_payload,
                    no_hashes,
                    env.parent_beacon_block_root,
                    Vec::new(),
                );
                bounded("engine_newPayloadV4", timeout, call).await
            }
        }
    }
}

/// An in-process call under the same per-call deadline the HTTP client applies.
async fn bounded<T>(
    method: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<T, engine_mux::EmbedError>>,
) -> Result<T, DriverError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(out) => Ok(out?),
        Err(_) => Err(DriverError::Timeout { method, timeout }),
    }
}
