//! The execution engine: chain, mempool and payload jobs behind one short-held lock, with the
//! Engine API semantics on top.
//!
//! - [`Engine`] (here): the handle and its state, the mempool entry point.
//! - [`api`]: what Engine API calls take and answer (versions, errors, payload envelopes).
//! - [`payload`]: forkchoice, payload building and payload validation on the engine.
//! - [`jobs`]: the payloads being built, from FCU to getPayload.
//! - [`store`], [`execute`], [`build`], [`validate`], [`mempool`]: blocks kept, executing,
//!   building and re-executing them, pending transactions.
//! - [`faults`], [`flashblocks`]: builder mode (fault switches, flashblocks built and published).
//! - [`rpc`]: the listeners (Engine API with JWT, eth RPC, fault controls).

pub mod api;
pub mod build;
pub mod call;
pub mod execute;
pub mod faults;
pub mod flashblocks;
pub mod in_process;
pub mod jobs;
pub mod mempool;
pub mod payload;
pub mod produced;
pub mod rpc;
pub mod store;
pub mod validate;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use alloy_consensus::transaction::SignerRecoverable;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{B256, TxHash};
use alloy_rpc_types_engine::PayloadId;
use op_alloy_consensus::OpTxEnvelope;

pub use crate::engine::{
    api::{EngineError, EngineVersion, PayloadEnvelope, execution_data_of},
    jobs::MAX_PAYLOAD_JOBS,
};
use crate::{
    chain::{
        genesis::{ChainSpec, LoadedGenesis},
        state::StateSnapshot,
    },
    engine::{
        faults::Faults,
        jobs::PayloadJob,
        mempool::{DEFAULT_MAX_TXS, Mempool, PoolError},
        store::{ChainBlock, ChainStore},
    },
};

/// What the engine does on top of plain EL behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The sequencer's local EL.
    Local,
    /// The external builder (fault switches apply).
    Builder,
}

impl Role {
    /// Lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Builder => "builder",
        }
    }
}

/// The first byte of the payload ids this engine derives: reth's default engine message
/// version, which reth-based engines (op-reth, op-rbuilder) stamp whatever the FCU's version.
pub const PAYLOAD_ID_VERSION: u8 = 4;

struct Inner {
    chain: ChainStore,
    mempool: Mempool,
    jobs: HashMap<PayloadId, PayloadJob>,
    job_order: VecDeque<PayloadId>,
    // At most this many payload jobs are kept (oldest forgotten first).
    max_jobs: usize,
    // Blocks this engine built, so newPayload of its own block skips re-execution.
    built: HashMap<B256, Arc<ChainBlock>>,
    built_order: VecDeque<B256>,
}

/// One execution engine: local EL or builder.
pub struct Engine {
    spec: ChainSpec,
    role: Role,
    faults: Arc<Faults>,
    inner: Mutex<Inner>,
    stats: EngineStats,
    produced: produced::Produced,
    // Builder in flashblocks P2P mode: the keys authorizations are checked against.
    p2p: std::sync::OnceLock<Arc<flashblocks::p2p::P2pAuth>>,
}

/// Counters of what the engine answered, for status output and tests.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// newPayload calls answered VALID.
    pub valid_payloads: std::sync::atomic::AtomicU64,
    /// newPayload calls answered INVALID.
    pub invalid_payloads: std::sync::atomic::AtomicU64,
    /// newPayload calls answered SYNCING.
    pub syncing_payloads: std::sync::atomic::AtomicU64,
    /// Payloads built for getPayload.
    pub built_payloads: std::sync::atomic::AtomicU64,
    /// FCUs with attributes that started (or repeated) a payload job.
    pub payload_jobs: std::sync::atomic::AtomicU64,
    /// The highest block number a payload job was started for (0: none yet).
    pub last_job_number: std::sync::atomic::AtomicU64,
    /// The most recent INVALID reason.
    last_invalid: Mutex<Option<String>>,
}

impl EngineStats {
    /// The most recent INVALID reason.
    pub fn last_invalid_reason(&self) -> Option<String> {
        self.last_invalid.lock().ok().and_then(|g| g.clone())
    }

