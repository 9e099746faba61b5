//! One pending block, assembled from the flashblocks of one payload: decoded transactions with
//! their receipts, the header as it stands after the latest flashblock, and what the block
//! does to balances and nonces (derived in `effects.rs`).

use std::collections::{BTreeMap, HashMap};

use alloy_consensus::{
    Block, BlockBody, EMPTY_OMMER_ROOT_HASH, EMPTY_ROOT_HASH, Header, TxReceipt,
    proofs::calculate_transaction_root, transaction::SignerRecoverable,
};
use alloy_eips::{eip2718::Decodable2718, eip4895::Withdrawal, eip7685::EMPTY_REQUESTS_HASH};
use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_engine::PayloadId;
use engine_types::flashblocks::{Order, OrderError, Sequence};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};
use rpc_objects::fees::BlockFees;

use super::{
    effects::{BalanceEffect, BalanceView, NonceAfter, record_effects, record_nonce},
    tx::PendingTx,
};

/// Why a flashblock cannot be applied to its block.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The index does not follow the last applied one.
    #[error("payload {payload_id}: flashblock index {got}, expected {expected}")]
    Sequence {
        /// Payload.
        payload_id: PayloadId,
        /// Index received.
        got: u64,
        /// Index expected.
        expected: u64,
    },
    /// Index 0 came without its base.
    #[error("flashblock 0 of payload {0} has no base")]
    MissingBase(PayloadId),
    /// A base came on a later index.
    #[error("flashblock {index} of payload {payload_id} carries a base")]
    UnexpectedBase {
        /// Payload.
        payload_id: PayloadId,
        /// Index.
        index: u64,
    },
    /// Metadata and base disagree on the block number.
    #[error("flashblock for block {got} applied to block {expected}")]
    Number {
        /// Number in the flashblock.
        got: u64,
        /// Number of the block.
        expected: u64,
    },
    /// A transaction does not decode or its signer does not recover.
    #[error("transaction {position}: {reason}")]
    Transaction {
        /// Position in the block.
        position: usize,
        /// Decoder message.
        reason: String,
    },
    /// The metadata has no receipt for a transaction.
    #[error("no receipt for transaction {0}")]
    MissingReceipt(B256),
    /// Receipts' cumulative gas does not add up to the diff's gas used.
    #[error("receipts' cumulative gas {receipts} does not match the diff's gas used {diff}")]
    Gas {
        /// From the receipts.
        receipts: u64,
        /// From the diff.
        diff: u64,
    },
    /// The per-block flashblock bound was hit.
    #[error("more than {0} flashblocks for one block")]
    TooMany(u64),
}

/// A pending block.
#[derive(Debug, Clone)]
pub struct PendingBlock {
    /// Payload the flashblocks belong to.
    pub payload_id: PayloadId,
    /// The base from flashblock 0.
    pub base: OpFlashblockPayloadBase,
    /// The order its flashblocks must keep (engine-types' one checker).
    sequence: Sequence,
    /// Header after the latest flashblock.
    pub header: Header,
    /// Block hash from the latest flashblock.
    pub hash: B256,
    /// Whether the reconstructed header hashes to [`Self::hash`].
    pub header_exact: bool,
    /// RLP size of the block.
    pub size: u64,
    /// Withdrawals so far.
    pub withdrawals: Vec<Withdrawal>,
    /// Transactions so far.
    pub txs: Vec<PendingTx>,
    by_hash: HashMap<B256, usize>,
    reported_balances: BTreeMap<Address, U256>,
    pub(super) effects: Option<HashMap<Address, BalanceEffect>>,
    nonces: HashMap<Address, NonceAfter>,
    pub(super) fees: Option<BlockFees>,
    /// Every transaction so far came with its receipt (so gas adds up and is checked).
    pub(super) receipts_complete: bool,
    /// After each flashblock: transactions so far and the block's gas used then (the
    /// stream's own figures, against which a simulation of the block is checked).
    pub(super) flashblock_gas: Vec<(usize, u64)>,
}

impl PendingBlock {
    /// Starts a block from its flashblock 0.
    pub fn start(fb: &OpFlashblockPayload, max_flashblocks: u64) -> Result<Self, BlockError> {
        let base = fb
            .base
            .clone()
            .ok_or(BlockError::MissingBase(fb.payload_id))?;
        let mut block = Self {
            payload_id: fb.payload_id,
            header: Header::default(),
            hash: B256::ZERO,
            header_exact: false,
            size: 0,
            base,
            sequence: Sequence::new(fb.payload_id, max_flashblocks),
            withdrawals: Vec::new(),
            txs: Vec::new(),
            by_hash: HashMap::new(),
            reported_balances: BTreeMap::new(),
            effects: Some(HashMap::new()),
            nonces: HashMap::new(),
            fees: None,
            receipts_complete: true,
            flashblock_gas: Vec::new(),
        };
        block.apply(fb)?;
        Ok(block)
    }

