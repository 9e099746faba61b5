//! `eth_call` and `eth_estimateGas` at `pending`: the caller's call simulated by the upstream
//! after the pending transactions (`eth_simulateV1`), the estimate by binary search over such
//! runs.

use alloy_primitives::{B256, U64};
use engine_types::codes::INTERNAL_ERROR;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};

use super::answer::{RpcError, RpcResult, is_pending_tag, to_raw};
use crate::{
    context::Context,
    execute::{self, SimulateError},
    metrics::Source,
    pending::block::PendingBlock,
};

/// geth's and reth's code for a call that reverted.
const EXECUTION_REVERTED: i32 = 3;

/// What became of the caller's call, simulated after the pending transactions.
enum Simulated {
    /// It succeeded: its return data and gas used.
    Success(Value, u64),
    /// It failed: the error object to answer with.
    Failed(ErrorObjectOwned),
}

/// Has the upstream simulate the pending transactions and then `call` (`eth_simulateV1` at
/// the head the pending blocks extend, the call last in the last pending block).
/// `Ok(None)`: the upstream has no `eth_simulateV1`.
async fn simulate_after(
    ctx: &Context,
    head: B256,
    blocks: &[PendingBlock],
    call: Value,
) -> Result<Option<Simulated>, RpcError> {
    let ran = match execute::simulate(ctx, head, blocks, Some(call), Vec::new()).await {
        Ok(r) => r,
        Err(SimulateError::Unsupported) => return Ok(None),
        Err(SimulateError::Failed(e)) => return Err(RpcError::Unavailable(e)),
    };
    let last = ran
        .tail
        .ok_or_else(|| RpcError::Unavailable("eth_simulateV1 answered without the call".into()))?;
    if last.status {
        return Ok(Some(Simulated::Success(
            json!(last.return_data),
            last.gas_used,
        )));
    }
    let (code, message, data) = match last.error {
        // op-reth leaves the revert data out of the error (it is the call's `returnData`);
        // op-geth and the devnet engine put it in both.
        Some(e) if e.code == EXECUTION_REVERTED && e.data.is_none() => {
            (e.code, e.message, Some(last.return_data.clone()))
        }
        Some(e) => (e.code, e.message, e.data),
        None => (INTERNAL_ERROR, "execution failed".to_string(), None),
    };
    Ok(Some(Simulated::Failed(match data {
        Some(data) => ErrorObjectOwned::owned(code, message, Some(data)),
        None => ErrorObjectOwned::owned(code, message, None::<()>),
    })))
}

/// The call of a pending `eth_call`/`eth_estimateGas` we answer: tag `pending`, no overrides.
/// A call without fee fields states zero fees: a node's `eth_call` runs it at gas price 0
/// (go-ethereum and reth alike), while inside `eth_simulateV1` op-reth would charge it the
/// pending block's base fee for all its gas (-38014 from a caller who cannot pay that).
fn pending_request(params: &Params<'_>) -> Option<Value> {
    let p: Vec<Value> = params.parse().ok()?;
    if p.len() > 2 || !is_pending_tag(p.get(1)) || !p[0].is_object() {
        return None;
    }
    let mut call = p.into_iter().next()?;
    let priced = ["gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"]
        .iter()
        .any(|f| call.get(f).is_some_and(|v| !v.is_null()));
    if !priced {
        call["maxFeePerGas"] = json!("0x0");
        call["maxPriorityFeePerGas"] = json!("0x0");
    }
    Some(call)
}

/// `eth_call` at `pending` while pending blocks are held: the upstream simulates the pending
/// blocks' transactions (each pending block one simulated block, on top of the head they
/// extend) and then the call, with `eth_simulateV1`. `None`: not a pending call we answer
/// (another tag, overrides given, no pending block, no `eth_simulateV1` upstream), so it is
/// forwarded as it is.
pub(super) async fn pending_call(ctx: &Context, params: &Params<'_>) -> Option<RpcResult> {
    let mut call = pending_request(params)?;
    let ((head, _), blocks) = execute::snapshot(ctx)?;
    // Gas stated, as a node's `eth_call` gives it (the request's, else the block gas limit),
    // within what op-reth lets the last pending block hold besides its transactions.
    let gas = requested_gas(&call, &blocks)?;
    call["gas"] = json!(U64::from(gas));
    let answer = match simulate_after(ctx, head, &blocks, call).await {
        Ok(None) => return None,
        Ok(Some(Simulated::Success(data, _))) => to_raw(&data),
        Ok(Some(Simulated::Failed(e))) => Err(e),
        Err(e) => Err(e.into()),
    };
    ctx.metrics.answered(Source::Pending);
    Some(answer)
}

/// The gas a pending call or estimate runs with at most: the request's `gas`, else the last
/// pending block's gas limit, no more than [`execute::tail_gas_allowance`]. `None`: an
/// unreadable `gas`.
fn requested_gas(call: &Value, blocks: &[PendingBlock]) -> Option<u64> {
    let last = blocks.last()?;
    let asked = match call.get("gas") {
        Some(g) => serde_json::from_value::<U64>(g.clone()).ok()?.to::<u64>(),
        None => last.header.gas_limit,
    };
    Some(asked.min(execute::tail_gas_allowance(blocks)))
}

/// Intrinsic gas of any transaction: no estimate is lower.
const TX_BASE_GAS: u64 = 21_000;

/// `eth_estimateGas` at `pending`, as [`pending_call`]: the least gas limit at which the call
/// succeeds after the pending transactions, by binary search over simulations (from what it
/// used at the cap, the request's `gas` or the pending block's gas limit).
pub(super) async fn pending_estimate(ctx: &Context, params: &Params<'_>) -> Option<RpcResult> {
    let call = pending_request(params)?;
    let ((head, _), blocks) = execute::snapshot(ctx)?;
    let cap = requested_gas(&call, &blocks)?;
    let with_gas = |gas: u64| {
        let mut c = call.clone();
        c["gas"] = json!(U64::from(gas));
        c
    };
    let run = |gas: u64| simulate_after(ctx, head, &blocks, with_gas(gas));
    let used = match run(cap).await {
        Ok(None) => return None,
        Ok(Some(Simulated::Success(_, used))) => used,
        Ok(Some(Simulated::Failed(e))) => return Some(Err(e)),
        Err(e) => return Some(Err(e.into())),
    };
    let mut lo = used.saturating_sub(1).max(TX_BASE_GAS - 1);
    let mut hi = cap;
    let optimistic = (used + 2_300).saturating_mul(64) / 63;
    let mut next = if optimistic < hi {
        optimistic
    } else {
        lo + (hi - lo) / 2
    };
    while lo + 1 < hi {
        match run(next).await {
            Ok(Some(Simulated::Success(..))) => hi = next,
            Ok(Some(Simulated::Failed(_)) | None) => lo = next,
            Err(e) => return Some(Err(e.into())),
        }
        next = lo + (hi - lo) / 2;
    }
    ctx.metrics.answered(Source::Pending);
    Some(to_raw(&json!(U64::from(hi))))
}
