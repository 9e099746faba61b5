//! The engine: chain, mempool and payload jobs behind one short-held lock, with the Engine API
//! semantics (forkchoice, payload building, payload validation) on top.

pub mod build;
pub mod execute;
pub mod faults;
pub mod flashblocks;
pub mod mempool;
pub mod rpc;
pub mod store;
pub mod validate;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use alloy_consensus::{Block, transaction::SignerRecoverable};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{B256, Bytes, TxHash, U256};
use alloy_rpc_types_engine::{
    BlobsBundleV1, ExecutionPayloadV3, ForkchoiceState, ForkchoiceUpdated, PayloadId,
    PayloadStatus, PayloadStatusEnum,
};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::{
    OpExecutionData, OpExecutionPayloadEnvelopeV3, OpExecutionPayloadEnvelopeV4,
    OpExecutionPayloadV4, OpFlashblockPayload, OpPayloadAttributes,
};

use crate::{
    chain::{
        fees::next_base_fee,
        genesis::{ChainSpec, LoadedGenesis},
        state::StateSnapshot,
    },
    engine::{
        build::{BuildError, BuiltBlock, build_block_on_prefix},
        faults::Faults,
        mempool::{DEFAULT_MAX_TXS, Mempool, PoolError},
        store::{ChainBlock, ChainStore},
        validate::validate_block_with_senders,
    },
};

/// Payload jobs kept for `getPayload`; sized for bursts of hundreds of FCUs.
pub const MAX_PAYLOAD_JOBS: usize = 1024;
/// Most pool transactions considered for one block.
const MAX_POOL_TXS_PER_BLOCK: usize = 5_000;

/// Engine API version of a call, which decides the payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineVersion {
    /// Ecotone..Holocene (`*V3`).
    V3,
    /// Isthmus and later (`*V4`).
    V4,
}

/// Errors an Engine API call answers with (mapped to spec codes in `rpc::engine`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// `getPayload` for an id the engine does not have.
    #[error("Unknown payload")]
    UnknownPayload,
    /// Forkchoice state refers to an inconsistent chain.
    #[error("Invalid forkchoice state: {0}")]
    InvalidForkchoiceState(String),
    /// Attributes cannot be built on.
    #[error("Invalid payload attributes: {0}")]
    InvalidPayloadAttributes(String),
    /// Method version does not match the fork at the payload's timestamp.
    #[error("Unsupported fork: {0}")]
    UnsupportedFork(String),
    /// Malformed parameters.
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    /// The builder is `down` (a call that raced the listener closing).
    #[error("builder is down")]
    Down,
}

/// A `getPayload` answer in the version asked for.
#[derive(Debug, Clone)]
pub enum PayloadEnvelope {
    /// `engine_getPayloadV3`.
    V3(OpExecutionPayloadEnvelopeV3),
    /// `engine_getPayloadV4`.
    V4(OpExecutionPayloadEnvelopeV4),
}

#[derive(Debug, Clone)]
enum PayloadJob {
    Pending {
        parent: B256,
        attributes: Box<OpPayloadAttributes>,
    },
    /// Flashblocks are being published; `latest` is the block of the last one sent.
    Streaming {
        parent: B256,
        attributes: Box<OpPayloadAttributes>,
        latest: BuiltBlock,
        next_index: u64,
    },
    /// Sealed by getPayload: no more flashblocks, same answer every time.
    Built(BuiltBlock),
}

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

