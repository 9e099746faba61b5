//! What a test scripts and reads back: the faults a method answers with instead of its
//! default, and the calls the mock recorded.

use std::{collections::HashMap, time::Duration};

use alloy_primitives::B256;
use serde_json::Value;

/// What a scripted method does instead of its default answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer normally after a delay.
    Delay(Duration),
    /// Never answer.
    Hang,
    /// Answer with a JSON-RPC error.
    RpcError(i32, &'static str),
    /// Answer with a body that is not JSON.
    Garbage,
    /// Answer with valid JSON-RPC whose result is not the expected shape.
    WrongShape,
    /// newPayload / FCU answer with this status (`SYNCING`, `INVALID`, `ACCEPTED`).
    Status(&'static str),
}

/// One recorded call.
#[derive(Clone, Debug)]
pub struct Call {
    /// The JSON-RPC method.
    pub method: String,
    /// Its params, as sent.
    pub params: Value,
    /// The request's `Accept-Encoding`, if any.
    pub accept_encoding: Option<String>,
}

/// The faults and refusals a test scripted.
#[derive(Default)]
pub(crate) struct Script {
    /// By method.
    pub(crate) faults: HashMap<String, Fault>,
    /// Block hashes newPayload answers INVALID for.
    pub(crate) invalid_hashes: Vec<B256>,
    /// FCUs whose attributes say `noTxPool` are refused as invalid attributes (an EL that
    /// cannot execute the forced transactions).
    pub(crate) reject_no_tx_pool: bool,
}
