//! devnet: a small, real OP Stack execution engine on revm (Engine API + eth RPC), its builder
//! mode with fault switches, an op-node driver and a transaction spammer.

pub mod accounts;
pub mod attributes;
pub mod build;
pub mod builder_faults;
pub mod chain;
pub mod cli;
pub mod commands;
pub mod devnet;
pub mod driver;
pub mod engine;
pub mod execute;
pub mod fees;
pub mod flashblocks;
pub mod genesis;
pub mod l1_info;
pub mod mempool;
pub mod rpc;
pub mod spammer;
pub mod state;
pub mod validate;
