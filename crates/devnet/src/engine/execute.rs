//! Executing a block's transactions with op-revm through alloy-op-evm's block executor, and
//! assembling the resulting header.

use std::collections::HashSet;

use alloy_consensus::{
    EMPTY_OMMER_ROOT_HASH, Header, TxReceipt,
    proofs::{calculate_receipt_root, calculate_transaction_root},
    transaction::Recovered,
};
use alloy_eips::eip7685::EMPTY_REQUESTS_HASH;
use alloy_evm::{
    EvmFactory,
    block::{BlockExecutionError, BlockExecutor, BlockExecutorFactory},
};
use alloy_op_evm::{
    OpBlockExecutionCtx, OpBlockExecutorFactory, OpEvmFactory, block::OpAlloyReceiptBuilder,
    env::evm_env_for_op_block,
};
use alloy_primitives::{Address, B256, Bloom, Bytes};
use op_alloy_consensus::{OpReceiptEnvelope, OpTxEnvelope};

use crate::chain::{genesis::ChainSpec, state::StateSnapshot};

/// Intrinsic gas of a plain transfer: below this much remaining gas no pool tx can fit.
const MIN_TX_GAS: u64 = 21_000;

/// Everything about a block that is fixed before its transactions run.
#[derive(Debug, Clone)]
pub struct BlockContext {
    /// Parent block hash.
    pub parent_hash: B256,
    /// Parent block number (this block is `parent_number + 1`).
    pub parent_number: u64,
    /// Block timestamp.
    pub timestamp: u64,
    /// Fee recipient.
    pub beneficiary: Address,
    /// `prevRandao` / mixHash.
    pub prev_randao: B256,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Base fee of this block.
    pub base_fee: u64,
    /// Ecotone parent beacon block root.
    pub parent_beacon_block_root: Option<B256>,
    /// Header extraData (Holocene/Jovian EIP-1559 parameters).
    pub extra_data: Bytes,
}

/// The result of running a block: included transactions, receipts and the post-state.
#[derive(Debug, Clone)]
pub struct ExecutedBlock {
    /// Transactions in block order (forced ones first).
    pub transactions: Vec<Recovered<OpTxEnvelope>>,
    /// One receipt per transaction.
    pub receipts: Vec<OpReceiptEnvelope>,
    /// Gas used by all transactions.
    pub gas_used: u64,
    /// Jovian DA footprint (goes into `blobGasUsed`).
    pub da_footprint: u64,
    /// State after the block.
    pub state: StateSnapshot,
}

/// Why a block could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// A transaction that must be included (attributes tx or payload tx) failed to execute.
    #[error("transaction {index} ({hash}) cannot be executed: {reason}")]
    Transaction {
        /// Position in the block.
        index: usize,
        /// Transaction hash.
        hash: B256,
        /// What the EVM or the executor said.
        reason: String,
    },
    /// A system call or post-block step failed.
    #[error("block execution failed: {0}")]
    Block(String),
}

impl From<BlockExecutionError> for ExecuteError {
    fn from(err: BlockExecutionError) -> Self {
        Self::Block(err.to_string())
    }
}

