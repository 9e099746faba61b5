//! Pending-state reads: the pending block, a pending transaction and its receipt, and an
//! account's balance, nonce, code and storage after the pending transactions (see the README,
//! "Answered from pending state", for the rules).

use std::time::Instant;

use alloy_primitives::{Address, B256, U64, U256};
use jsonrpsee::types::Params;
use rpc_objects::fees::L1_BLOCK_PREDEPLOY;
use serde_json::{Value, json};

use super::answer::is_pending_tag;
use crate::{
    context::Context,
    execute::{self, Read, ReadValue},
    pending::{
        block::PendingBlock,
        effects::BalanceEffect,
        render,
        state::{PendingBalance, PendingNonce, balance_over},
    },
};

/// `eth_getBlockByNumber("pending", full)`: the tip of the served pending chain.
pub(super) fn pending_block(ctx: &Context, params: &Params<'_>) -> Option<Value> {
    let p: Vec<Value> = params.parse().ok()?;
    if !is_pending_tag(p.first()) {
        return None;
    }
    let full = p.get(1).and_then(Value::as_bool).unwrap_or(false);
    let state = ctx.read();
    state
        .tip(Instant::now())
        .map(|b| render::block_json(b, full))
}

/// A pending transaction by hash, rendered by `render` (transaction or receipt).
pub(super) fn by_hash(
    ctx: &Context,
    params: &Params<'_>,
    render: fn(&PendingBlock, usize) -> Option<Value>,
) -> Option<Value> {
    let (hash,): (B256,) = params.parse().ok()?;
    let state = ctx.read();
    state
        .find_tx(&hash, Instant::now())
        .and_then(|(b, i)| render(b, i))
}

/// A pending transaction's receipt: from the stream's metadata when it sent one, else from
/// the execution of the pending chain (`None`: not pending, or no execution to tell).
pub(super) async fn pending_receipt(ctx: &Context, params: &Params<'_>) -> Option<Value> {
    if let Some(v) = by_hash(ctx, params, render::receipt_json) {
        return Some(v);
    }
    let (hash,): (B256,) = params.parse().ok()?;
    let block_hash = ctx.read().find_tx(&hash, Instant::now())?.0.hash;
    let execution = execute::execution(ctx).await?;
    let block = execution.block(&block_hash)?;
    render::receipt_json(block, block.position(&hash)?)
}

/// The balance at `head` plus `effect`.
async fn relative_balance(
    ctx: &Context,
    address: Address,
    head: B256,
    effect: BalanceEffect,
) -> Option<U256> {
    let at_head: U256 = ctx
        .upstream
        .call(
            "eth_getBalance",
            &json!([address, { "blockHash": head }]),
            ctx.config.upstream.timeout,
        )
        .await
        .ok()?;
    at_head
        .checked_add(effect.credit)?
        .checked_sub(effect.debit)
}

/// `eth_getBalance(addr, "pending")`, first rule that applies: a balance the stream's
/// metadata reports; the head's balance plus what plain transfers moved (derived, exact) or
/// nothing when they did not touch `addr` (forwarded); after code ran, the balance the
/// execution of the pending chain read (senders, recipients, fee recipients) or a probe of
/// its own. `None`: forwarded.
pub(super) async fn pending_balance(ctx: &Context, params: &Params<'_>) -> Option<Value> {
    let (address, tag): (Address, Value) = params.parse().ok()?;
    if !is_pending_tag(Some(&tag)) {
        return None;
    }
    let view = ctx.read().balance(&address, Instant::now())?;
    let balance = match view {
        PendingBalance::Known(b) => b,
        PendingBalance::Relative { head, effect } => {
            relative_balance(ctx, address, head, effect).await?
        }
        PendingBalance::Untouched => return None,
        PendingBalance::Unknown => {
            let execution = execute::execution(ctx).await?;
            let chain: Vec<&PendingBlock> = execution.blocks.iter().collect();
            match balance_over(&chain, execution.head, &address) {
                PendingBalance::Known(b) => b,
                PendingBalance::Relative { head, effect } => {
                    relative_balance(ctx, address, head, effect).await?
                }
                PendingBalance::Untouched => return None,
                PendingBalance::Unknown => match execution.balances.get(&address) {
                    Some(b) => *b,
                    None => match execute::probe(
                        ctx,
                        execution.head,
                        &execution.blocks,
                        Read::Balance(address),
                    )
                    .await
                    .ok()?
                    {
                        ReadValue::Word(b) => b,
                        ReadValue::Code(_) => return None,
                    },
                },
            }
        }
    };
    Some(json!(balance))
}

/// `eth_getCode` / `eth_getStorageAt` at `pending`: forwarded while the pending chain ran no
/// code (plain transfers change neither; L1Block's storage, which every block's L1-attributes
/// deposit writes, excepted), else read by a probe after the pending transactions.
pub(super) async fn pending_state_read(
    ctx: &Context,
    params: &Params<'_>,
    storage: bool,
) -> Option<Value> {
    let p: Vec<Value> = params.parse().ok()?;
    let address: Address = serde_json::from_value(p.first()?.clone()).ok()?;
    let (read, tag) = if storage {
        let slot: U256 = serde_json::from_value(p.get(1)?.clone()).ok()?;
        (Read::Storage(address, B256::from(slot)), p.get(2))
    } else {
        (Read::Code(address), p.get(1))
    };
    if !is_pending_tag(tag) {
        return None;
    }
    let l1_block = storage && address == L1_BLOCK_PREDEPLOY;
    let plain = {
        let state = ctx.read();
        let chain = state.chain(Instant::now());
        !chain.is_empty() && chain.iter().all(|b| b.plain_transfers_only())
    };
    if plain && !l1_block {
        return None;
    }
    let execution = execute::execution(ctx).await?;
    if execution.plain_transfers_only() && !l1_block {
        return None;
    }
    match execute::probe(ctx, execution.head, &execution.blocks, read)
        .await
        .ok()?
    {
        ReadValue::Word(w) => Some(json!(B256::from(w))),
        ReadValue::Code(c) => Some(json!(c)),
    }
}

/// `eth_getTransactionCount(addr, "pending")`: the last pending nonce + 1, or the head's
/// count plus the pending deposits. `None`: forwarded.
pub(super) async fn pending_nonce(ctx: &Context, params: &Params<'_>) -> Option<Value> {
    let (address, tag): (Address, Value) = params.parse().ok()?;
    if !is_pending_tag(Some(&tag)) {
        return None;
    }
    let view = ctx.read().nonce(&address, Instant::now())?;
    let nonce = match view {
        PendingNonce::Known(n) => n,
        PendingNonce::Relative { head, add } => {
            let at_head: U64 = ctx
                .upstream
                .call(
                    "eth_getTransactionCount",
                    &json!([address, { "blockHash": head }]),
                    ctx.config.upstream.timeout,
                )
                .await
                .ok()?;
            at_head.to::<u64>().checked_add(add)?
        }
        PendingNonce::Untouched => return None,
    };
    Some(json!(U64::from(nonce)))
}
