//! The JSON-RPC methods: pending-tag answers from the pending state, `op_supportedCapabilities`,
//! `eth_subscribe("newFlashblocks")`, and (for WebSocket clients, which the raw HTTP proxy
//! cannot serve) forwarding of the common read methods.

use std::{sync::Arc, time::Instant};

use alloy_primitives::{Address, B256, U64, U256};
use engine_api::{
    UpstreamError,
    codes::{INTERNAL_ERROR, INVALID_PARAMS},
};
use jsonrpsee::{
    PendingSubscriptionSink, RpcModule, SubscriptionMessage,
    core::SubscriptionResult,
    types::{ErrorObjectOwned, Params},
};
use serde_json::{Value, json, value::RawValue};
use tokio::sync::broadcast;

use crate::{
    context::Context,
    execute::{self, Read, ReadValue, SimulateError},
    metrics::Source,
    pending::{
        block::{BalanceEffect, PendingBlock},
        render,
        state::{PendingBalance, PendingNonce, balance_over},
    },
};
use rpc_objects::fees::L1_BLOCK_PREDEPLOY;

/// geth's and reth's code for a call that reverted.
const EXECUTION_REVERTED: i32 = 3;

/// Capabilities `op_supportedCapabilities` reports.
pub const CAPABILITIES: [&str; 1] = ["flashblocksv1"];
/// Subscription kind for accepted flashblocks.
pub const NEW_FLASHBLOCKS: &str = "newFlashblocks";

/// Methods answered here when they ask about pending state.
pub const PENDING_METHODS: [&str; 10] = [
    "eth_call",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getLogs",
    "eth_estimateGas",
    "eth_getBlockByNumber",
    "eth_getTransactionReceipt",
    "eth_getTransactionByHash",
    "eth_getBalance",
    "eth_getTransactionCount",
];

/// Methods forwarded for WebSocket clients (HTTP clients get every method proxied raw).
pub const WS_FORWARDED: [&str; 17] = [
    "eth_blockNumber",
    "eth_chainId",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_feeHistory",
    "eth_sendRawTransaction",
    "eth_getBlockByHash",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByNumber",
    "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getProof",
    "eth_syncing",
    "net_version",
    "web3_clientVersion",
    "eth_accounts",
];

/// Why a call failed; mapped once onto JSON-RPC error objects.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The upstream answered with an error: passed through unchanged.
    #[error("upstream error")]
    Upstream(ErrorObjectOwned),
    /// The upstream could not be reached or answered garbage.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The subscription kind is not served.
    #[error("unsupported subscription {0:?}")]
    Subscription(String),
}

impl From<UpstreamError> for RpcError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Rpc { error, .. } => Self::Upstream(error),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Upstream(obj) => obj,
            RpcError::Unavailable(_) => {
                ErrorObjectOwned::owned(INTERNAL_ERROR, e.to_string(), None::<()>)
            }
            RpcError::Subscription(_) => {
                ErrorObjectOwned::owned(INVALID_PARAMS, e.to_string(), None::<()>)
            }
        }
    }
}

type RpcResult = Result<Box<RawValue>, ErrorObjectOwned>;

fn to_raw(v: &Value) -> RpcResult {
    serde_json::value::to_raw_value(v).map_err(|e| RpcError::Unavailable(e.to_string()).into())
}

/// A JSON-RPC response: `result` kept raw (a `null` result is a result, not a missing one).
#[derive(Debug, serde::Deserialize)]
struct Envelope {
    #[serde(default = "null_result")]
    result: Box<RawValue>,
    #[serde(default)]
    error: Option<ErrorObjectOwned>,
}

fn null_result() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap_or_default()
}

/// Splits a single JSON-RPC response body into its raw result or its error object.
pub fn parse_response(body: &[u8]) -> Result<Box<RawValue>, RpcError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| RpcError::Unavailable(format!("malformed upstream response: {e}")))?;
    match envelope.error {
        Some(error) => Err(RpcError::Upstream(error)),
        None => Ok(envelope.result),
    }
}

/// Forwards `method` with the caller's params text untouched.
pub async fn forward(ctx: &Context, method: &str, params: &Params<'_>) -> RpcResult {
    let params = params.as_str().unwrap_or("[]");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":{},"params":{params}}}"#,
        json!(method)
    );
    ctx.metrics.answered(Source::Upstream);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let res = ctx
        .upstream
        .forward(&headers, body.into(), ctx.config.upstream.timeout)
        .await
        .map_err(RpcError::from)?;
    if res.status() != http::StatusCode::OK {
        return Err(RpcError::Unavailable(format!("upstream status {}", res.status())).into());
    }
    Ok(parse_response(res.body())?)
}

fn answered(ctx: &Context, v: &Value) -> RpcResult {
    ctx.metrics.answered(Source::Pending);
    to_raw(v)
}

/// Whether a block-tag parameter is `"pending"`.
pub fn is_pending_tag(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str) == Some("pending")
}

