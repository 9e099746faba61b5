//! The JSON that `eth_*` answers carry for OP Stack blocks, transactions and receipts.
//!
//! One place decides it: everything is built as alloy / op-alloy RPC types
//! ([`alloy_rpc_types_eth::Block`], [`op_alloy_rpc_types::Transaction`],
//! [`op_alloy_rpc_types::OpTransactionReceipt`]) and serialised by them. The devnet engine (sealed
//! blocks) and flashblocks-rpc (pending blocks assembled from flashblocks) both render through
//! these functions, so a receipt looks the same whichever of them answers.
//!
//! [`fees`] computes what a receipt's L1 fields say (`l1Fee`, `l1GasUsed`, ...) from the
//! L1-attributes deposit that opens every block.

pub mod fees;

use alloy_consensus::{
    Header, ReceiptWithBloom, Transaction as _, TxReceipt,
    transaction::{Recovered, TransactionInfo},
};
use alloy_eips::{eip2718::Encodable2718, eip4895::Withdrawals};
use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_eth::{BlockTransactions, Log, TransactionReceipt};
use op_alloy_consensus::{
    OpReceipt, OpTxEnvelope,
    transaction::{OpDepositInfo, OpTransactionInfo},
};
pub use op_alloy_rpc_types::{L1BlockInfo, OpTransactionReceipt, Transaction};

use crate::fees::BlockFees;

/// An RPC block of OP transactions, as `eth_getBlockBy*` answers it.
pub type Block = alloy_rpc_types_eth::Block<Transaction>;

/// What every transaction, receipt and log of a block repeats about the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockContext {
    /// Block hash.
    pub hash: B256,
    /// Block number.
    pub number: u64,
    /// Block timestamp (logs' `blockTimestamp`).
    pub timestamp: u64,
    /// Base fee, for effective gas prices.
    pub base_fee: Option<u64>,
}

impl BlockContext {
    /// The context of a block with this header and hash.
    pub fn of(header: &Header, hash: B256) -> Self {
        Self {
            hash,
            number: header.number,
            timestamp: header.timestamp,
            base_fee: header.base_fee_per_gas,
        }
    }
}

/// A transaction included in a block, with what its receipt says about it.
#[derive(Debug, Clone, Copy)]
pub struct Included<'a> {
    /// The transaction and its signer.
    pub tx: &'a Recovered<OpTxEnvelope>,
    /// Its consensus receipt.
    pub receipt: &'a OpReceipt,
    /// Position in the block.
    pub index: u64,
    /// Gas it used (its cumulative gas minus its predecessor's).
    pub gas_used: u64,
    /// Block-wide index of its first log.
    pub first_log_index: u64,
}

/// The deposit nonce and receipt version a deposit's receipt carries (nothing for other types).
pub fn deposit_info(receipt: &OpReceipt) -> OpDepositInfo {
    match receipt {
        OpReceipt::Deposit(d) => OpDepositInfo {
            deposit_nonce: d.deposit_nonce,
            deposit_receipt_version: d.deposit_receipt_version,
        },
        _ => OpDepositInfo::default(),
    }
}

/// A transaction as `eth_getTransactionByHash` and full blocks show it: in a block (`at`: the
/// block, its index and its receipt's deposit fields) or pending (`None`).
pub fn transaction(
    tx: &Recovered<OpTxEnvelope>,
    at: Option<(&BlockContext, u64, OpDepositInfo)>,
) -> Transaction {
    let (inner, deposit_meta) = match at {
        Some((block, index, deposit)) => (
            TransactionInfo {
                hash: Some(tx.tx_hash()),
                index: Some(index),
                block_hash: Some(block.hash),
                block_number: Some(block.number),
                base_fee: block.base_fee,
                // op-reth leaves the block timestamp out of transaction objects.
                block_timestamp: None,
            },
            deposit,
        ),
        None => (
            TransactionInfo {
                hash: Some(tx.tx_hash()),
                ..Default::default()
            },
            OpDepositInfo::default(),
        ),
    };
    Transaction::from_transaction(
        tx.clone(),
        OpTransactionInfo {
            inner,
            deposit_meta,
        },
    )
}

