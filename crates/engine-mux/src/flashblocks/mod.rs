//! Flashblocks: the builder's 200 ms sub-block preconfirmations, received over WebSocket,
//! checked, re-published to engine-mux's own subscribers, and assembled at getPayload.

pub mod inbound;
pub mod outbound;
pub mod store;

/// Frames buffered for outbound subscribers; one further behind is disconnected.
pub const OUTBOUND_BUFFER: usize = 512;