fn pending_block(ctx: &Context, params: &Params<'_>) -> Option<Value> {
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

fn by_hash(
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
async fn pending_receipt(ctx: &Context, params: &Params<'_>) -> Option<Value> {
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
async fn pending_balance(ctx: &Context, params: &Params<'_>) -> Option<Value> {
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
async fn pending_state_read(ctx: &Context, params: &Params<'_>, storage: bool) -> Option<Value> {
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

async fn pending_nonce(ctx: &Context, params: &Params<'_>) -> Option<Value> {
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
async fn pending_call(ctx: &Context, params: &Params<'_>) -> Option<RpcResult> {
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
async fn pending_estimate(ctx: &Context, params: &Params<'_>) -> Option<RpcResult> {
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

/// Builds the RPC module.
pub fn module(
    ctx: Arc<Context>,
) -> Result<RpcModule<Arc<Context>>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(ctx);
    m.register_async_method("eth_getBlockByNumber", |p, ctx, _| async move {
        match pending_block(&ctx, &p) {
            Some(v) => answered(&ctx, &v),
            None => forward(&ctx, "eth_getBlockByNumber", &p).await,
        }
    })?;
    m.register_async_method("eth_getTransactionReceipt", |p, ctx, _| async move {
        match pending_receipt(&ctx, &p).await {
            Some(v) => answered(&ctx, &v),
            None => forward(&ctx, "eth_getTransactionReceipt", &p).await,
        }
    })?;
    m.register_async_method("eth_getTransactionByHash", |p, ctx, _| async move {
        match by_hash(&ctx, &p, render::transaction_json) {
            Some(v) => answered(&ctx, &v),
            None => forward(&ctx, "eth_getTransactionByHash", &p).await,
        }
    })?;
    m.register_async_method("eth_getBalance", |p, ctx, _| async move {
        match pending_balance(&ctx, &p).await {
            Some(v) => answered(&ctx, &v),
            None => forward(&ctx, "eth_getBalance", &p).await,
        }
    })?;
    m.register_async_method("eth_getTransactionCount", |p, ctx, _| async move {
        match pending_nonce(&ctx, &p).await {
            Some(v) => answered(&ctx, &v),
            None => forward(&ctx, "eth_getTransactionCount", &p).await,
        }
    })?;
    m.register_async_method("eth_call", |p, ctx, _| async move {
        match pending_call(&ctx, &p).await {
            Some(answer) => answer,
            None => forward(&ctx, "eth_call", &p).await,
        }
    })?;
    m.register_async_method("eth_estimateGas", |p, ctx, _| async move {
        match pending_estimate(&ctx, &p).await {
            Some(answer) => answer,
            None => forward(&ctx, "eth_estimateGas", &p).await,
        }
    })?;
    m.register_async_method("eth_getCode", |p, ctx, _| async move {
        match pending_state_read(&ctx, &p, false).await {
            Some(v) => answered(&ctx, &v),
            None => forward(&ctx, "eth_getCode", &p).await,
        }
    })?;
    m.register_async_method("eth_getStorageAt", |p, ctx, _| async move {
        match pending_state_read(&ctx, &p, true).await {
            Some(v) => answered(&ctx, &v),
            None => forward(&ctx, "eth_getStorageAt", &p).await,
        }
    })?;
    m.register_async_method("eth_getLogs", |p, ctx, _| async move {
        match crate::logs::pending_logs(&ctx, &p).await {
            Some(answer) => answer,
            None => forward(&ctx, "eth_getLogs", &p).await,
        }
    })?;
    m.register_method("op_supportedCapabilities", |_, _, _| CAPABILITIES)?;
    for method in WS_FORWARDED {
        m.register_async_method(method, move |p, ctx, _| async move {
            forward(&ctx, method, &p).await
        })?;
    }
    m.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |p, pending, ctx, _| async move { subscribe(p, pending, Arc::clone(&ctx)).await },
    )?;
    Ok(m)
}

async fn subscribe(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    ctx: Arc<Context>,
) -> SubscriptionResult {
    let kind: String = params.sequence().next().unwrap_or_default();
    if kind != NEW_FLASHBLOCKS {
        pending
            .reject(ErrorObjectOwned::from(RpcError::Subscription(kind)))
            .await;
        return Ok(());
    }
    let mut frames = ctx.flashblocks.subscribe();
    let sink = pending.accept().await?;
    ctx.metrics
        .set_subscribers(ctx.flashblocks.receiver_count());
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(text) => {
                    let Ok(raw) = RawValue::from_string(text.to_string()) else { continue };
                    if sink.send(SubscriptionMessage::from(raw)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    ctx.metrics.subscriber_dropped();
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = sink.closed() => break,
        }
    }
    drop(frames);
    ctx.metrics
        .set_subscribers(ctx.flashblocks.receiver_count());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_results_are_results_and_errors_pass_through() {
        let r = parse_response(br#"{"jsonrpc":"2.0","id":1,"result":null}"#).unwrap();
        assert_eq!(r.get(), "null");
        let r = parse_response(br#"{"jsonrpc":"2.0","id":1,"result":{"a":[1, 2]}}"#).unwrap();
        assert_eq!(r.get(), r#"{"a":[1, 2]}"#);
        let e =
            parse_response(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x"}}"#)
                .unwrap_err();
        assert!(matches!(e, RpcError::Upstream(obj) if obj.code() == -32000));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn errors_map_to_spec_codes_and_upstream_errors_pass_through() {
        let upstream = ErrorObjectOwned::owned(-32000, "nonce too low", Some(json!({"x": 1})));
        let mapped: ErrorObjectOwned = RpcError::Upstream(upstream.clone()).into();
        assert_eq!(mapped, upstream);
        let mapped: ErrorObjectOwned = RpcError::Unavailable("down".into()).into();
        assert_eq!(mapped.code(), -32603);
        assert_eq!(mapped.message(), "upstream unavailable: down");
        let mapped: ErrorObjectOwned = RpcError::Subscription("logs".into()).into();
        assert_eq!(mapped.code(), -32602);
        assert_eq!(mapped.message(), "unsupported subscription \"logs\"");
    }
}
