//! engine-mux: an Engine API sidecar for OP Stack sequencers. It fans op-node's engine calls
//! out to the local execution client and an external builder, proposes the builder's block
//! only when the local client validated it as VALID, and falls back to the local block
//! whenever the builder fails. See docs/architecture.md for the routing table and invariants.
//!
//! As a library, a node embeds it instead of running it beside op-node: a [`Config`] built in
//! code ([`Config::builder`], the command line's defaults and checks), [`start`], and the
//! instance's typed Engine API in process ([`RunningMux::engine`]). The local EL is reached over
//! HTTP ([`LocalElConfig::http`]) or through the node's own engine
//! ([`LocalElConfig::in_process`] with a [`LocalEngine`]).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use engine_api::JwtSecret;
//! use engine_mux::{BuilderConfig, Config, LocalElConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = JwtSecret::from_hex(std::fs::read_to_string("/jwt.hex")?.trim())?;
//! let config = Config::builder(LocalElConfig::http(
//!     "http://127.0.0.1:8551".parse()?,
//!     secret,
//!     Duration::from_secs(1),
//! ))
//! .builder(BuilderConfig::http(
//!     "builder",
//!     "http://127.0.0.1:9551".parse()?,
//!     secret,
//!     Duration::from_secs(1),
//! ))
//! .rpc_addr("127.0.0.1:0".parse()?)
//! .debug_addr("127.0.0.1:0".parse()?)
//! .build()?;
//! let mux = engine_mux::start(config).await?;
//! let engine = mux.engine();
//! assert_eq!(engine.health().code(), 200); // what /healthz answers op-conductor
//! // engine.fork_choice_updated_v3(..), engine.get_payload_v4(..), ... as op-node would call them
//! mux.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(unreachable_pub, missing_debug_implementations)]

// The modules are private: what the binary, the devnet, the tests, the benches and an embedder
// use is re-exported below, so moving a file inside the crate changes no user's paths.
mod accountability;
mod builder;
mod calls;
mod comparison;
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
        BuilderConfig, Config, ConfigBuilder, ConfigError, HealthConfig, LocalElConfig,
        args::{Args, Command, DebugCommand},
    },
    embed::{EmbedError, EngineHandle},
    execution_mode::ExecutionMode,
    failover::{carry::DropReason, signed::PeerKey},
    health::{
        HealthStatus, Tolerance,
        evidence::{LOST_RACES_BLAMED, LastError},
        report::HealthReport,
    },
    http::{
        debug_api::{BuilderStatus, ExecutionModeBody},
        server::{RunningMux, StartError, start},
    },
    local_engine::{LocalEngine, LocalFuture},
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