    fn count(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A new engine at genesis.
    pub fn new(genesis: LoadedGenesis, role: Role) -> Self {
        let LoadedGenesis {
            spec,
            header,
            state,
        } = genesis;
        let genesis_block = ChainBlock::seal(header, Vec::new(), Vec::new(), state);
        Self {
            inner: Mutex::new(Inner {
                chain: ChainStore::new(genesis_block),
                mempool: Mempool::new(spec.chain_id, DEFAULT_MAX_TXS),
                jobs: HashMap::new(),
                job_order: VecDeque::new(),
                max_jobs: MAX_PAYLOAD_JOBS,
                built: HashMap::new(),
                built_order: VecDeque::new(),
            }),
            spec,
            role,
            faults: Arc::new(Faults::default()),
            stats: EngineStats::default(),
            produced: produced::Produced::default(),
            p2p: std::sync::OnceLock::new(),
        }
    }

    /// Puts the builder in flashblocks P2P mode (once, before it serves engine calls): it then
    /// publishes a payload's flashblocks only when an authorized FCU started it.
    pub fn set_flashblocks_p2p(&self, auth: Arc<flashblocks::p2p::P2pAuth>) {
        let _ = self.p2p.set(auth);
    }

    /// The flashblocks P2P keys and counters, in P2P mode.
    pub fn flashblocks_p2p(&self) -> Option<&Arc<flashblocks::p2p::P2pAuth>> {
        self.p2p.get()
    }

    /// Answer counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The block hashes and flashblocks this engine handed out (which builder built a block).
    pub fn produced(&self) -> &produced::Produced {
        &self.produced
    }

    /// Chain parameters.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// Local EL or builder.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Keeps at most `n` blocks of history (default [`store::MAX_BLOCKS`]) and at most `n`
    /// payload jobs (default [`MAX_PAYLOAD_JOBS`]; each keeps its block), so everything the
    /// engine remembers is full after `n` blocks.
    pub fn set_history_blocks(&self, n: usize) {
        let mut inner = self.lock();
        inner.chain.set_max_blocks(n);
        inner.max_jobs = n.clamp(1, MAX_PAYLOAD_JOBS);
    }

    /// The fault switches (only consulted in builder role).
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough data for a devnet; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faulty(&self) -> bool {
        self.role == Role::Builder
    }

    /// Current head block.
    pub fn head(&self) -> Arc<ChainBlock> {
        self.lock().chain.head()
    }

    /// Reads the chain under the lock.
    pub fn with_chain<R>(&self, f: impl FnOnce(&ChainStore) -> R) -> R {
        f(&self.lock().chain)
    }

    /// A block this engine built and served from getPayload (as built, before any fault
    /// changed what was served), by its hash.
    pub fn built_block(&self, hash: &B256) -> Option<Arc<ChainBlock>> {
        self.lock().built.get(hash).cloned()
    }

    /// Head state.
    pub fn head_state(&self) -> Arc<StateSnapshot> {
        self.lock().chain.head_state()
    }

    /// Pooled transaction by hash.
    pub fn pooled_transaction(
        &self,
        hash: &TxHash,
    ) -> Option<alloy_consensus::transaction::Recovered<OpTxEnvelope>> {
        self.lock().mempool.get(hash).cloned()
    }

    /// Number of pooled transactions.
    pub fn mempool_len(&self) -> usize {
        self.lock().mempool.len()
    }

    /// Next nonce for `address` counting pooled transactions.
    pub fn pending_nonce(&self, address: &alloy_primitives::Address) -> u64 {
        let inner = self.lock();
        let state = inner.chain.head_state();
        inner.mempool.pending_nonce(address, &state)
    }

    /// `eth_sendRawTransaction`: decode, recover, pool.
    pub fn submit_raw_transaction(&self, raw: &[u8]) -> Result<TxHash, SubmitError> {
        let tx =
            OpTxEnvelope::decode_2718_exact(raw).map_err(|e| SubmitError::Decode(e.to_string()))?;
        let tx = tx
            .try_into_recovered()
            .map_err(|e| SubmitError::Decode(e.to_string()))?;
        let mut inner = self.lock();
        let head = inner.chain.head();
        let state = inner.chain.head_state();
        Ok(inner.mempool.insert(tx, &state, head.header.gas_limit)?)
    }
}

/// Why `eth_sendRawTransaction` refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Not a valid signed transaction.
    #[error("invalid transaction: {0}")]
    Decode(String),
    /// The pool refused it.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

#[cfg(test)]
mod tests;
