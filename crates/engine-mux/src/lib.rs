//! engine-mux: an Engine API sidecar for OP Stack sequencers. It fans op-node's engine calls
//! out to the local execution client and an external builder, proposes the builder's block
//! only when the local client validated it as VALID, and falls back to the local block
//! whenever the builder fails. See docs/architecture.md for the routing table and invariants.

pub mod accountability;
pub mod builder;
pub mod calls;
pub mod config;
pub mod embed;
pub mod error;
pub mod execution_mode;
pub mod failover;
pub mod flashblocks;
pub mod health;
pub mod http;
pub mod local;
pub mod local_engine;
pub mod metrics;
pub mod mux;
pub mod preconfirmations;
pub mod select;
pub mod telemetry;

pub use config::Config;
// The paths the binary, the devnet, the tests and the fuzz targets used before the move.
pub use config::args as cli;
pub use http::server::{RunningMux, StartError, start};
pub use http::{debug_api, router, server};
pub use select::payload_check;
