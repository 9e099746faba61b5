//! The handle a test holds: start a mock, script it, read back what it recorded.

use std::{net::SocketAddr, sync::Arc};

use alloy_primitives::B256;
use alloy_rpc_types_engine::{ExecutionPayloadV3, JwtSecret};
use http::StatusCode;
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::{
    chain::{block_hash, now},
    client::hex_secret,
    options::MockOptions,
    script::{Call, Fault},
    server::{Listening, serve},
    state::Inner,
};

/// A mock execution engine on a loopback port.
#[derive(Clone)]
pub struct MockEngine {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The JWT secret it validates callers with.
    pub secret: JwtSecret,
    inner: Arc<Inner>,
    server: Arc<Mutex<Option<Listening>>>,
}

impl MockEngine {
    /// Starts a mock named `name` whose payload ids start with `id_prefix` and whose block
    /// hashes carry `hash_tag`.
    pub async fn start(name: &'static str, id_prefix: u8, hash_tag: u8) -> Self {
        Self::start_with(name, id_prefix, hash_tag, MockOptions::default()).await
    }

    /// [`Self::start`] with compression and/or TLS.
    pub async fn start_with(
        name: &'static str,
        id_prefix: u8,
        hash_tag: u8,
        options: MockOptions,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let engine = Self {
            addr,
            secret: JwtSecret::random(),
            inner: Arc::new(Inner {
                name,
                id_prefix,
                block_hash_tag: hash_tag,
                gas_used: Mutex::new(1_000_000),
                calls: Mutex::default(),
                script: Mutex::default(),
                head: Mutex::new((100, now())),
                pruned_below: Mutex::new(0),
                next_id: Mutex::new(1),
                payloads: Mutex::default(),
                answers: Mutex::default(),
                issued: Mutex::default(),
                tamper: Mutex::default(),
                raw_proxy_answer: Mutex::default(),
                options,
                wire_bodies: Mutex::default(),
                accepted: Mutex::default(),
                check_hashes: Mutex::new(false),
                p2p_id_version: Mutex::new(4),
            }),
            server: Arc::default(),
        };
        engine.serve(listener);
        engine
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        let scheme = if self.inner.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether this mock recently sent exactly `body` (compressed if it compressed it).
    pub fn sent_on_the_wire(&self, body: &[u8]) -> bool {
        self.inner.wire_bodies.lock().iter().any(|b| b == body)
    }

    /// Its JWT secret as hex (for `--*-jwt-token`).
    pub fn secret_hex(&self) -> String {
        hex_secret(&self.secret)
    }

    fn serve(&self, listener: TcpListener) {
        *self.server.lock() = Some(serve(listener, self.inner.clone(), self.secret));
    }

    /// Refuses connections (listener closed, open connections dropped) until [`Self::up`].
    pub fn down(&self) {
        if let Some((task, conns)) = self.server.lock().take() {
            task.abort();
            conns.lock().abort_all();
        }
    }

    /// Listens again on the same address.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Makes `method` misbehave as `fault` says.
    pub fn fault(&self, method: &str, fault: Fault) {
        self.inner
            .script
            .lock()
            .faults
            .insert(method.to_string(), fault);
    }

    /// Makes `method` answer normally again.
    pub fn clear_fault(&self, method: &str) {
        self.inner.script.lock().faults.remove(method);
    }

    /// Derives flashblocks P2P payload ids with this version byte (op-geth's 3 instead of
    /// reth's 4).
    pub fn set_p2p_id_version(&self, version: u8) {
        *self.inner.p2p_id_version.lock() = version;
    }

    /// Makes newPayload refuse, as op-geth and reth do on recomputing the hash, a payload whose
    /// contents differ from the one it accepted under the same block hash.
    pub fn check_block_hashes(&self) {
        *self.inner.check_hashes.lock() = true;
    }

    /// Makes newPayload answer INVALID for the block `hash`.
    pub fn invalid_for(&self, hash: B256) {
        self.inner.script.lock().invalid_hashes.push(hash);
    }

    /// Refuses FCUs with `noTxPool` attributes as invalid attributes (-38003).
    pub fn reject_no_tx_pool(&self) {
        self.inner.script.lock().reject_no_tx_pool = true;
    }

    /// Makes getPayload return payloads changed by `f` (VALID blocks, but not what op-node asked for).
    pub fn tamper_payloads(&self, f: fn(&mut ExecutionPayloadV3)) {
        *self.inner.tamper.lock() = Some(f);
    }

    /// Gas used by the payloads it builds.
    pub fn set_gas_used(&self, gas: u64) {
        *self.inner.gas_used.lock() = gas;
    }

    /// Sets the latest block the probe sees.
    pub fn set_head(&self, number: u64, timestamp: u64) {
        *self.inner.head.lock() = (number, timestamp);
    }

    /// The latest block (number, timestamp) its probe answers with.
    pub fn head(&self) -> (u64, u64) {
        *self.inner.head.lock()
    }

    /// Forgets the blocks below `number`, as a pruned node does.
    pub fn prune_below(&self, number: u64) {
        *self.inner.pruned_below.lock() = number;
    }

    /// Makes every non-engine call answer with this exact status, headers and body.
    pub fn raw_answer(
        &self,
        status: StatusCode,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
    ) {
        *self.inner.raw_proxy_answer.lock() = Some((status, headers, body));
    }

    /// Payload ids this engine handed out, oldest first.
    pub fn issued_ids(&self) -> Vec<String> {
        self.inner.issued.lock().clone()
    }

    /// Every call received, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().clone()
    }

    /// The calls of `method`, oldest first.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// The `engine_*` calls, oldest first.
    pub fn engine_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.starts_with("engine_"))
            .collect()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.inner.calls.lock().clear();
    }

    /// The block hash this engine stamps on the payload for block `number`.
    pub fn block_hash(&self, number: u64) -> B256 {
        block_hash(self.inner.block_hash_tag, number)
    }

    /// The hash of block `number` built from attributes with `noTxPool` (only the attributes'
    /// transactions): another block than the one built with the pool.
    pub fn no_pool_block_hash(&self, number: u64) -> B256 {
        let mut h = block_hash(self.inner.block_hash_tag, number);
        h.0[0] = 0xee;
        h
    }
}
