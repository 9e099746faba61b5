//! What the upstream's simulation gets wrong about balances, and how the two families of OP
//! Stack execution clients differ in it (see the README, "What the simulation charges"): the
//! corrections, and the calibration run that tells the families apart.

use std::collections::HashMap;

use alloy_consensus::Transaction;
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use rpc_objects::fees::{BASE_FEE_VAULT, L1_FEE_VAULT, OPERATOR_FEE_VAULT};
use serde_json::{Value, json};

use super::{
    answer::{SimulateError, SimulatedCalls, word_u256},
    request::{BALANCE_PROBE, BALANCE_READER, CODE_PROBE, PROBE_GAS},
};
use crate::pending::block::PendingBlock;

/// How the upstream's `eth_simulateV1` pays fees for calls, where the two families of OP Stack
/// execution clients differ (see the README, "What the simulation charges").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// op-geth: a call without fee fields pays nothing to anyone; the operator fee vault is
    /// credited for priced calls.
    Geth,
    /// op-revm (op-reth, the devnet engine): a call without fee fields still credits the base
    /// fee vault `base fee * gas used`; the operator fee vault is never credited.
    Revm,
}

/// What the upstream's simulation of the pending transactions gets wrong about balances, by
/// account: `(credit, debit)` to apply to a simulated balance. Both families run a call
/// without an L1 data fee (op-geth: no rollup cost data, and `buyGas` skips L1 and operator
/// costs for messages that skip nonce checks; op-revm: an empty enveloped transaction costs
/// nothing) but still refund the unused part of the operator fee (`operator fee(gas limit) -
/// operator fee(gas used)`) they never charged. So each sender pays, on top of what the
/// simulation took, its L1 data fee plus the operator fee at its gas limit; the L1 fee vault
/// gets the L1 fees. By family: op-revm credits the base fee vault for the deposits (run as
/// calls without fees, at the pending block's base fee) and not the operator fee vault.
fn unsimulated_fees(blocks: &[PendingBlock], family: Family) -> HashMap<Address, (U256, U256)> {
    let mut out: HashMap<Address, (U256, U256)> = HashMap::new();
    for block in blocks {
        for ptx in &block.txs {
            if ptx.tx.is_deposit() {
                if family == Family::Revm {
                    let minted = U256::from(block.base_fee()) * U256::from(ptx.gas_used);
                    let vault = out.entry(BASE_FEE_VAULT).or_default();
                    vault.1 = vault.1.saturating_add(minted);
                }
                continue;
            }
            let Some(fees) = ptx.fees else { continue };
            let at_limit = block.fees().map_or(U256::ZERO, |f| {
                f.tx_fees(&ptx.tx.inner().encoded_2718(), ptx.tx.gas_limit())
                    .operator_fee
            });
            let payer = out.entry(ptx.tx.signer()).or_default();
            payer.1 = payer.1.saturating_add(fees.l1_fee).saturating_add(at_limit);
            let l1 = out.entry(L1_FEE_VAULT).or_default();
            l1.0 = l1.0.saturating_add(fees.l1_fee);
            if family == Family::Revm {
                let op = out.entry(OPERATOR_FEE_VAULT).or_default();
                op.0 = op.0.saturating_add(fees.operator_fee);
            }
        }
    }
    out
}

/// A balance as the simulation reported it, with what the simulation got wrong applied (see
/// [`unsimulated_fees`]).
pub fn corrected_balance(
    blocks: &[PendingBlock],
    address: Address,
    simulated: U256,
    family: Family,
) -> U256 {
    match unsimulated_fees(blocks, family).get(&address) {
        Some((credit, debit)) => simulated.saturating_add(*credit).saturating_sub(*debit),
        None => simulated,
    }
}

/// Gas of the calibration call: a call to an account without code uses exactly this.
const CALIBRATION_GAS: u64 = 21_000;

/// The calibration run that tells the upstream's [`Family`]: the base fee vault's balance read
/// (at base fee 0) before and after a block at base fee 1 holding one call without fee fields
/// to an account without code. op-revm credits the vault 21000, op-geth nothing.
pub(super) fn calibration_request() -> Value {
    let read = json!({"to": BALANCE_PROBE,
        "input": B256::left_padding_from(BASE_FEE_VAULT.as_slice()), "gas": U64::from(PROBE_GAS)});
    let probe_block = |with_code: bool| {
        let mut b = json!({"blockOverrides": {"baseFeePerGas": "0x0"}, "calls": [read]});
        if with_code {
            b["stateOverrides"] = json!({
                BALANCE_PROBE.to_string(): {"code": Bytes::from_static(&BALANCE_READER)},
            });
        }
        b
    };
    json!([{ "blockStateCalls": [
        probe_block(true),
        // Zero fees stated: op-reth would price a call without them at base fee 1 and refuse
        // it when the zero address cannot pay.
        {"blockOverrides": {"baseFeePerGas": "0x1"},
            "calls": [{"to": CODE_PROBE, "gas": U64::from(CALIBRATION_GAS),
                "maxFeePerGas": "0x0", "maxPriorityFeePerGas": "0x0"}]},
        probe_block(false),
    ]}, "latest"])
}

/// The [`Family`] the answer to [`calibration_request`] shows; anything but the two known
/// outcomes is an error (and is asked again next time).
pub(super) fn family_from_calibration(answer: &[SimulatedCalls]) -> Result<Family, SimulateError> {
    let vault = |i: usize| {
        answer
            .get(i)
            .and_then(|b| b.calls.first())
            .and_then(word_u256)
    };
    match (vault(0), vault(2)) {
        (Some(before), Some(after)) if after == before => Ok(Family::Geth),
        (Some(before), Some(after)) if after == before + U256::from(CALIBRATION_GAS) => {
            Ok(Family::Revm)
        }
        other => Err(SimulateError::Failed(format!(
            "calibration: base fee vault {other:?}"
        ))),
    }
}
