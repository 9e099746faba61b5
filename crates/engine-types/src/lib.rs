//! Engine API and flashblocks wire types with no transport attached: flashblocks frames, their
//! order within a payload and their assembly into a block ([`flashblocks`]), flashblocks P2P
//! authorization ([`flashblocks_p2p`]), versioned payload envelopes ([`payload`]), the JSON-RPC
//! envelope ([`jsonrpc`]) and error codes ([`codes`]). No HTTP client or server, no JWT, no
//! OpenTelemetry: a reader of flashblocks frames compiles only this.

pub mod codes;
pub mod flashblocks;
pub mod flashblocks_p2p;
pub mod jsonrpc;
pub mod payload;

pub use alloy_rpc_types_engine::PayloadId;
pub use flashblocks::{Order, OrderError, Sequence};
pub use payload::{PayloadEnvelope, PayloadVersion};
