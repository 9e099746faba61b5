//! devnet: a small, real OP Stack execution engine on revm (Engine API + eth RPC), its builder
//! mode with fault switches, an op-node driver and a transaction spammer.
//!
//! The arrows run one way: [`app`] wires [`engine`], [`node`] and [`spammer`] together, and each
//! of those builds on [`chain`], the definition of the chain they share.

pub mod app;
pub mod chain;
pub mod engine;
pub mod node;
pub mod spammer;
