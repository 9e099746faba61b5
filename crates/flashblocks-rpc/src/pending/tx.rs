//! A preconfirmed transaction as a pending block holds it.

use alloy_consensus::transaction::Recovered;
use alloy_primitives::B256;
use op_alloy_consensus::{OpReceipt, OpTxEnvelope};
use rpc_objects::fees::TxFees;

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
