//! Fixtures for the end-to-end scenarios in `it/`: a devnet with builder flashblocks and
//! engine-mux between its engines ([`Net`]), flashblocks-rpc ([`start_rpc`]) and
//! flashblocks-proxy ([`start_proxy`]) in process, a relay a test can cut ([`Relay`]), a
//! scripted flashblocks stream ([`scripted_server`], [`flashblock`]), JSON-RPC calls and
//! polls with a deadline ([`eventually_some`]).
//!
//! A dev-only crate (`publish = false`): the benchmarks and scenarios of this crate are its
//! only users, so nothing here is part of a shipped crate's API.

mod lone;
mod net;
mod op_reth;
mod overlays;
mod proxy;
mod relay;
mod rpc;
mod scripted;

pub use lone::{LoneEngine, transfer};
pub use net::{BLOCK_TIME, FLASHBLOCK_INTERVAL, LocalEl, Net};
pub use op_reth::{OP_RETH_BIN, OpReth, Refusal, Tap, devnet_genesis_json, op_reth_bin};
pub use overlays::{Overlays, STREAMS};
pub use proxy::{Ws, next_json, start_proxy, subscribe, ws_url};
pub use relay::Relay;
pub use rpc::{
    CALL_TIMEOUT, assert_covers, call, client, pending_ahead, quantity, quantity256, rpc_config,
    start_rpc,
};
pub use scripted::{flashblock, scripted_server};
/// The workspace's one poll-with-a-deadline and metric reader.
pub use test_utils::{eventually_some, metric};
