//! flashblocks-rpc scenarios: against the in-process devnet (engines, builder flashblocks,
//! engine-mux, driver, spammer) and against a scripted flashblocks server.

mod support;

mod disconnect;
mod frames;
mod preconfirmed;
mod reorg;
mod sealed;
mod subscribe;
mod tls;
