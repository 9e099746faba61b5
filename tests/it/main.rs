//! End-to-end scenarios across the workspace's binaries, each a named test: the in-process
//! devnet (engines, builder flashblocks, engine-mux, driver, spammer), flashblocks-proxy and
//! flashblocks-rpc as libraries, and scripted flashblocks streams in front of a real engine.

mod cast;
mod disconnect;
mod frames;
mod measure;
mod op_reth;
mod pending_call;
mod pending_state;
mod preconfirmed;
mod proxy_chain;
mod reorg;
mod sealed;
mod subscribe;
mod tls;
