//! The JSON-RPC methods: pending-tag answers from the pending state, `op_supportedCapabilities`,
//! `eth_subscribe("newFlashblocks")`, and (for WebSocket clients, which the raw HTTP proxy
//! cannot serve) forwarding of the common read methods.

mod answer;
mod call;
mod logs;
mod state;

use std::sync::Arc;

use jsonrpsee::{
    PendingSubscriptionSink, RpcModule, SubscriptionMessage,
    core::SubscriptionResult,
    types::{ErrorObjectOwned, Params},
};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use self::{
    answer::answered,
    call::{pending_call, pending_estimate},
    logs::pending_logs,
    state::{
        by_hash, pending_balance, pending_block, pending_nonce, pending_receipt, pending_state_read,
    },
};
pub use self::{
    answer::{RpcError, forward, is_pending_tag, parse_response},
    logs::reaches_pending,
};
use crate::{context::Context, pending::render};

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
        match pending_logs(&ctx, &p).await {
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
