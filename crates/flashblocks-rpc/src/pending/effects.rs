//! What a pending block does to nonces and balances, derived from its transactions where they
//! are plain value transfers that ran no code (intrinsic gas only): the nonce each sender has
//! after the block, and each account's credits and debits.

use std::collections::HashMap;

use alloy_consensus::{Transaction, TxReceipt};
use alloy_primitives::{Address, TxKind, U256};
use rpc_objects::fees::{
    BASE_FEE_VAULT, L1_BLOCK_PREDEPLOY, L1_FEE_VAULT, L1_INFO_DEPOSITOR, OPERATOR_FEE_VAULT,
};

use super::tx::PendingTx;

/// Intrinsic gas of a call without data (yellow paper G_transaction).
const TX_BASE_GAS: u64 = 21_000;
/// EIP-2930 cost per access-list address.
const ACCESS_LIST_ADDRESS_GAS: u64 = 2_400;
/// EIP-2930 cost per access-list storage key.
const ACCESS_LIST_KEY_GAS: u64 = 1_900;

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

/// Records `ptx`'s effect on its sender's nonce.
pub(super) fn record_nonce(nonces: &mut HashMap<Address, NonceAfter>, ptx: &PendingTx) {
    let entry = nonces.entry(ptx.tx.signer()).or_default();
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
/// intrinsic gas) into `slot`. Anything else may move value internally: balances are then unknown
/// (`slot` becomes `None`).
pub(super) fn record_effects(
    slot: &mut Option<HashMap<Address, BalanceEffect>>,
    ptx: &PendingTx,
    base_fee: u64,
    fee_recipient: Address,
) {
    let Some(effects) = slot.as_mut() else {
        return;
    };
    let Some(receipt) = &ptx.receipt else {
        // Without a receipt neither success nor gas is known.
        *slot = None;
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
            *slot = None;
            return;
        };
        if !deposit.input.is_empty() || ptx.gas_used != TX_BASE_GAS {
            *slot = None;
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
        *slot = None;
        return;
    };
    let intrinsic = tx.access_list().map_or(TX_BASE_GAS, |list| {
        list.iter().fold(TX_BASE_GAS, |g, item| {
            g.saturating_add(ACCESS_LIST_ADDRESS_GAS)
                .saturating_add(ACCESS_LIST_KEY_GAS.saturating_mul(item.storage_keys.len() as u64))
        })
    });
    if !tx.input().is_empty() || tx.authorization_list().is_some() || ptx.gas_used != intrinsic {
        *slot = None;
        return;
    }
    let price = U256::from(tx.effective_gas_price(Some(base_fee)));
    let gas = U256::from(ptx.gas_used);
    let base = U256::from(base_fee);
    let value = if ok { tx.value() } else { U256::ZERO };
    credit(to, value);
    credit(fee_recipient, gas * price.saturating_sub(base));
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
