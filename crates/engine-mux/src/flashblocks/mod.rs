//! Flashblocks: the builder's 200 ms sub-block preconfirmations, received over WebSocket,
//! checked, re-published to engine-mux's own subscribers, and assembled at getPayload.

pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod store;

/// Frames buffered for outbound subscribers; one further behind is disconnected.
pub(crate) const OUTBOUND_BUFFER: usize = 512;