/// The receipt of an included transaction. L1 fee fields are filled for non-deposits when the
/// block's fee parameters (`fees`, from its L1-attributes deposit) are known.
pub fn receipt(
    block: &BlockContext,
    included: Included<'_>,
    fees: Option<&BlockFees>,
) -> OpTransactionReceipt {
    let Included {
        tx,
        receipt,
        index,
        gas_used,
        first_log_index,
    } = included;
    let hash = tx.tx_hash();
    let logs_bloom = receipt.bloom();
    let mut log_index = first_log_index;
    let rpc_receipt = receipt.clone().map_logs(|inner| {
        let log = Log {
            inner,
            block_hash: Some(block.hash),
            block_number: Some(block.number),
            block_timestamp: Some(block.timestamp),
            transaction_hash: Some(hash),
            transaction_index: Some(index),
            log_index: Some(log_index),
            removed: false,
        };
        log_index = log_index.saturating_add(1);
        log
    });
    let l1_block_info = match fees {
        Some(fees) if !tx.inner().is_deposit() => l1_block_info(fees, tx, gas_used),
        _ => L1BlockInfo::default(),
    };
    OpTransactionReceipt {
        inner: TransactionReceipt {
            inner: ReceiptWithBloom {
                receipt: rpc_receipt,
                logs_bloom,
            },
            transaction_hash: hash,
            transaction_index: Some(index),
            block_hash: Some(block.hash),
            block_number: Some(block.number),
            gas_used,
            effective_gas_price: tx.effective_gas_price(block.base_fee),
            // op-reth's Jovian receipts (deposits included) state the DA footprint here.
            blob_gas_used: fees.and_then(|f| f.da_footprint(&tx.inner().encoded_2718())),
            blob_gas_price: None,
            from: tx.signer(),
            to: tx.to(),
            contract_address: contract_address(tx),
        },
        l1_block_info,
        op_gas_refund: None,
    }
}

fn contract_address(tx: &Recovered<OpTxEnvelope>) -> Option<Address> {
    tx.is_create().then(|| tx.signer().create(tx.nonce()))
}

fn saturating_u128(v: U256) -> u128 {
    v.saturating_to()
}

/// The L1 fields of a non-deposit's receipt (op-geth's `l1Fee`, `l1GasUsed`, `l1GasPrice`, ...).
pub fn l1_block_info(fees: &BlockFees, tx: &Recovered<OpTxEnvelope>, gas_used: u64) -> L1BlockInfo {
    let charged = fees.tx_fees(&tx.inner().encoded_2718(), gas_used);
    let operator = fees.operator_fee_params();
    L1BlockInfo {
        l1_gas_price: Some(saturating_u128(fees.l1_base_fee())),
        l1_gas_used: Some(saturating_u128(charged.l1_gas_used)),
        l1_fee: Some(saturating_u128(charged.l1_fee)),
        l1_fee_scalar: None,
        l1_base_fee_scalar: Some(saturating_u128(fees.l1_base_fee_scalar())),
        l1_blob_base_fee: Some(saturating_u128(fees.l1_blob_base_fee())),
        l1_blob_base_fee_scalar: Some(saturating_u128(fees.l1_blob_base_fee_scalar())),
        operator_fee_scalar: operator.map(|(scalar, _)| saturating_u128(scalar)),
        operator_fee_constant: operator.map(|(_, constant)| saturating_u128(constant)),
        da_footprint_gas_scalar: fees.da_footprint_gas_scalar(),
    }
}

/// What a block object says besides its transactions.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape<'a> {
    /// The header.
    pub header: &'a Header,
    /// Its hash.
    pub hash: B256,
    /// RLP length of the whole block.
    pub size: u64,
    /// The block's withdrawals (always empty on OP Stack, but present).
    pub withdrawals: &'a [alloy_eips::eip4895::Withdrawal],
}

/// A block as `eth_getBlockBy*` answers it: `transactions` are full objects or hashes.
pub fn block(shape: BlockShape<'_>, transactions: BlockTransactions<Transaction>) -> Block {
    let header = alloy_rpc_types_eth::Header {
        hash: shape.hash,
        inner: shape.header.clone(),
        // op-reth omits totalDifficulty (post-merge chains have none).
        total_difficulty: None,
        size: Some(U256::from(shape.size)),
    };
    Block {
        header,
        uncles: Vec::new(),
        transactions,
        withdrawals: Some(Withdrawals::new(shape.withdrawals.to_vec())),
    }
}

#[cfg(test)]
mod tests;
