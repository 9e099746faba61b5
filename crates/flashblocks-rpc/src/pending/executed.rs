//! A pending block completed by a simulation of it (`eth_simulateV1`): the receipts the stream
//! did not send filled in from the simulated calls, checked against the stream's gas after
//! every flashblock.

use std::collections::HashMap;

use alloy_consensus::{Eip658Value, Receipt, TxReceipt};
use alloy_eips::eip2718::Encodable2718;
use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope, OpTxType};

use super::{block::PendingBlock, effects::record_effects};

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
            record_effects(&mut out.effects, ptx, base_fee, out.base.fee_recipient);
        }
        out.txs = txs;
        Ok(out)
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
