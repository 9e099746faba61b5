//! The task that drains a builder's queue: builds (FCU with attributes), mirrored calls and
//! catch-up, one at a time, so a replay is ordered with everything else too.

use std::sync::Arc;

use alloy_rpc_types_engine::{ForkchoiceUpdated, PayloadStatus, PayloadStatusEnum};
use engine_api::{
    UpstreamError,
    flashblocks_p2p::{Authorization, FLASHBLOCKS_FCU_METHOD},
};
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::{
    catch_up::catch_up,
    handle::Builder,
    payload_ids::{BuildSlot, BuilderFcu},
    queue::{BuilderCall, BuilderQueueRx},
};
use crate::select::fallback::FallbackReason;

/// Drains the queue until shutdown (the call in progress is finished first).
pub(crate) async fn run(
    state: Arc<Builder>,
    mut rx: BuilderQueueRx,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let call = tokio::select! {
            call = rx.0.recv() => match call {
                Some(call) => call,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        state.metrics.queue_depth("builder", rx.0.len());
        let mode = state.mode.get();
        match call {
            BuilderCall::Build { slot, .. } if !mode.talks_to_builder() => {
                slot.settle(
                    BuilderFcu::Unavailable(FallbackReason::NoBuilderPayload),
                    |_| {},
                );
            }
            BuilderCall::Build { slot, .. } if !state.usable() => {
                state.metrics.queue_dropped("builder", "unhealthy");
                slot.settle(
                    BuilderFcu::Unavailable(FallbackReason::SkippedUnhealthy),
                    |_| {},
                );
            }
            // getPayload already decided without it (the queue was slow): don't build at all.
            BuilderCall::Build { slot, .. } if slot.outcome().is_some() => {
                state.metrics.queue_dropped("builder", "decided");
            }
            BuilderCall::Build { params, slot } => build(&state, params, &slot).await,
            BuilderCall::Mirror { .. } if !mode.talks_to_builder() => {}
            BuilderCall::Mirror { .. } if !state.usable() => {
                // Not lost: catch-up replays it once the builder is reachable again.
                state.metrics.queue_dropped("builder", "unhealthy");
            }
            BuilderCall::Mirror { method, params } => mirror(&state, method, params).await,
            BuilderCall::CatchUp if mode.talks_to_builder() => catch_up(&state).await,
            BuilderCall::CatchUp => {}
        }
    }
}

async fn build(state: &Builder, params: Box<RawValue>, slot: &BuildSlot) {
    let authorized = state
        .authorization(&slot.request)
        .and_then(|auth| with_authorization(&params, &auth));
    let res: Result<ForkchoiceUpdated, _> = match authorized {
        Some(params) => {
            state.metrics.flashblocks_p2p_authorization();
            state
                .call(FLASHBLOCKS_FCU_METHOD, &params, state.timeout())
                .await
        }
        None => {
            state
                .call("engine_forkchoiceUpdatedV3", &params, state.timeout())
                .await
        }
    };
    let (outcome, needs_catch_up) = match res {
        Ok(fcu) => match (&fcu.payload_status.status, fcu.payload_id) {
            (PayloadStatusEnum::Valid, Some(id)) => {
                state.health.ok();
                state.check_payload_id(&slot.request, id);
                (BuilderFcu::Building(id), false)
            }
            (PayloadStatusEnum::Syncing | PayloadStatusEnum::Accepted, _) => {
                tracing::info!(status = %fcu.payload_status.status, "builder is behind: no payload from it for this block");
                (BuilderFcu::Unavailable(FallbackReason::Syncing), true)
            }
            (status, _) => {
                tracing::warn!(%status, "builder refused forkchoiceUpdated with attributes");
                (BuilderFcu::Unavailable(FallbackReason::Error), false)
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "builder forkchoiceUpdated with attributes failed");
            state.note_error(&e);
            (
                BuilderFcu::Unavailable(FallbackReason::from_upstream(&e)),
                false,
            )
        }
    };
    // Answer getPayload first; the replay can take a while. The flashblocks build opens only
    // if getPayload has not decided yet: a block decided without the builder gets none of its
    // flashblocks re-published.
    let settled = slot.settle(outcome, |outcome| {
        if let (BuilderFcu::Building(id), Some(store)) = (outcome, &state.flashblocks) {
            store.begin(*id, slot.elected);
        }
    });
    if !settled {
        tracing::info!(
            ?outcome,
            "builder answered forkchoiceUpdated after getPayload had decided without it; ignored"
        );
    }
    if needs_catch_up {
        catch_up(state).await;
    }
}

/// op-node's `[forkchoiceState, payloadAttributes]`, unchanged, with `authorization` appended.
fn with_authorization(params: &RawValue, authorization: &Authorization) -> Option<Box<RawValue>> {
    let mut items: Vec<Box<RawValue>> = serde_json::from_str(params.get()).ok()?;
    items.truncate(2);
    items.push(serde_json::value::to_raw_value(authorization).ok()?);
    serde_json::value::to_raw_value(&items).ok()
}

async fn mirror(state: &Builder, method: &'static str, params: Box<RawValue>) {
    let status = if method.starts_with("engine_forkchoiceUpdated") {
        state
            .call::<ForkchoiceUpdated>(method, &params, state.timeout())
            .await
            .map(|f| f.payload_status.status)
    } else {
        state
            .call::<PayloadStatus>(method, &params, state.timeout())
            .await
            .map(|s| s.status)
    };
    match status {
        Ok(PayloadStatusEnum::Valid | PayloadStatusEnum::Accepted) => state.health.ok(),
        Ok(PayloadStatusEnum::Syncing) => {
            tracing::info!(
                method,
                "builder answered SYNCING to a mirrored call; catching it up"
            );
            catch_up(state).await;
        }
        Ok(PayloadStatusEnum::Invalid { validation_error }) => {
            // op-node's own chain is INVALID to the builder: it has diverged and cannot build.
            tracing::warn!(method, %validation_error, "builder rejected a mirrored call as INVALID");
            state.health.outcome(false);
        }
        Err(e) => {
            tracing::warn!(method, error = %e, "mirrored call to the builder failed");
            state.note_error(&e);
            if matches!(e, UpstreamError::Rpc { .. }) {
                state.health.outcome(false);
            }
        }
    }
}
