//! engine-mux in process: the Engine API as typed async methods on a handle, for a node that
//! links engine-mux instead of running it beside op-node. Each call goes through the same
//! router and multiplexer as a request on the RPC port (same routing, checks, fallbacks,
//! deadlines and metrics); only the HTTP server and its JWT check are left out, since the caller
//! is the process itself. The handle also carries what an operator reaches over HTTP: health
//! (`/healthz`), the debug API's controls, the metrics.

use std::sync::Arc;

use alloy_primitives::{B256, Bytes as EthBytes};
use alloy_rpc_types_engine::{
    ExecutionPayloadV3, ForkchoiceState, ForkchoiceUpdated, PayloadStatus,
};
use bytes::Bytes;
use engine_api::{PayloadId, jsonrpc};
use http::HeaderMap;
use op_alloy_rpc_types_engine::{
    OpExecutionPayloadEnvelopeV3, OpExecutionPayloadEnvelopeV4, OpExecutionPayloadV4,
    OpPayloadAttributes,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    execution_mode::ExecutionMode,
    health::{HealthStatus, Upstreams, report::HealthReport},
    http::debug_api::{BuilderStatus, status_of},
    mux::Mux,
};

/// Why a typed call has no result.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The call was answered with a JSON-RPC error (the same one op-node would get).
    #[error("{method}: JSON-RPC error {code}: {message}")]
    Rpc {
        /// The method called.
        method: &'static str,
        /// The error code.
        code: i32,
        /// The error message.
        message: String,
    },
    /// No configured builder has this name.
    #[error("no builder named {name:?}")]
    NoSuchBuilder {
        /// The name asked for.
        name: String,
    },
    /// The answer did not have the shape the method's result has.
    #[error("{method}: unexpected answer: {reason}")]
    Answer {
        /// The method called.
        method: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The Engine API of one running engine-mux, in process, with its health and operator
/// controls. Cheap to clone; every clone drives the same instance.
///
/// The handle does not own the instance: [`crate::RunningMux::shutdown`] stops it (stops
/// accepting on its ports, lets in-flight calls finish for up to 10 s, stops its tasks), and
/// the embedder keeps the `RunningMux` until it no longer calls through any handle; a call
/// after shutdown reaches no builder.
///
/// Metrics: each instance records into its own Prometheus registry, not through the `metrics`
/// crate's global recorder, so two instances in one process keep separate books and a recorder
/// the embedder installs sees none of engine-mux's series. Read them with
/// [`Self::metrics_text`] (Prometheus text, what the metrics port serves).
#[derive(Clone, Debug)]
pub struct EngineHandle {
    mux: Arc<Mux>,
    upstreams: Upstreams,
}

impl EngineHandle {
    /// A handle on `mux`, whose health `upstreams` gathers (see [`crate::RunningMux::engine`]).
    pub(crate) fn new(mux: Arc<Mux>, upstreams: Upstreams) -> Self {
        Self { mux, upstreams }
    }

    /// Health as `/healthz` answers it: 200 (local EL and builders fine), 206 (local EL fine,
    /// builders failing or out of sync), 503 (local EL failing).
    pub fn health(&self) -> HealthStatus {
        self.upstreams.status()
    }

    /// Health with every component's state and the evidence behind it, as `/healthz` answers
    /// `Accept: application/json`.
    pub fn health_report(&self) -> HealthReport {
        let (status, pending) = self.upstreams.status_and_pending();
        crate::health::report::report(&self.upstreams, status, pending)
    }

    /// This instance's metrics as Prometheus text.
    pub fn metrics_text(&self) -> String {
        self.mux.builders.report_gauges();
        self.mux.metrics.render()
    }

    /// The execution mode (`debug_getExecutionMode`).
    pub fn execution_mode(&self) -> ExecutionMode {
        self.mux.mode.get()
    }

    /// Switches the execution mode (`debug_setExecutionMode`); takes effect on the next call.
    pub fn set_execution_mode(&self, mode: ExecutionMode) {
        let before = self.mux.mode.get();
        self.mux.mode.set(mode);
        self.mux.metrics.execution_mode(mode);
        tracing::info!(from = %before, to = %mode, "execution mode changed in process");
    }

    /// Every builder as `debug_getBuilders` shows it, in priority order.
    pub fn builders(&self) -> Vec<BuilderStatus> {
        self.mux.builders.iter().map(|b| status_of(b)).collect()
    }

    /// Enables or disables the builder named `name` (`debug_setBuilderEnabled`): a disabled
    /// builder gets no engine call until enabled again. Its state after the change.
    pub fn set_builder_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<BuilderStatus, EmbedError> {
        let b = self
            .mux
            .builders
            .get(name)
            .ok_or_else(|| EmbedError::NoSuchBuilder {
                name: name.to_string(),
            })?;
        if b.set_enabled(enabled) != enabled {
            tracing::info!(builder = b.name(), enabled, "builder switched in process");
        }
        Ok(status_of(b))
    }

    /// `engine_forkchoiceUpdatedV3`.
    pub async fn fork_choice_updated_v3(
        &self,
        state: ForkchoiceState,
        attributes: Option<OpPayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EmbedError> {
        self.typed("engine_forkchoiceUpdatedV3", (state, attributes))
            .await
    }

    /// `engine_getPayloadV3` (Ecotone to Holocene).
    pub async fn get_payload_v3(
        &self,
        id: PayloadId,
    ) -> Result<OpExecutionPayloadEnvelopeV3, EmbedError> {
        self.typed("engine_getPayloadV3", (id,)).await
    }

    /// `engine_getPayloadV4` (Isthmus on).
    pub async fn get_payload_v4(
        &self,
        id: PayloadId,
    ) -> Result<OpExecutionPayloadEnvelopeV4, EmbedError> {
        self.typed("engine_getPayloadV4", (id,)).await
    }

    /// `engine_getPayloadV5` (Osaka on). op-alloy has no V5 envelope type: an OP chain's V5
    /// answer has the Isthmus (V4) envelope's shape, which is how engine-mux reads it too.
    pub async fn get_payload_v5(
        &self,
        id: PayloadId,
    ) -> Result<OpExecutionPayloadEnvelopeV4, EmbedError> {
        self.typed("engine_getPayloadV5", (id,)).await
    }

    /// `engine_newPayloadV3`.
    pub async fn new_payload_v3(
        &self,
        payload: ExecutionPayloadV3,
        versioned_hashes: Vec<B256>,
        parent_beacon_block_root: B256,
    ) -> Result<PayloadStatus, EmbedError> {
        self.typed(
            "engine_newPayloadV3",
            (payload, versioned_hashes, parent_beacon_block_root),
        )
        .await
    }

    /// `engine_newPayloadV4` (Isthmus on; `requests` empty on OP chains).
    pub async fn new_payload_v4(
        &self,
        payload: OpExecutionPayloadV4,
        versioned_hashes: Vec<B256>,
        parent_beacon_block_root: B256,
        requests: Vec<EthBytes>,
    ) -> Result<PayloadStatus, EmbedError> {
        self.typed(
            "engine_newPayloadV4",
            (
                payload,
                versioned_hashes,
                parent_beacon_block_root,
                requests,
            ),
        )
        .await
    }

    /// Any other method, routed as on the RPC port (proxied to the local EL, copied to the
    /// builders where engine-mux copies it): its `result`.
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, EmbedError> {
        self.typed(method, params).await
    }

    async fn typed<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: P,
    ) -> Result<R, EmbedError> {
        let answer = |reason: String| EmbedError::Answer { method, reason };
        let body = serde_json::to_vec(&serde_json::json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": params,
        }))
        .map_err(|e| answer(format!("params do not serialize: {e}")))?;
        // Calls the router forwards reach an HTTP EL with these headers, and op-geth and reth
        // refuse a JSON-RPC body without this content type (HTTP 415).
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let res = crate::http::router::handle(&self.mux, &headers, Bytes::from(body)).await;
        let envelope: jsonrpc::ResponseEnvelope = serde_json::from_slice(res.body())
            .map_err(|e| answer(format!("HTTP {}: {e}", res.status())))?;
        if let Some(e) = envelope.error {
            return Err(EmbedError::Rpc {
                method,
                code: e.code(),
                message: e.message().to_string(),
            });
        }
        let result = envelope
            .result
            .ok_or_else(|| answer("neither result nor error".into()))?;
        serde_json::from_str(result.get()).map_err(|e| answer(e.to_string()))
    }
}
