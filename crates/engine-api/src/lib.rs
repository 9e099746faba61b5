//! The contract every engine-mux crate speaks: JWT auth (server layer and client minting),
//! a JSON-RPC envelope, a typed upstream Engine API client, versioned payload helpers and
//! the JSON-RPC error codes the Engine API specification names; TLS and content decoding for
//! the connections to upstreams; the reconnecting WebSocket client every flashblocks consumer
//! uses ([`ws`]) and the JWT secret loader every binary's flags go through ([`secret`]).

pub mod auth;
pub mod content_encoding;
pub mod prometheus;
pub mod secret;
pub mod tls;
pub mod trace_context;
pub mod upstream;
pub mod ws;

// The wire types live in the light engine-types crate; re-exported so every path through
// engine-api keeps working.
pub use engine_types::{codes, flashblocks, flashblocks_p2p, jsonrpc, payload};

#[cfg(feature = "jwt")]
pub use alloy_rpc_types_engine::JwtError;
pub use alloy_rpc_types_engine::{PayloadId, PayloadStatus, PayloadStatusEnum};
#[cfg(feature = "jwt")]
pub use auth::{AuthLayer, AuthService, check_bearer, mint_token};
pub use payload::{PayloadEnvelope, PayloadVersion};
pub use secret::JwtSecret;
pub use upstream::{Upstream, UpstreamConfig, UpstreamError};