/// Runs `forced` (all must succeed, in order) and then as many of `pool` as fit; a pool
/// transaction that fails is skipped together with its sender's later transactions.
pub fn execute_block(
    spec: &ChainSpec,
    parent_state: &StateSnapshot,
    ctx: &BlockContext,
    forced: Vec<Recovered<OpTxEnvelope>>,
    pool: impl IntoIterator<Item = Recovered<OpTxEnvelope>>,
) -> Result<ExecutedBlock, ExecuteError> {
    let factory = OpBlockExecutorFactory::new(
        OpAlloyReceiptBuilder::default(),
        spec.hardforks.clone(),
        OpEvmFactory::<alloy_op_evm::OpTx>::default(),
    );
    let env_header = Header {
        number: ctx.parent_number + 1,
        timestamp: ctx.timestamp,
        beneficiary: ctx.beneficiary,
        mix_hash: ctx.prev_randao,
        gas_limit: ctx.gas_limit,
        base_fee_per_gas: Some(ctx.base_fee),
        ..Default::default()
    };
    let evm_env = evm_env_for_op_block(&env_header, &spec.hardforks, spec.chain_id);
    let mut db = parent_state.child(ctx.parent_number, ctx.parent_hash);
    let mut included = Vec::with_capacity(forced.len());
    let (receipts, gas_used, da_footprint) = {
        let evm = factory.evm_factory().create_evm(&mut db, evm_env);
        let mut executor = factory.create_executor(
            evm,
            OpBlockExecutionCtx {
                parent_hash: ctx.parent_hash,
                parent_beacon_block_root: ctx.parent_beacon_block_root,
                extra_data: ctx.extra_data.clone(),
            },
        );
        executor.apply_pre_execution_changes()?;
        for tx in forced {
            executor
                .execute_transaction(&tx)
                .map_err(|e| ExecuteError::Transaction {
                    index: included.len(),
                    hash: tx.tx_hash(),
                    reason: e.to_string(),
                })?;
            included.push(tx);
        }
        let mut failed_senders = HashSet::new();
        let mut gas_used = executor
            .receipts()
            .last()
            .map_or(0, |r| r.cumulative_gas_used());
        for tx in pool {
            if ctx.gas_limit.saturating_sub(gas_used) < MIN_TX_GAS {
                break;
            }
            if failed_senders.contains(&tx.signer()) {
                continue;
            }
            match executor.execute_transaction_without_commit(&tx) {
                Ok(result) => {
                    gas_used += executor.commit_transaction(result)?.tx_gas_used();
                    included.push(tx);
                }
                Err(err) => {
                    tracing::debug!(hash = %tx.tx_hash(), %err, "skipping pool transaction");
                    failed_senders.insert(tx.signer());
                }
            }
        }
        let (_evm, result) = executor.finish()?;
        (result.receipts, result.gas_used, result.blob_gas_used)
    };
    Ok(ExecutedBlock {
        transactions: included,
        receipts,
        gas_used,
        da_footprint,
        state: db.into_snapshot(),
    })
}

/// The header the OP Stack expects for an executed block: every root recomputed from
/// the transactions, receipts and post-state.
pub fn assemble_header(spec: &ChainSpec, ctx: &BlockContext, executed: &ExecutedBlock) -> Header {
    let isthmus = spec.is_isthmus(ctx.timestamp);
    let logs_bloom = executed.receipts.iter().fold(Bloom::ZERO, |mut bloom, r| {
        bloom.accrue_bloom(&r.bloom());
        bloom
    });
    let encoded_txs: Vec<&OpTxEnvelope> = executed.transactions.iter().map(|t| t.inner()).collect();
    Header {
        parent_hash: ctx.parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: ctx.beneficiary,
        state_root: executed.state.state_root(),
        transactions_root: calculate_transaction_root(&encoded_txs),
        receipts_root: calculate_receipt_root(&executed.receipts),
        logs_bloom,
        difficulty: Default::default(),
        number: ctx.parent_number + 1,
        gas_limit: ctx.gas_limit,
        gas_used: executed.gas_used,
        timestamp: ctx.timestamp,
        extra_data: ctx.extra_data.clone(),
        mix_hash: ctx.prev_randao,
        nonce: Default::default(),
        base_fee_per_gas: Some(ctx.base_fee),
        // Canyon: an empty withdrawals list; Isthmus: the message passer's storage root instead.
        withdrawals_root: Some(if isthmus {
            executed.state.message_passer_storage_root()
        } else {
            alloy_consensus::EMPTY_ROOT_HASH
        }),
        blob_gas_used: Some(if spec.is_jovian(ctx.timestamp) {
            executed.da_footprint
        } else {
            0
        }),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: ctx.parent_beacon_block_root,
        requests_hash: isthmus.then_some(EMPTY_REQUESTS_HASH),
        ..Default::default()
    }
}
