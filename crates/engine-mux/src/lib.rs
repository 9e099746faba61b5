//! engine-mux: an Engine API sidecar for OP Stack sequencers. It fans op-node's engine calls
//! out to the local execution client and an external builder, proposes the builder's block
//! only when the local client validated it as VALID, and falls back to the local block
//! whenever the builder fails. See docs/architecture.md for the routing table and invariants.

#![warn(unreachable_pub, missing_debug_implementations)]

// The modules are private: what the binary, the devnet, the tests, the benches and an embedder
// use is re-exported below, so moving a file inside the crate changes no user's paths.
mod accountability;
mod builder;
mod calls;
pub mod config;
pub mod embed;
mod error;
mod execution_mode;
mod failover;
mod flashblocks;
mod health;
mod http;
mod local;
pub mod local_engine;
mod metrics;
mod mux;
mod preconfirmations;
mod select;
mod telemetry;

pub use self::{
    config::{
        Config, ConfigError,
        args::{Args, Command, DebugCommand},
    },
    embed::{EmbedError, EngineHandle},
    execution_mode::ExecutionMode,
    failover::{carry::DropReason, signed::PeerKey},
    health::{
        Tolerance,
        evidence::{LOST_RACES_BLAMED, LastError},
        report::HealthReport,
    },
    http::{
        debug_api::{BuilderStatus, ExecutionModeBody},
        server::{RunningMux, StartError, start},
    },
    metrics::sample,
    select::{BuilderPolicy, SelectionPolicy},
    telemetry::{Telemetry, init as init_telemetry},
};

/// The old path of the command-line flags (`engine_mux::cli::Args`).
#[doc(hidden)]
pub use self::config::args as cli;

/// Internals the fuzz targets (`fuzz/`, a workspace of their own) drive directly; not a stable
/// API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::{
        execution_mode::ModeCell,
        flashblocks::store::{FlashblocksStore, MAX_BUILDS, Verdict},
        http::router::Route,
        metrics::Metrics,
        select::payload_check::{self, BuildRequest},
    };
}
