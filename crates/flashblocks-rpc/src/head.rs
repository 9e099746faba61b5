//! Polls the upstream's latest block so pending blocks it reached are dropped at once and
//! pending answers always build on it.

use std::{sync::Arc, time::Instant};

use alloy_primitives::{B256, U64};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::context::Context;

#[derive(Debug, Deserialize)]
struct HeadFields {
    number: U64,
    hash: B256,
}

/// Polls until `stop` flips.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(ctx.config.upstream.head_poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = ctx.head_nudge.notified() => {}
            _ = stop.changed() => return,
        }
        poll_once(&ctx).await;
    }
}

/// One poll; failures are counted, and pending answers stop once the last success is older
/// than the configured maximum age.
pub async fn poll_once(ctx: &Context) {
    let started = Instant::now();
    let result = ctx
        .upstream
        .call::<Option<HeadFields>>(
            "eth_getBlockByNumber",
            &json!(["latest", false]),
            ctx.config.upstream.timeout,
        )
        .await;
    match result {
        Ok(Some(head)) => {
            let number = head.number.to::<u64>();
            ctx.metrics.set_head(number);
            // Stamped with the request's start: the head was at least this new then.
            ctx.write(|s| s.set_head(number, head.hash, started));
        }
        Ok(None) => ctx.metrics.head_poll_failed(),
        Err(e) => {
            tracing::debug!(%e, "upstream head poll failed");
            ctx.metrics.head_poll_failed();
        }
    }
}
