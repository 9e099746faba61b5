//! A programmable in-process engine for engine-mux's tests and benchmarks: each test scripts its
//! answers, delays and faults, and reads back every call it recorded (after JWT validation with
//! its own secret). It behaves like the real peers where engine-mux depends on it: payloads built
//! from the FCU's attributes, op-geth's gzip handler and reth's compression, TLS. Dev-only.

mod chain;
mod client;
mod engine;
mod handler;
mod options;
mod script;
mod server;
mod state;

pub use self::{
    chain::{full_block, now, payload_v3},
    client::{attributes, engine_client, forkchoice, hex_secret},
    engine::MockEngine,
    options::{Compression, MockOptions},
    script::{Call, Fault},
    server::encode,
};
