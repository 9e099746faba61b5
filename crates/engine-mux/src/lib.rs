//! engine-mux: an Engine API sidecar for OP Stack sequencers. It fans op-node's engine calls
//! out to the local execution client and an external builder, proposes the builder's block
//! only when the local client validated it as VALID, and falls back to the local block
//! whenever the builder fails. See docs/architecture.md for the routing table and invariants.

pub mod accountability;
pub mod builder;
pub mod builders;
pub mod calls;
pub mod cli;
pub mod config;
pub mod debug_api;
pub mod embed;
pub mod error;
pub mod execution_mode;
pub mod failover;
pub mod fallback;
pub mod flashblocks;
pub mod health;
pub mod layers;
pub mod local;
pub mod metrics;
pub mod mux;
pub mod payload_check;
pub mod preconfirmations;
pub mod prevalidation;
pub mod router;
pub mod select;
pub mod server;
pub mod telemetry;

pub use config::Config;
pub use server::{RunningMux, StartError, start};
