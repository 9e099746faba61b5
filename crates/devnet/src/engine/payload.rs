//! The Engine API on the engine: `engine_forkchoiceUpdated` (head, safe, finalized; starts
//! payload jobs), `engine_getPayload` (builds or seals a job) and `engine_newPayload`
//! (re-executes a block and answers VALID, INVALID or SYNCING).

use std::collections::{HashMap, HashSet};

use alloy_consensus::Block;

use alloy_primitives::{B256, TxHash, U256};
use alloy_rpc_types_engine::{
    ForkchoiceState, ForkchoiceUpdated, PayloadId, PayloadStatus, PayloadStatusEnum,
};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::{OpExecutionData, OpPayloadAttributes};

use crate::{
    chain::fees::next_base_fee,
    engine::{
        Engine, EngineStats, Inner, PAYLOAD_ID_VERSION,
        api::{EngineError, EngineVersion, PayloadEnvelope, check_fork, envelope},
        build::{BuildError, BuiltBlock, build_block_on_prefix},
        jobs::{MAX_BUILT_STATES, PayloadJob},
        validate::validate_block_with_senders,
    },
};

/// Most pool transactions considered for one block.
const MAX_POOL_TXS_PER_BLOCK: usize = 5_000;

impl Engine {
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
        // op-geth builds the block of the forced transactions alone while answering the FCU
        // (miner `buildPayload` → `generateWork`) and answers -38003 "failed to force-include
        // tx: <hash> …" when one cannot execute (a used nonce, no funds). Deposits are included
        // even when they revert, so only attributes with other transactions need the check.
        // (op-reth differs: it skips an invalid sequencer transaction and builds without it.)
        if attributes
            .transactions
            .iter()
            .flatten()
            .any(|raw| raw.first() != Some(&0x7e))
        {
            self.build_locked(&mut inner, head.hash, &attributes, Some(Vec::new()))
                .map_err(|e| match e {
                    EngineError::InvalidPayloadAttributes(msg) => {
                        EngineError::InvalidPayloadAttributes(format!(
                            "failed to force-include tx: {msg}"
                        ))
                    }
                    other => other,
                })?;
        }
        // FCUv3 serves every OP fork since Ecotone; the payload version byte is 3 like op-geth.
        let id = attributes.payload_id(&head.hash, PAYLOAD_ID_VERSION);
        EngineStats::count(&self.stats.payload_jobs);
        self.stats
            .last_job_number
            .fetch_max(head.header.number + 1, std::sync::atomic::Ordering::Relaxed);
        if let std::collections::hash_map::Entry::Vacant(slot) = inner.jobs.entry(id) {
            slot.insert(PayloadJob::Pending {
                parent: head.hash,
                attributes: Box::new(attributes),
            });
            inner.job_order.push_back(id);
            while inner.job_order.len() > inner.max_jobs {
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
                PayloadJob::Built(built) => return self.serve(built, version, true),
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
            inner
                .jobs
                .insert(id, PayloadJob::Built(built.without_state()));
            let hash = built.block.hash;
            inner.built.insert(hash, built.block.clone());
            inner.built_order.push_back(hash);
            while inner.built_order.len() > MAX_BUILT_STATES {
                if let Some(old) = inner.built_order.pop_front() {
                    inner.built.remove(&old);
                }
            }
            built
        };
        self.serve(built, version, false)
    }

    /// The envelope of `built`, with the serving faults applied; `again`: the payload was
    /// served before.
    fn serve(
        &self,
        built: BuiltBlock,
        version: EngineVersion,
        again: bool,
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
        if self.faulty() && self.faults.is_wrong_attributes() {
            // Another prevRandao than op-node asked for: the block still re-executes VALID
            // (no transaction reads it), so only the attributes check can refuse it.
            block.header.mix_hash =
                B256::from(U256::from_be_bytes(block.header.mix_hash.0) ^ U256::from(1));
            hash = block.header.hash_slow();
        }
        if self.faulty() && self.faults.is_zero_state_root() {
            // No state root at all: the sequencer's EL is to compute it.
            block.header.state_root = B256::ZERO;
            hash = block.header.hash_slow();
        }
        if again && self.faulty() && self.faults.is_same_hash_other_txs() {
            // Other contents, the hash served first: only a client that recomputes the hash
            // (or compares the bytes it validated) can tell.
            let deposits = block
                .body
                .transactions
                .iter()
                .filter(|t| t.is_deposit())
                .count();
            if block.body.transactions.len() > deposits {
                block.body.transactions.pop();
            }
        }
        self.produced.served(hash);
        Ok(envelope(version, hash, &block, built.value))
    }

    /// Builds on `parent_hash`. `flashblock_prefix`: `None` for a whole block from the
    /// attributes; `Some(empty)` for flashblock 0 (attribute transactions, no pool); `Some(txs)`
    /// to extend an earlier flashblock's transactions with the pool.
    pub(super) fn build_locked(
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
        let block: Block<OpTxEnvelope> =
            match data.payload.try_into_block_with_sidecar(&data.sidecar) {
                Ok(b) => b,
                Err(e) => {
                    return Ok(invalid_payload(
                        self,
                        claimed_hash,
                        format!("malformed payload: {e}"),
                        Some(parent_hash),
                    ));
                }
            };
        // As op-geth and reth do, the hash is recomputed from the payload before anything else:
        // a known hash claimed by other contents is another block, and INVALID (the Engine
        // API's blockHash check: `latestValidHash` null).
        let computed = block.header.hash_slow();
        if computed != claimed_hash {
            return Ok(invalid_payload(
                self,
                claimed_hash,
                format!("block hash mismatch: want {claimed_hash}, got {computed}"),
                None,
            ));
        }
        let (parent, parent_state) = {
            let inner = self.lock();
            if inner.chain.block(&claimed_hash).is_some() {
                return Ok(PayloadStatus::new(
                    PayloadStatusEnum::Valid,
                    Some(claimed_hash),
                ));
            }
            // Its own block with its post-state: no re-execution (without it, re-executed below).
            if let Some(own) = inner
                .built
                .get(&claimed_hash)
                .filter(|b| b.state().is_some())
                .cloned()
            {
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
            Err(e) => Ok(invalid_payload(self, claimed_hash, e.0, Some(parent_hash))),
        }
    }
}

/// An INVALID answer to newPayload, logged with its reason.
fn invalid_payload(
    engine: &Engine,
    block: B256,
    reason: String,
    latest_valid: Option<B256>,
) -> PayloadStatus {
    tracing::info!(role = engine.role.as_str(), %block, %reason, "newPayload INVALID");
    PayloadStatus::new(
        PayloadStatusEnum::Invalid {
            validation_error: reason,
        },
        latest_valid,
    )
}
