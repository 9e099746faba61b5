//! Why a driver slot failed: what both the loop (`node.rs`) and the engine it calls
//! (`engine.rs`) report.

use std::time::Duration;

use alloy_primitives::B256;
use alloy_rpc_types_engine::PayloadStatusEnum;
use engine_api::UpstreamError;

/// Why a slot failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An engine call failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An in-process call to engine-mux failed.
    #[error(transparent)]
    Embedded(#[from] engine_mux::EmbedError),
    /// An in-process call to engine-mux did not answer within the call deadline.
    #[error("{method}: no answer within {timeout:?}")]
    Timeout {
        /// The method called.
        method: &'static str,
        /// The deadline.
        timeout: Duration,
    },
    /// The engine answered something other than VALID.
    #[error("{step}: status {status:?}")]
    NotValid {
        /// Which call.
        step: &'static str,
        /// The status.
        status: PayloadStatusEnum,
    },
    /// FCU with attributes returned no payload id.
    #[error("forkchoiceUpdated returned no payload id")]
    NoPayloadId,
    /// A response did not have the expected shape.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// After the final FCU the engine reports a different head.
    #[error("head after FCU is {actual}, expected {expected}")]
    HeadMismatch {
        /// What we proposed.
        expected: B256,
        /// What the engine reports.
        actual: B256,
    },
}
