//! A mock's state: its chain head, the builds it started, the answers it caches, what it was
//! scripted to do and the calls it recorded, each store bounded.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use alloy_primitives::B256;
use alloy_rpc_types_engine::ExecutionPayloadV3;
use bytes::Bytes;
use http::StatusCode;
use parking_lot::Mutex;
use serde_json::Value;

use crate::{
    options::MockOptions,
    script::{Call, Script},
};

/// Everything one mock holds, shared by its handle and its connections.
pub(crate) struct Inner {
    pub(crate) name: &'static str,
    pub(crate) id_prefix: u8,
    pub(crate) block_hash_tag: u8,
    pub(crate) gas_used: Mutex<u64>,
    pub(crate) calls: Mutex<Vec<Call>>,
    pub(crate) script: Mutex<Script>,
    pub(crate) head: Mutex<(u64, u64)>,
    /// Numbered blocks below this are gone (a pruned node): `eth_getBlockByNumber` answers null.
    pub(crate) pruned_below: Mutex<u64>,
    pub(crate) next_id: Mutex<u64>,
    /// Payload id → block number and the FCU params that started the build.
    pub(crate) payloads: Mutex<HashMap<String, (u64, Value)>>,
    /// getPayload results already serialized, by everything they depend on: a zero-latency
    /// mock should cost the sidecar under test (same process, same cores) as little CPU as
    /// possible, and the overhead bench asks for the same block again and again. Bounded.
    pub(crate) answers: Mutex<HashMap<String, Arc<str>>>,
    pub(crate) issued: Mutex<Vec<String>>,
    /// Applied to every payload getPayload returns (a builder that builds the wrong block).
    pub(crate) tamper: Mutex<Option<fn(&mut ExecutionPayloadV3)>>,
    pub(crate) raw_proxy_answer: Mutex<Option<RawAnswer>>,
    pub(crate) options: MockOptions,
    /// Recent answer bodies as they went on the wire (after the mock's own compression).
    pub(crate) wire_bodies: Mutex<VecDeque<Bytes>>,
    /// The version byte of the payload ids it derives for flashblocks P2P builds.
    pub(crate) p2p_id_version: Mutex<u8>,
    /// Whether newPayload refuses other contents under a block hash it accepted.
    pub(crate) check_hashes: Mutex<bool>,
    /// The payloads newPayload accepted, by the hash they carry (bounded; oldest dropped).
    pub(crate) accepted: Mutex<VecDeque<(B256, Value)>>,
}

/// Payloads a mock remembers for its block-hash check.
pub(crate) const ACCEPTED_PAYLOADS: usize = 256;

/// A fixed status, header list and body for non-engine calls.
pub(crate) type RawAnswer = (StatusCode, Vec<(&'static str, &'static str)>, &'static str);

/// Records one call (its params unless the mock skips them).
pub(crate) fn record(inner: &Inner, v: &Value, accept_encoding: &Option<String>) {
    let params = if inner.options.skip_params {
        Value::Null
    } else {
        v["params"].clone()
    };
    inner.calls.lock().push(Call {
        method: v["method"].as_str().unwrap_or_default().to_string(),
        params,
        accept_encoding: accept_encoding.clone(),
    });
}
