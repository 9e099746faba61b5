//! engine-mux in process: the Engine API as typed async methods on a handle, for a node that
//! links engine-mux instead of running it beside op-node. Each call goes through the same
//! router and multiplexer as a request on the RPC port (same routing, checks, fallbacks,
//! deadlines and metrics); only the HTTP server and its JWT check are left out, since the caller
//! is the process itself.

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

use crate::{execution_mode::ExecutionMode, mux::Mux};

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
    /// The answer did not have the shape the method's result has.
    #[error("{method}: unexpected answer: {reason}")]
    Answer {
        /// The method called.
        method: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The Engine API of one running engine-mux, in process.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    mux: Arc<Mux>,
}

impl EngineHandle {
    /// A handle on `mux` (see [`crate::RunningMux::engine`]).
    pub fn new(mux: Arc<Mux>) -> Self {
        Self { mux }
    }

    /// The execution mode (`debug_getExecutionMode`).
    pub fn execution_mode(&self) -> ExecutionMode {
        self.mux.mode.get()
    }

    /// Switches the execution mode (`debug_setExecutionMode`); takes effect on the next call.
    pub fn set_execution_mode(&self, mode: ExecutionMode) {
        self.mux.mode.set(mode);
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
        let res =
            crate::http::router::handle(&self.mux, &HeaderMap::new(), Bytes::from(body)).await;
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