    /// Block number.
    pub fn number(&self) -> u64 {
        self.base.block_number
    }

    /// Parent hash.
    pub fn parent_hash(&self) -> B256 {
        self.base.parent_hash
    }

    /// Base fee as the transactions were priced.
    pub fn base_fee(&self) -> u64 {
        self.header.base_fee_per_gas.unwrap_or_default()
    }

    /// Fee parameters of the block, when its L1-attributes deposit was understood.
    pub fn fees(&self) -> Option<&BlockFees> {
        self.fees.as_ref()
    }

    /// Position of a transaction in the block.
    pub fn position(&self, hash: &B256) -> Option<usize> {
        self.by_hash.get(hash).copied()
    }

    /// The nonce information for `address`, when the block has transactions from it.
    pub fn nonce_after(&self, address: &Address) -> Option<NonceAfter> {
        self.nonces.get(address).copied()
    }

    /// Whether the builder reports balances (then unreported accounts are untouched).
    pub fn reports_balances(&self) -> bool {
        !self.reported_balances.is_empty()
    }

    /// What this block says about `address`'s balance.
    pub fn balance(&self, address: &Address) -> BalanceView {
        if let Some(b) = self.reported_balances.get(address) {
            return BalanceView::Reported(*b);
        }
        if self.reports_balances() {
            return BalanceView::Effect(BalanceEffect::default());
        }
        match &self.effects {
            Some(e) => BalanceView::Effect(e.get(address).copied().unwrap_or_default()),
            None => BalanceView::Unknown,
        }
    }

    /// Applies the next flashblock; on error the block is unchanged.
    pub fn apply(&mut self, fb: &OpFlashblockPayload) -> Result<(), BlockError> {
        match self.sequence.check(fb) {
            Ok(Order::Next) => {}
            // The stream is one ordered connection: a repeat or a gap means it lost its place.
            Ok(Order::Seen { .. }) | Err(OrderError::Gap { .. } | OrderError::Payload { .. }) => {
                return Err(BlockError::Sequence {
                    payload_id: fb.payload_id,
                    got: fb.index,
                    expected: self.sequence.next(),
                });
            }
            Err(OrderError::Base { index: 0 }) => {
                return Err(BlockError::MissingBase(fb.payload_id));
            }
            Err(OrderError::Base { index }) => {
                return Err(BlockError::UnexpectedBase {
                    payload_id: fb.payload_id,
                    index,
                });
            }
            Err(OrderError::TooMany { max, .. }) => return Err(BlockError::TooMany(max)),
        }
        if fb.metadata.block_number != self.base.block_number {
            return Err(BlockError::Number {
                got: fb.metadata.block_number,
                expected: self.base.block_number,
            });
        }
        let base_fee: u64 = self.base.base_fee_per_gas.saturating_to();
        let mut fees = self.fees.clone();
        // A stream that sends no receipts (metadata only `block_number`, as Base's): the
        // transactions are held without receipts, their gas and balance effects unknown.
        let receiptless = fb.metadata.receipts.is_empty() && !fb.diff.transactions.is_empty();
        let receipts_complete = self.receipts_complete && !receiptless;
        let last_receipt = self.txs.last().and_then(|t| t.receipt.as_ref());
        let mut cumulative = last_receipt.map_or(0, |r| r.cumulative_gas_used());
        let mut next_log = self.txs.last().map_or(0, |t| {
            t.first_log_index
                .saturating_add(t.receipt.as_ref().map_or(0, |r| r.logs().len() as u64))
        });
        let mut added = Vec::with_capacity(fb.diff.transactions.len());
        for (i, raw) in fb.diff.transactions.iter().enumerate() {
            let position = self.txs.len() + i;
            let bad = |reason: String| BlockError::Transaction { position, reason };
            let envelope =
                OpTxEnvelope::decode_2718_exact(raw.as_ref()).map_err(|e| bad(e.to_string()))?;
            let tx = envelope
                .try_into_recovered()
                .map_err(|e| bad(e.to_string()))?;
            let hash = tx.inner().tx_hash();
            let (receipt, gas_used) = if receiptless {
                (None, 0)
            } else {
                let receipt = fb
                    .metadata
                    .receipts
                    .get(&hash)
                    .cloned()
                    .ok_or(BlockError::MissingReceipt(hash))?;
                let gas_used = receipt
                    .cumulative_gas_used()
                    .checked_sub(cumulative)
                    .ok_or(BlockError::Gas {
                        receipts: receipt.cumulative_gas_used(),
                        diff: fb.diff.gas_used,
                    })?;
                cumulative = receipt.cumulative_gas_used();
                (Some(receipt), gas_used)
            };
            if position == 0 {
                fees = BlockFees::from_l1_info_deposit(tx.inner());
            }
            let tx_fees = (!tx.inner().is_deposit())
                .then(|| fees.as_ref().map(|f| f.tx_fees(raw, gas_used)))
                .flatten();
            let first_log_index = next_log;
            next_log =
                next_log.saturating_add(receipt.as_ref().map_or(0, |r| r.logs().len() as u64));
            added.push(PendingTx {
                tx,
                hash,
                receipt,
                gas_used,
                first_log_index,
                fees: tx_fees,
            });
        }
        if receipts_complete && cumulative != fb.diff.gas_used {
            return Err(BlockError::Gas {
                receipts: cumulative,
                diff: fb.diff.gas_used,
            });
        }
        // Everything checked: commit.
        self.fees = fees;
        self.receipts_complete = receipts_complete;
        for ptx in added {
            record_effects(&mut self.effects, &ptx, base_fee, self.base.fee_recipient);
            record_nonce(&mut self.nonces, &ptx);
            self.by_hash.insert(ptx.hash, self.txs.len());
            self.txs.push(ptx);
        }
        self.reported_balances.extend(
            fb.metadata
                .new_account_balances
                .iter()
                .map(|(a, b)| (*a, *b)),
        );
        self.withdrawals.extend(fb.diff.withdrawals.iter().cloned());
        self.flashblock_gas.push((self.txs.len(), fb.diff.gas_used));
        self.hash = fb.diff.block_hash;
        self.sequence.advance();
        self.rebuild_header(fb);
        Ok(())
    }

