//! engine-mux scenarios against programmable mock engines (one test binary, one link).

mod bad_input;
mod builder_outcomes;
mod catch_up;
mod compat;
mod compression;
mod embedded;
mod external_state_root;
mod failures;
mod flashblocks;
mod flashblocks_p2p;
mod harness;
mod health;
mod in_process;
mod inbound_auth;
mod lifecycle;
mod modes;
mod ordering;
mod peers;
mod preconfirmations;
mod prevalidation;
mod routing;
mod several_builders;
mod tls;

/// The programmable mock engines (a dev-only crate, shared with the overhead bench).
use engine_mocks as mock_engine;
