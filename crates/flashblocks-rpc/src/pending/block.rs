//! One pending block, assembled from the flashblocks of one payload: decoded transactions with
//! their receipts, the header as it stands after the latest flashblock, and what the block
//! does to balances and nonces.

use std::collections::{BTreeMap, HashMap};

use alloy_consensus::{
    Block, BlockBody, EMPTY_OMMER_ROOT_HASH, EMPTY_ROOT_HASH, Header, Transaction, TxReceipt,
    proofs::calculate_transaction_root,
    transaction::{Recovered, SignerRecoverable},
};
use alloy_consensus::{Eip658Value, Receipt};
use alloy_eips::eip2718::Encodable2718;
use alloy_eips::{eip2718::Decodable2718, eip4895::Withdrawal, eip7685::EMPTY_REQUESTS_HASH};
use alloy_primitives::{Address, B256, TxKind, U256};
use alloy_rpc_types_engine::PayloadId;
use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope, OpTxType};
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};

use rpc_objects::fees::{
    BASE_FEE_VAULT, BlockFees, L1_BLOCK_PREDEPLOY, L1_FEE_VAULT, L1_INFO_DEPOSITOR,
    OPERATOR_FEE_VAULT, TxFees,
};

/// Intrinsic gas of a call without data (yellow paper G_transaction).
const TX_BASE_GAS: u64 = 21_000;
/// EIP-2930 cost per access-list address.
const ACCESS_LIST_ADDRESS_GAS: u64 = 2_400;
/// EIP-2930 cost per access-list storage key.
const ACCESS_LIST_KEY_GAS: u64 = 1_900;

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

/// A preconfirmed transaction.
#[derive(Debug, Clone)]
pub struct PendingTx {
    /// The transaction and its signer.
    pub tx: Recovered<OpTxEnvelope>,
    /// Its hash.
    pub hash: B256,
    /// Its receipt from the flashblock metadata; `None` when the stream sends no receipts
    /// (Base's metadata is only `block_number`).
    pub receipt: Option<OpReceipt>,
    /// Gas it used (difference of cumulative gas; 0 when there is no receipt).
    pub gas_used: u64,
    /// Block-wide index of its first log.
    pub first_log_index: u64,
    /// L1 and operator fees, for non-deposits when the block's fee parameters are known.
    pub fees: Option<TxFees>,
}

/// The nonce an account has after this block, as far as the block shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NonceAfter {
    /// `nonce + 1` of its last non-deposit transaction in the block.
    pub known_next: Option<u64>,
    /// Deposits it sent after that (each raises the nonce by one).
    pub deposits_after: u64,
}

/// Credits and debits of one account within the block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BalanceEffect {
    /// Total received.
    pub credit: U256,
    /// Total paid.
    pub debit: U256,
}

/// What a block says about an account's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceView {
    /// The builder reported the balance after this block.
    Reported(U256),
    /// Derived change relative to the parent.
    Effect(BalanceEffect),
    /// The block cannot tell (a transaction whose effects are not derivable).
    Unknown,
}

/// A pending block.
#[derive(Debug, Clone)]
pub struct PendingBlock {
    /// Payload the flashblocks belong to.
    pub payload_id: PayloadId,
    /// The base from flashblock 0.
    pub base: OpFlashblockPayloadBase,
    /// Index the next flashblock must have.
    pub next_index: u64,
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
    effects: Option<HashMap<Address, BalanceEffect>>,
    nonces: HashMap<Address, NonceAfter>,
    fees: Option<BlockFees>,
    /// Every transaction so far came with its receipt (so gas adds up and is checked).
    receipts_complete: bool,
    /// After each flashblock: transactions so far and the block's gas used then (the
    /// stream's own figures, against which a simulation of the block is checked).
    flashblock_gas: Vec<(usize, u64)>,
}

/// What one transaction did when the upstream simulated it (`eth_simulateV1`'s call result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether it succeeded.
    pub status: bool,
    /// Gas it used.
    pub gas_used: u64,
    /// Its logs.
    pub logs: Vec<alloy_primitives::Log>,
}