    /// Whether every transaction came with its receipt from the stream.
    pub fn receipts_complete(&self) -> bool {
        self.receipts_complete
    }

    /// Whether the block's effects on state are derivable from its transactions alone: every
    /// one is a plain value transfer that ran no code (beside the L1-attributes deposit, which
    /// writes only L1Block storage). Then no code or storage changed, and only the accounts
    /// the transfers and fees name changed balance.
    pub fn plain_transfers_only(&self) -> bool {
        self.effects.is_some()
    }

    /// Rebuilds the header from the base and the latest diff, and checks it against the
    /// diff's block hash (exact when the chain follows the same header rules).
    fn rebuild_header(&mut self, fb: &OpFlashblockPayload) {
        let isthmus = !fb.diff.withdrawals_root.is_zero()
            || self.fees.as_ref().is_some_and(BlockFees::is_isthmus);
        let envelopes: Vec<OpTxEnvelope> = self.txs.iter().map(|t| t.tx.inner().clone()).collect();
        let header = Header {
            parent_hash: self.base.parent_hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: self.base.fee_recipient,
            state_root: fb.diff.state_root,
            transactions_root: calculate_transaction_root(&envelopes),
            receipts_root: fb.diff.receipts_root,
            logs_bloom: fb.diff.logs_bloom,
            difficulty: U256::ZERO,
            number: self.base.block_number,
            gas_limit: self.base.gas_limit,
            gas_used: fb.diff.gas_used,
            timestamp: self.base.timestamp,
            extra_data: self.base.extra_data.clone(),
            mix_hash: self.base.prev_randao,
            nonce: Default::default(),
            base_fee_per_gas: Some(self.base.base_fee_per_gas.saturating_to()),
            withdrawals_root: Some(if isthmus {
                fb.diff.withdrawals_root
            } else {
                EMPTY_ROOT_HASH
            }),
            blob_gas_used: Some(fb.diff.blob_gas_used.unwrap_or_default()),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(self.base.parent_beacon_block_root),
            requests_hash: isthmus.then_some(EMPTY_REQUESTS_HASH),
            ..Default::default()
        };
        self.header_exact = header.hash_slow() == self.hash;
        let block = Block {
            header,
            body: BlockBody {
                transactions: envelopes,
                ommers: Vec::new(),
                withdrawals: Some(self.withdrawals.clone().into()),
            },
        };
        self.size = alloy_rlp::Encodable::length(&block) as u64;
        self.header = block.header;
    }
}