struct Inner {
    chain: ChainStore,
    mempool: Mempool,
    jobs: HashMap<PayloadId, PayloadJob>,
    job_order: VecDeque<PayloadId>,
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
    flashblocks: std::sync::OnceLock<Arc<crate::engine::flashblocks::FlashblocksPublisher>>,
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
                built: HashMap::new(),
                built_order: VecDeque::new(),
            }),
            spec,
            role,
            faults: Arc::new(Faults::default()),
            stats: EngineStats::default(),
            flashblocks: std::sync::OnceLock::new(),
        }
    }

    /// Makes this engine publish flashblocks for every payload it starts building.
    pub fn set_flashblocks(
        &self,
        publisher: Arc<crate::engine::flashblocks::FlashblocksPublisher>,
    ) {
        let _ = self.flashblocks.set(publisher);
    }

    /// The flashblocks publisher, when enabled.
    pub fn flashblocks(&self) -> Option<&Arc<crate::engine::flashblocks::FlashblocksPublisher>> {
        self.flashblocks.get()
    }

    /// Answer counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Chain parameters.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// Local EL or builder.
    pub fn role(&self) -> Role {
        self.role
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

    /// `engine_forkchoiceUpdatedV3` (OP uses V3 for Ecotone through Jovian).
    pub fn forkchoice_updated(
        &self,
        fcs: ForkchoiceState,
        attributes: Option<OpPayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        if self.faulty() && self.faults.is_stale() {
            return Ok(ForkchoiceUpdated::from_status(PayloadStatusEnum::Syncing));
        }
        if fcs.head_block_hash.is_zero() {
            return Err(EngineError::InvalidForkchoiceState("zero head hash".into()));
        }
        let mut inner = self.lock();
        let Some(head) = inner.chain.block(&fcs.head_block_hash) else {
            return Ok(ForkchoiceUpdated::from_status(PayloadStatusEnum::Syncing));
        };
        if inner.chain.state(&head.hash).is_none() {
            return Ok(ForkchoiceUpdated::from_status(PayloadStatusEnum::Syncing));
        }
        for (name, hash) in [
            ("safe", fcs.safe_block_hash),
            ("finalized", fcs.finalized_block_hash),
        ] {
            if !hash.is_zero() && inner.chain.block(&hash).is_none() {
                return Err(EngineError::InvalidForkchoiceState(format!(
                    "unknown {name} block {hash}"
                )));
            }
        }
        inner
            .chain
            .set_head(head.hash, fcs.safe_block_hash, fcs.finalized_block_hash);
        let state = inner.chain.head_state();
        inner.mempool.prune(&state);
        let status = PayloadStatus::new(PayloadStatusEnum::Valid, Some(head.hash));
        let Some(attributes) = attributes else {
            return Ok(ForkchoiceUpdated::new(status));
        };
        let ts = attributes.payload_attributes.timestamp;
        if ts <= head.header.timestamp {
            return Err(EngineError::InvalidPayloadAttributes(format!(
                "timestamp {ts} not after head timestamp {}",
                head.header.timestamp
            )));
        }
        if attributes.gas_limit.is_none() {
            return Err(EngineError::InvalidPayloadAttributes(
                "gasLimit is required".into(),
            ));
        }
        if attributes
            .payload_attributes
            .withdrawals
            .as_ref()
            .is_some_and(|w| !w.is_empty())
        {
            return Err(EngineError::InvalidPayloadAttributes(
                "withdrawals must be empty on OP Stack".into(),
            ));
        }
        if attributes
            .payload_attributes
            .parent_beacon_block_root
            .is_none()
        {
            return Err(EngineError::InvalidPayloadAttributes(
                "parentBeaconBlockRoot is required since Ecotone".into(),
            ));
        }
        // FCUv3 serves every OP fork since Ecotone; the payload version byte is 3 like op-geth.
        let id = attributes.payload_id(&head.hash, 3);
        if let std::collections::hash_map::Entry::Vacant(slot) = inner.jobs.entry(id) {
            slot.insert(PayloadJob::Pending {
                parent: head.hash,
                attributes: Box::new(attributes),
            });
            inner.job_order.push_back(id);
            while inner.job_order.len() > MAX_PAYLOAD_JOBS {
                if let Some(old) = inner.job_order.pop_front() {
                    inner.jobs.remove(&old);
                }
            }
        }
        Ok(ForkchoiceUpdated::new(status).with_payload_id(id))
    }

    /// `engine_getPayloadV3/V4`: builds on first request (so the block holds the transactions
    /// that arrived during the slot) and answers the same block afterwards.
    pub fn get_payload(
        &self,
        id: PayloadId,
        version: EngineVersion,
    ) -> Result<PayloadEnvelope, EngineError> {
        let built = {
            let mut inner = self.lock();
            // Checked under the lock: a flashblock that tripped `down_after_flashblock` is
            // never followed by a served payload.
            if self.faulty() && self.faults.is_down() {
                return Err(EngineError::Down);
            }
            let job = inner
                .jobs
                .get(&id)
                .cloned()
                .ok_or(EngineError::UnknownPayload)?;
            let built = match job {
                PayloadJob::Built(built) => return self.serve(built, version),
                PayloadJob::Streaming {
                    parent, attributes, ..
                } if self.faulty() && self.faults.is_dropping_preconfirmed() => {
                    // A valid block with the attribute transactions only: everything the
                    // flashblocks after index 0 preconfirmed is missing.
                    self.build_locked(&mut inner, parent, &attributes, Some(Vec::new()))?
                }
                PayloadJob::Streaming { latest, .. } => latest,
                PayloadJob::Pending { parent, attributes } => {
                    check_fork(&self.spec, version, attributes.payload_attributes.timestamp)?;
                    let built = self.build_locked(&mut inner, parent, &attributes, None)?;
                    EngineStats::count(&self.stats.built_payloads);
                    built
                }
            };
            inner.jobs.insert(id, PayloadJob::Built(built.clone()));
            let hash = built.block.hash;
            inner.built.insert(hash, built.block.clone());
            inner.built_order.push_back(hash);
            while inner.built_order.len() > MAX_PAYLOAD_JOBS {
                if let Some(old) = inner.built_order.pop_front() {
                    inner.built.remove(&old);
                }
            }
            built
        };
        self.serve(built, version)
    }

    fn serve(
        &self,
        built: BuiltBlock,
        version: EngineVersion,
    ) -> Result<PayloadEnvelope, EngineError> {
        check_fork(&self.spec, version, built.block.header.timestamp)?;
        let mut block = built.block.to_consensus_block();
        let mut hash = built.block.hash;
        if self.faulty() && self.faults.is_invalid() {
            // Corrupt the commitment but keep the header self-consistent, so only a client that
            // re-executes the block can tell.
            block.header.state_root =
                B256::from(U256::from_be_bytes(block.header.state_root.0) ^ U256::from(1));
            hash = block.header.hash_slow();
        }
        Ok(envelope(version, hash, &block, built.value))
    }

    /// Builds the next flashblock of payload `id` (index 0: the attribute transactions only;
    /// then each one adds what the pool has on top of the previous block). `None` once
    /// getPayload sealed the payload or the id is unknown.
    ///
    /// `publish` runs while the engine is still locked, so a getPayload either seals the
    /// payload before this flashblock exists or after it was handed to the subscribers: the
    /// sealed block is always exactly the last flashblock published.
    pub fn next_flashblock(
        &self,
        id: PayloadId,
        expected_index: u64,
        publish: impl FnOnce(&OpFlashblockPayload),
    ) -> Result<Option<OpFlashblockPayload>, EngineError> {
        let mut inner = self.lock();
        if self.faulty() && self.faults.is_down() {
            // A dead builder publishes nothing.
            return Ok(None);
        }
        let Some(job) = inner.jobs.get(&id).cloned() else {
            return Ok(None);
        };
        let (parent, attributes, previous, index) = match job {
            PayloadJob::Built(_) => return Ok(None),
            PayloadJob::Pending { parent, attributes } => (parent, attributes, None, 0),
            PayloadJob::Streaming {
                parent,
                attributes,
                latest,
                next_index,
            } => (parent, attributes, Some(latest), next_index),
        };
        if index != expected_index {
            // Another stream (a repeated FCU with the same attributes) owns this payload.
            return Ok(None);
        }
        let prefix = previous.as_ref().map(|p| p.block.transactions.clone());
        // Flashblock 0 carries only what the sequencer forced (deposits): an empty prefix.
        let built = self.build_locked(
            &mut inner,
            parent,
            &attributes,
            Some(prefix.clone().unwrap_or_default()),
        )?;
        let sent = prefix.as_ref().map_or(0, Vec::len);
        let flashblock = flashblocks_payload(&self.spec, id, index, &built, sent);
        inner.jobs.insert(
            id,
            PayloadJob::Streaming {
                parent,
                attributes,
                latest: built,
                next_index: index + 1,
            },
        );
        publish(&flashblock);
        if self.faulty() {
            // Under the lock, so getPayload either sealed before this flashblock or sees `down`.
            self.faults.trip_after_flashblock(id, index);
        }
        drop(inner);
        Ok(Some(flashblock))
    }

    /// Builds on `parent_hash`. `flashblock_prefix`: `None` for a whole block from the
    /// attributes; `Some(empty)` for flashblock 0 (attribute transactions, no pool); `Some(txs)`
    /// to extend an earlier flashblock's transactions with the pool.
    fn build_locked(
        &self,
        inner: &mut Inner,
        parent_hash: B256,
        attributes: &OpPayloadAttributes,
        flashblock_prefix: Option<Vec<alloy_consensus::transaction::Recovered<OpTxEnvelope>>>,
    ) -> Result<BuiltBlock, EngineError> {
        let parent = inner
            .chain
            .block(&parent_hash)
            .ok_or(EngineError::UnknownPayload)?;
        let state = inner
            .chain
            .state(&parent_hash)
            .ok_or(EngineError::UnknownPayload)?;
        let base_fee = next_base_fee(&self.spec, &parent.header).unwrap_or_default();
        // Flashblock 0 (an empty prefix) and the `empty` fault build without the pool.
        let skip_pool = (self.faulty() && self.faults.is_empty())
            || flashblock_prefix.as_ref().is_some_and(Vec::is_empty);
        let mut pool = if skip_pool {
            Vec::new()
        } else {
            inner.mempool.best(&state, base_fee, MAX_POOL_TXS_PER_BLOCK)
        };
        let prefix = flashblock_prefix.filter(|p| !p.is_empty());
        if let Some(prefix) = &prefix {
            let included: HashSet<TxHash> = prefix.iter().map(|t| t.tx_hash()).collect();
            pool.retain(|t| !included.contains(&t.tx_hash()));
        }
        build_block_on_prefix(&self.spec, &parent, &state, attributes, prefix, pool).map_err(|e| {
            match e {
                BuildError::InvalidAttributes(msg) => EngineError::InvalidPayloadAttributes(msg),
                BuildError::Execute(e) => EngineError::InvalidPayloadAttributes(e.to_string()),
            }
        })
    }

    /// `engine_newPayloadV3/V4`: re-executes the block and answers VALID, INVALID or SYNCING.
    pub fn new_payload(
        &self,
        data: OpExecutionData,
        version: EngineVersion,
    ) -> Result<PayloadStatus, EngineError> {
        let status = self.new_payload_inner(data, version)?;
        let counter = match &status.status {
            PayloadStatusEnum::Valid => &self.stats.valid_payloads,
            PayloadStatusEnum::Invalid { validation_error } => {
                if let Ok(mut last) = self.stats.last_invalid.lock() {
                    *last = Some(validation_error.clone());
                }
                &self.stats.invalid_payloads
            }
            _ => &self.stats.syncing_payloads,
        };
        EngineStats::count(counter);
        Ok(status)
    }

    fn new_payload_inner(
        &self,
        data: OpExecutionData,
        version: EngineVersion,
    ) -> Result<PayloadStatus, EngineError> {
        if self.faulty() && self.faults.is_stale() {
            return Ok(PayloadStatus::from_status(PayloadStatusEnum::Syncing));
        }
        let claimed_hash = data.payload.block_hash();
        let parent_hash = data.payload.parent_hash();
        check_fork(&self.spec, version, data.payload.timestamp())?;
        let (parent, parent_state) = {
            let inner = self.lock();
            if inner.chain.block(&claimed_hash).is_some() {
                return Ok(PayloadStatus::new(
                    PayloadStatusEnum::Valid,
                    Some(claimed_hash),
                ));
            }
            if let Some(own) = inner.built.get(&claimed_hash).cloned() {
                drop(inner);
                self.lock().chain.insert((*own).clone());
                return Ok(PayloadStatus::new(
                    PayloadStatusEnum::Valid,
                    Some(claimed_hash),
                ));
            }
            match (
                inner.chain.block(&parent_hash),
                inner.chain.state(&parent_hash),
            ) {
                (Some(p), Some(s)) => (p, s),
                _ => return Ok(PayloadStatus::from_status(PayloadStatusEnum::Syncing)),
            }
        };
        let invalid = |reason: String| {
            tracing::info!(role = self.role.as_str(), block = %claimed_hash, %reason, "newPayload INVALID");
            PayloadStatus::new(
                PayloadStatusEnum::Invalid {
                    validation_error: reason,
                },
                Some(parent_hash),
            )
        };
        let block: Block<OpTxEnvelope> =
            match data.payload.try_into_block_with_sidecar(&data.sidecar) {
                Ok(b) => b,
                Err(e) => return Ok(invalid(format!("malformed payload: {e}"))),
            };
        // Execution runs outside the lock: eth queries and FCUs are not blocked by it.
        let known_senders: HashMap<TxHash, alloy_primitives::Address> = {
            let inner = self.lock();
            block
                .body
                .transactions
                .iter()
                .filter_map(|tx| {
                    let hash = TxHash::from(*tx.tx_hash());
                    inner
                        .mempool
                        .get(&hash)
                        .map(|pooled| (hash, pooled.signer()))
                })
                .collect()
        };
        match validate_block_with_senders(
            &self.spec,
            &parent,
            &parent_state,
            block,
            claimed_hash,
            &known_senders,
        ) {
            Ok(valid) => {
                self.lock().chain.insert(valid);
                Ok(PayloadStatus::new(
                    PayloadStatusEnum::Valid,
                    Some(claimed_hash),
                ))
            }
            Err(e) => Ok(invalid(e.0)),
        }
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

fn check_fork(spec: &ChainSpec, version: EngineVersion, timestamp: u64) -> Result<(), EngineError> {
    let isthmus = spec.is_isthmus(timestamp);
    match (version, isthmus) {
        (EngineVersion::V3, true) => Err(EngineError::UnsupportedFork(format!(
            "V3 method for timestamp {timestamp} after Isthmus; use V4"
        ))),
        (EngineVersion::V4, false) => Err(EngineError::UnsupportedFork(format!(
            "V4 method for timestamp {timestamp} before Isthmus; use V3"
        ))),
        _ => Ok(()),
    }
}

fn envelope(
    version: EngineVersion,
    hash: B256,
    block: &Block<OpTxEnvelope>,
    value: U256,
) -> PayloadEnvelope {
    let v3 = ExecutionPayloadV3::from_block_unchecked(hash, block);
    let parent_beacon_block_root = block.header.parent_beacon_block_root.unwrap_or_default();
    match version {
        EngineVersion::V3 => PayloadEnvelope::V3(OpExecutionPayloadEnvelopeV3 {
            execution_payload: v3,
            block_value: value,
            blobs_bundle: BlobsBundleV1::default(),
            should_override_builder: false,
            parent_beacon_block_root,
        }),
        EngineVersion::V4 => PayloadEnvelope::V4(OpExecutionPayloadEnvelopeV4 {
            execution_payload: OpExecutionPayloadV4::from_v3_with_withdrawals_root(
                v3,
                block.header.withdrawals_root.unwrap_or_default(),
            ),
            block_value: value,
            blobs_bundle: BlobsBundleV1::default(),
            should_override_builder: false,
            parent_beacon_block_root,
            execution_requests: Vec::<Bytes>::new(),
        }),
    }
}

/// The flashblock of `built` for payload `id`: the base on index 0, and the transactions
/// after the first `sent` ones (those earlier flashblocks already carried).
fn flashblocks_payload(
    spec: &ChainSpec,
    id: PayloadId,
    index: u64,
    built: &BuiltBlock,
    sent: usize,
) -> OpFlashblockPayload {
    use alloy_eips::eip2718::Encodable2718;
    use op_alloy_rpc_types_engine::{
        OpFlashblockPayloadBase, OpFlashblockPayloadDelta, OpFlashblockPayloadMetadata,
    };
    let block = &built.block;
    let header = &block.header;
    let base = (index == 0).then(|| OpFlashblockPayloadBase {
        parent_beacon_block_root: header.parent_beacon_block_root.unwrap_or_default(),
        parent_hash: header.parent_hash,
        fee_recipient: header.beneficiary,
        prev_randao: header.mix_hash,
        block_number: header.number,
        gas_limit: header.gas_limit,
        timestamp: header.timestamp,
        extra_data: header.extra_data.clone(),
        base_fee_per_gas: U256::from(header.base_fee_per_gas.unwrap_or_default()),
    });
    let new_txs = block.transactions.iter().zip(&block.receipts).skip(sent);
    let receipts = new_txs
        .clone()
        .map(|(tx, receipt)| (tx.tx_hash(), receipt.clone().into()))
        .collect();
    OpFlashblockPayload {
        payload_id: id,
        index,
        base,
        diff: OpFlashblockPayloadDelta {
            state_root: header.state_root,
            receipts_root: header.receipts_root,
            logs_bloom: header.logs_bloom,
            gas_used: header.gas_used,
            block_hash: block.hash,
            transactions: new_txs
                .map(|(tx, _)| tx.inner().encoded_2718().into())
                .collect(),
            withdrawals: Vec::new(),
            // Zero marks a pre-Isthmus (V3) flashblock to assemblers.
            withdrawals_root: if spec.is_isthmus(header.timestamp) {
                header.withdrawals_root.unwrap_or_default()
            } else {
                B256::ZERO
            },
            blob_gas_used: header.blob_gas_used,
        },
        metadata: OpFlashblockPayloadMetadata {
            block_number: header.number,
            new_account_balances: Default::default(),
            receipts,
        },
    }
}

/// The execution data `newPayload` receives for a `getPayload` answer (what op-node forwards).
pub fn execution_data_of(envelope: &PayloadEnvelope) -> OpExecutionData {
    match envelope {
        PayloadEnvelope::V3(e) => OpExecutionData::v3(
            e.execution_payload.clone(),
            Vec::new(),
            e.parent_beacon_block_root,
        ),
        PayloadEnvelope::V4(e) => OpExecutionData::v4(
            e.execution_payload.clone(),
            Vec::new(),
            e.parent_beacon_block_root,
            Default::default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        chain::{
            accounts::{funded_dev_signers, sign_transfer},
            attributes::{SequencerParams, sequencer_attributes},
            genesis::{ForkOverrides, default_genesis},
        },
        engine::faults::Fault,
    };
    use alloy_eips::eip2718::Encodable2718;

    fn engines() -> (Engine, Engine) {
        let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
        (
            Engine::new(g.clone(), Role::Local),
            Engine::new(g, Role::Builder),
        )
    }

    fn fcs(hash: B256) -> ForkchoiceState {
        ForkchoiceState {
            head_block_hash: hash,
            safe_block_hash: hash,
            finalized_block_hash: hash,
        }
    }

    fn propose(engine: &Engine, number: u64) -> PayloadEnvelope {
        let head = engine.head();
        let attrs = sequencer_attributes(
            engine.spec(),
            &SequencerParams::default(),
            number,
            head.header.timestamp + 1,
        );
        let fcu = engine
            .forkchoice_updated(fcs(head.hash), Some(attrs))
            .unwrap();
        engine
            .get_payload(fcu.payload_id.unwrap(), EngineVersion::V4)
            .unwrap()
    }

    #[test]
    fn builder_block_is_valid_on_local_and_becomes_head() {
        let (local, builder) = engines();
        let signers = funded_dev_signers(&local.head_state()).unwrap();
        let tx = sign_transfer(
            &signers[0],
            901,
            0,
            signers[1].address(),
            U256::from(7),
            1_000_000_000,
            1,
        )
        .unwrap();
        let raw = tx.encoded_2718();
        builder.submit_raw_transaction(&raw).unwrap();
        local.submit_raw_transaction(&raw).unwrap();
        let env = propose(&builder, 1);
        let data = execution_data_of(&env);
        let hash = data.payload.block_hash();
        let status = local.new_payload(data, EngineVersion::V4).unwrap();
        assert_eq!(status.status, PayloadStatusEnum::Valid);
        local.forkchoice_updated(fcs(hash), None).unwrap();
        assert_eq!(local.head().hash, hash);
        assert_eq!(local.head().transactions.len(), 2);
        assert_eq!(local.mempool_len(), 0, "included tx pruned from the pool");
        assert_eq!(local.head_state().nonce(&signers[0].address()), 1);
    }

    #[test]
    fn invalid_fault_is_caught_by_reexecution() {
        let (local, builder) = engines();
        builder.faults().set(Fault::Invalid, true);
        let data = execution_data_of(&propose(&builder, 1));
        let status = local.new_payload(data, EngineVersion::V4).unwrap();
        match status.status {
            PayloadStatusEnum::Invalid { validation_error } => {
                assert!(
                    validation_error.starts_with("state root mismatch"),
                    "{validation_error}"
                )
            }
            other => panic!("expected INVALID, got {other:?}"),
        }
        assert_eq!(status.latest_valid_hash, Some(local.head().hash));
    }

    #[test]
    fn unknown_parent_is_syncing_and_unknown_payload_errors() {
        let (local, builder) = engines();
        let first = execution_data_of(&propose(&builder, 1));
        let first_hash = first.payload.block_hash();
        builder.new_payload(first, EngineVersion::V4).unwrap();
        builder.forkchoice_updated(fcs(first_hash), None).unwrap();
        let second = execution_data_of(&propose(&builder, 2));
        assert_eq!(
            local.new_payload(second, EngineVersion::V4).unwrap().status,
            PayloadStatusEnum::Syncing
        );
        assert_eq!(
            local
                .get_payload(PayloadId::new([9; 8]), EngineVersion::V4)
                .unwrap_err(),
            EngineError::UnknownPayload
        );
        assert_eq!(
            local
                .forkchoice_updated(fcs(B256::repeat_byte(3)), None)
                .unwrap()
                .payload_status
                .status,
            PayloadStatusEnum::Syncing
        );
    }

    #[test]
    fn v3_after_isthmus_is_unsupported_fork() {
        let (local, _) = engines();
        let head = local.head();
        let attrs = sequencer_attributes(
            local.spec(),
            &SequencerParams::default(),
            1,
            head.header.timestamp + 1,
        );
        let id = local
            .forkchoice_updated(fcs(head.hash), Some(attrs))
            .unwrap()
            .payload_id
            .unwrap();
        let err = local.get_payload(id, EngineVersion::V3).unwrap_err();
        assert!(matches!(err, EngineError::UnsupportedFork(_)));
        assert!(local.get_payload(id, EngineVersion::V4).is_ok());
    }

    #[test]
    fn empty_fault_builds_deposit_only_blocks_and_bad_attributes_are_refused() {
        let (_, builder) = engines();
        let signers = funded_dev_signers(&builder.head_state()).unwrap();
        let tx = sign_transfer(
            &signers[0],
            901,
            0,
            signers[1].address(),
            U256::from(7),
            1_000_000_000,
            1,
        )
        .unwrap();
        builder.submit_raw_transaction(&tx.encoded_2718()).unwrap();
        builder.faults().set(Fault::Empty, true);
        match propose(&builder, 1) {
            PayloadEnvelope::V4(env) => {
                assert_eq!(
                    env.execution_payload
                        .payload_inner
                        .payload_inner
                        .payload_inner
                        .transactions
                        .len(),
                    1
                )
            }
            PayloadEnvelope::V3(_) => panic!("Isthmus payload expected"),
        }

        let head = builder.head();
        let mut attrs = sequencer_attributes(
            builder.spec(),
            &SequencerParams::default(),
            1,
            head.header.timestamp + 1,
        );
        attrs.payload_attributes.parent_beacon_block_root = None;
        assert!(matches!(
            builder.forkchoice_updated(fcs(head.hash), Some(attrs.clone())),
            Err(EngineError::InvalidPayloadAttributes(_))
        ));
        attrs.payload_attributes.parent_beacon_block_root = Some(B256::ZERO);
        attrs.payload_attributes.timestamp = head.header.timestamp;
        assert!(matches!(
            builder.forkchoice_updated(fcs(head.hash), Some(attrs)),
            Err(EngineError::InvalidPayloadAttributes(_))
        ));
    }
}
