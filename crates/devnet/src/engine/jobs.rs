//! The payloads the engine is building, from the FCU that starts one to the getPayload that
//! seals it.

use alloy_primitives::B256;
use op_alloy_rpc_types_engine::OpPayloadAttributes;

use crate::engine::build::BuiltBlock;

/// Payload jobs kept for `getPayload`; sized for bursts of hundreds of FCUs. Jobs keep their
/// blocks without post-states.
pub const MAX_PAYLOAD_JOBS: usize = 1024;

/// Blocks this engine built that keep their post-state, so its own block's newPayload skips
/// re-execution (older ones are re-executed). Each state is a copy of every account.
pub const MAX_BUILT_STATES: usize = 64;

/// One payload job.
#[derive(Debug, Clone)]
pub(super) enum PayloadJob {
    /// Started by an FCU; built at getPayload (or by the first flashblock).
    Pending {
        parent: B256,
        attributes: Box<OpPayloadAttributes>,
    },
    /// Flashblocks are being published; `latest` is the block of the last one sent.
    Streaming {
        parent: B256,
        attributes: Box<OpPayloadAttributes>,
        latest: BuiltBlock,
        next_index: u64,
    },
    /// Sealed by getPayload: no more flashblocks, same answer every time.
    Built(BuiltBlock),
}
