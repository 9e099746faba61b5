//! engine-mux scenarios against programmable mock engines (one test binary, one link).

mod bad_input;
mod builder_outcomes;
mod catch_up;
mod compat;
mod compression;
mod external_state_root;
mod failures;
mod flashblocks;
mod flashblocks_p2p;
mod harness;
mod health;
mod inbound_auth;
mod lifecycle;
mod mock_engine;
mod modes;
mod ordering;
mod peers;
mod routing;
mod tls;