/// A simulation that does not reproduce the block the stream describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    /// Not one outcome per transaction.
    #[error("{got} simulated calls for {expected} transactions")]
    Count {
        /// Outcomes given.
        got: usize,
        /// Transactions in the block.
        expected: usize,
    },
    /// The block's gas after a flashblock differs from the stream's.
    #[error("gas after {txs} transactions: simulated {simulated}, stream {stream}")]
    Gas {
        /// Transactions up to that flashblock.
        txs: usize,
        /// Simulated cumulative gas.
        simulated: u64,
        /// The flashblock's `gas_used`.
        stream: u64,
    },
}

impl PendingBlock {
    /// Starts a block from its flashblock 0.
    pub fn start(fb: &OpFlashblockPayload, max_flashblocks: u64) -> Result<Self, BlockError> {
        let base = fb
            .base
            .clone()
            .ok_or(BlockError::MissingBase(fb.payload_id))?;
        if fb.index != 0 {
            return Err(BlockError::Sequence {
                payload_id: fb.payload_id,
                got: fb.index,
                expected: 0,
            });
        }
        let mut block = Self {
            payload_id: fb.payload_id,
            header: Header::default(),
            hash: B256::ZERO,
            header_exact: false,
            size: 0,
            base,
            next_index: 0,
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
        block.apply(fb, max_flashblocks)?;
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
    pub fn apply(
        &mut self,
        fb: &OpFlashblockPayload,
        max_flashblocks: u64,
    ) -> Result<(), BlockError> {
        if fb.index != self.next_index {
            return Err(BlockError::Sequence {
                payload_id: fb.payload_id,
                got: fb.index,
                expected: self.next_index,
            });
        }
        if fb.index >= max_flashblocks {
            return Err(BlockError::TooMany(max_flashblocks));
        }
        if fb.index > 0 && fb.base.is_some() {
            return Err(BlockError::UnexpectedBase {
                payload_id: fb.payload_id,
                index: fb.index,
            });
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
            self.record_effects(&ptx, base_fee);
            self.record_nonce(&ptx);
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
        self.next_index += 1;
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

    /// This block with the receipts the stream did not send filled in from a simulation of
    /// it (`outcomes`: one per transaction, in order), then gas, log indexes, fees and balance
    /// effects recomputed. Refused when the simulated gas differs from the stream's after any
    /// flashblock: then the simulation did not run what the builder ran.
    pub fn executed(&self, outcomes: &[Outcome]) -> Result<Self, Divergence> {
        if outcomes.len() != self.txs.len() {
            return Err(Divergence::Count {
                got: outcomes.len(),
                expected: self.txs.len(),
            });
        }
        let mut out = self.clone();
        let mut cumulative = 0u64;
        let mut next_log = 0u64;
        let mut boundaries = self.flashblock_gas.iter().peekable();
        for (i, (ptx, outcome)) in out.txs.iter_mut().zip(outcomes).enumerate() {
            while boundaries.next_if(|(n, _)| *n == i).is_some() {}
            let gas_used = match &ptx.receipt {
                Some(r) => r.cumulative_gas_used().saturating_sub(cumulative),
                None => outcome.gas_used,
            };
            cumulative = cumulative.saturating_add(gas_used);
            if ptx.receipt.is_none() {
                ptx.receipt = Some(simulated_receipt(ptx.tx.inner(), outcome, cumulative));
            }
            ptx.gas_used = gas_used;
            ptx.first_log_index = next_log;
            next_log =
                next_log.saturating_add(ptx.receipt.as_ref().map_or(0, |r| r.logs().len() as u64));
            ptx.fees = (!ptx.tx.inner().is_deposit())
                .then(|| {
                    out.fees
                        .as_ref()
                        .map(|f| f.tx_fees(&ptx.tx.inner().encoded_2718(), gas_used))
                })
                .flatten();
            if let Some(&&(n, stream)) = boundaries.peek()
                && n == i + 1
                && stream != cumulative
            {
                return Err(Divergence::Gas {
                    txs: n,
                    simulated: cumulative,
                    stream,
                });
            }
        }
        // Balance effects again, now that every transaction's outcome is known.
        out.receipts_complete = true;
        out.effects = Some(HashMap::new());
        let base_fee: u64 = out.base.base_fee_per_gas.saturating_to();
        let txs = std::mem::take(&mut out.txs);
        for ptx in &txs {
            out.record_effects(ptx, base_fee);
        }
        out.txs = txs;
        Ok(out)
    }

    fn record_nonce(&mut self, ptx: &PendingTx) {
        let entry = self.nonces.entry(ptx.tx.signer()).or_default();
        if ptx.tx.inner().is_deposit() {
            entry.deposits_after = entry.deposits_after.saturating_add(1);
        } else {
            *entry = NonceAfter {
                known_next: Some(ptx.tx.nonce().saturating_add(1)),
                deposits_after: 0,
            };
        }
    }

    /// Derives balance changes for value transfers that ran no code (gas used equals the
    /// intrinsic gas). Anything else may move value internally: balances are then unknown.
    fn record_effects(&mut self, ptx: &PendingTx, base_fee: u64) {
        let Some(effects) = self.effects.as_mut() else {
            return;
        };
        let Some(receipt) = &ptx.receipt else {
            // Without a receipt neither success nor gas is known.
            self.effects = None;
            return;
        };
        let tx = ptx.tx.inner();
        let from = ptx.tx.signer();
        let ok = receipt.status();
        let mut credit = |a: Address, v: U256| {
            let e = effects.entry(a).or_default();
            e.credit = e.credit.saturating_add(v);
        };
        if let Some(deposit) = tx.as_deposit() {
            if deposit.from == L1_INFO_DEPOSITOR
                && deposit.to == TxKind::Call(L1_BLOCK_PREDEPLOY)
                && deposit.value.is_zero()
                && deposit.mint == 0
            {
                // The L1-attributes deposit only writes L1Block storage.
                return;
            }
            let TxKind::Call(to) = deposit.to else {
                self.effects = None;
                return;
            };
            if !deposit.input.is_empty() || ptx.gas_used != TX_BASE_GAS {
                self.effects = None;
                return;
            }
            credit(from, U256::from(deposit.mint));
            if ok {
                credit(to, deposit.value);
                let e = effects.entry(from).or_default();
                e.debit = e.debit.saturating_add(deposit.value);
            }
            return;
        }
        let (Some(fees), TxKind::Call(to)) = (ptx.fees, tx.kind()) else {
            self.effects = None;
            return;
        };
        let intrinsic = tx.access_list().map_or(TX_BASE_GAS, |list| {
            list.iter().fold(TX_BASE_GAS, |g, item| {
                g.saturating_add(ACCESS_LIST_ADDRESS_GAS).saturating_add(
                    ACCESS_LIST_KEY_GAS.saturating_mul(item.storage_keys.len() as u64),
                )
            })
        });
        if !tx.input().is_empty() || tx.authorization_list().is_some() || ptx.gas_used != intrinsic
        {
            self.effects = None;
            return;
        }
        let price = U256::from(tx.effective_gas_price(Some(base_fee)));
        let gas = U256::from(ptx.gas_used);
        let base = U256::from(base_fee);
        let value = if ok { tx.value() } else { U256::ZERO };
        credit(to, value);
        credit(self.base.fee_recipient, gas * price.saturating_sub(base));
        credit(BASE_FEE_VAULT, gas * base);
        credit(L1_FEE_VAULT, fees.l1_fee);
        if !fees.operator_fee.is_zero() {
            credit(OPERATOR_FEE_VAULT, fees.operator_fee);
        }
        let e = effects.entry(from).or_default();
        e.debit = e
            .debit
            .saturating_add(value)
            .saturating_add(gas * price)
            .saturating_add(fees.l1_fee)
            .saturating_add(fees.operator_fee);
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

/// The consensus receipt a simulated transaction would have had in the block.
fn simulated_receipt(tx: &OpTxEnvelope, outcome: &Outcome, cumulative: u64) -> OpReceipt {
    let inner = Receipt {
        status: Eip658Value::Eip658(outcome.status),
        cumulative_gas_used: cumulative,
        logs: outcome.logs.clone(),
    };
    match tx.tx_type() {
        OpTxType::Legacy => OpReceipt::Legacy(inner),
        OpTxType::Eip2930 => OpReceipt::Eip2930(inner),
        OpTxType::Eip1559 => OpReceipt::Eip1559(inner),
        OpTxType::Eip7702 => OpReceipt::Eip7702(inner),
        // The depositor's nonce before the deposit is not known here; Canyon's version 1.
        OpTxType::Deposit => OpReceipt::Deposit(OpDepositReceipt {
            inner,
            deposit_nonce: None,
            deposit_receipt_version: Some(1),
        }),
        #[allow(unreachable_patterns)]
        _ => OpReceipt::Eip1559(inner),
    }
}
