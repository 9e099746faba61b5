//! What Engine API calls take and answer, whatever engine answers them: the method version, the
//! errors (the Engine API listener maps them to spec codes), `getPayload` envelopes and
//! the execution data op-node forwards from them.

use alloy_consensus::Block;
use alloy_primitives::{B256, Bytes, U256};
use alloy_rpc_types_engine::{BlobsBundleV1, ExecutionPayloadV3};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::{
    OpExecutionData, OpExecutionPayloadEnvelopeV3, OpExecutionPayloadEnvelopeV4,
    OpExecutionPayloadV4,
};

use crate::chain::genesis::ChainSpec;

/// Engine API version of a call, which decides the payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineVersion {
    /// Ecotone..Holocene (`*V3`).
    V3,
    /// Isthmus and later (`*V4`).
    V4,
}

/// Errors an Engine API call answers with (mapped to spec codes in `rpc::engine`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// `getPayload` for an id the engine does not have.
    #[error("Unknown payload")]
    UnknownPayload,
    /// Forkchoice state refers to an inconsistent chain.
    #[error("Invalid forkchoice state: {0}")]
    InvalidForkchoiceState(String),
    /// Attributes cannot be built on.
    #[error("Invalid payload attributes: {0}")]
    InvalidPayloadAttributes(String),
    /// Method version does not match the fork at the payload's timestamp.
    #[error("Unsupported fork: {0}")]
    UnsupportedFork(String),
    /// Malformed parameters.
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    /// The builder is `down` (a call that raced the listener closing).
    #[error("builder is down")]
    Down,
}

/// A `getPayload` answer in the version asked for.
#[derive(Debug, Clone)]
pub enum PayloadEnvelope {
    /// `engine_getPayloadV3`.
    V3(OpExecutionPayloadEnvelopeV3),
    /// `engine_getPayloadV4`.
    V4(OpExecutionPayloadEnvelopeV4),
}

/// Refuses a V3 method after Isthmus and a V4 method before it.
pub(super) fn check_fork(
    spec: &ChainSpec,
    version: EngineVersion,
    timestamp: u64,
) -> Result<(), EngineError> {
    let isthmus = spec.is_isthmus(timestamp);
    match (version, isthmus) {
        (EngineVersion::V3, true) => Err(EngineError::UnsupportedFork(format!(
            "V3 method for timestamp {timestamp} after Isthmus; use V4"
        ))),
        (EngineVersion::V4, false) => Err(EngineError::UnsupportedFork(format!(
            "V4 method for timestamp {timestamp} before Isthmus; use V3"
        ))),
        _ => Ok(()),
    }
}

/// The `getPayload` envelope of `block` (sealed as `hash`) worth `value` in `version`.
pub(super) fn envelope(
    version: EngineVersion,
    hash: B256,
    block: &Block<OpTxEnvelope>,
    value: U256,
) -> PayloadEnvelope {
    let v3 = ExecutionPayloadV3::from_block_unchecked(hash, block);
    let parent_beacon_block_root = block.header.parent_beacon_block_root.unwrap_or_default();
    match version {
        EngineVersion::V3 => PayloadEnvelope::V3(OpExecutionPayloadEnvelopeV3 {
            execution_payload: v3,
            block_value: value,
            blobs_bundle: BlobsBundleV1::default(),
            should_override_builder: false,
            parent_beacon_block_root,
        }),
        EngineVersion::V4 => PayloadEnvelope::V4(OpExecutionPayloadEnvelopeV4 {
            execution_payload: OpExecutionPayloadV4::from_v3_with_withdrawals_root(
                v3,
                block.header.withdrawals_root.unwrap_or_default(),
            ),
            block_value: value,
            blobs_bundle: BlobsBundleV1::default(),
            should_override_builder: false,
            parent_beacon_block_root,
            execution_requests: Vec::<Bytes>::new(),
        }),
    }
}

/// The execution data `newPayload` receives for a `getPayload` answer (what op-node forwards).
pub fn execution_data_of(envelope: &PayloadEnvelope) -> OpExecutionData {
    match envelope {
        PayloadEnvelope::V3(e) => OpExecutionData::v3(
            e.execution_payload.clone(),
            Vec::new(),
            e.parent_beacon_block_root,
        ),
        PayloadEnvelope::V4(e) => OpExecutionData::v4(
            e.execution_payload.clone(),
            Vec::new(),
            e.parent_beacon_block_root,
            Default::default(),
        ),
    }
}
