//! The flashblocks stream, kept by [`engine_api::ws`]'s reconnecting client (`ws://` or
//! `wss://`, jittered exponential backoff, no frame within the idle timeout drops the
//! connection): every frame is applied to the pending state and accepted flashblocks are fanned
//! out to subscribers. While disconnected no pending state is held, so answers come from the
//! upstream.

use std::{ops::ControlFlow, sync::Arc};

use engine_api::{
    tls::TrustedRoots,
    ws::{BackoffConfig, Event, Frame, Handler, LifeSign, Liveness, WsConfig},
};
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use tokio::sync::watch;
use tracing::Instrument;

use crate::{
    config::StreamConfig,
    context::Context,
    metrics::{Rejection, unix_ms},
    pending::state::Applied,
};

/// Runs the client until `stop` flips.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let config = ws_config(&ctx.config.stream, &ctx.config.tls_roots);
    engine_api::ws::run(config, Stream { ctx }, async move {
        let _ = stop.changed().await;
    })
    .instrument(tracing::info_span!("flashblocks_stream"))
    .await;
}

/// The shared client's configuration: the idle timeout bounds connecting too, and no pings are
/// sent (the server's frames, pings included, are the sign of life).
pub fn ws_config(config: &StreamConfig, roots: &TrustedRoots) -> WsConfig {
    WsConfig {
        url: config.url.clone(),
        connect_timeout: config.idle_timeout,
        backoff: BackoffConfig {
            initial: config.reconnect_min,
            max: config.reconnect_max,
        },
        liveness: Liveness {
            ping_interval: None,
            timeout: config.idle_timeout,
            sign: LifeSign::AnyFrame,
        },
        max_message_bytes: config.max_frame_bytes,
        tls: None,
        roots: roots.clone(),
    }
}

struct Stream {
    ctx: Arc<Context>,
}

impl Handler for Stream {
    async fn on_event(&mut self, event: Event) -> ControlFlow<()> {
        let ctx = &self.ctx;
        match event {
            Event::Connected => ctx.metrics.set_connected(true),
            Event::Disconnected(_) => {
                ctx.metrics.set_connected(false);
                ctx.write(|s| s.clear());
            }
            Event::ReconnectScheduled(_) => {}
            Event::Frame(frame) => {
                let binary = matches!(frame, Frame::Binary(_));
                match engine_types::flashblocks::frame_json(
                    binary,
                    frame.as_bytes(),
                    ctx.config.stream.max_frame_bytes,
                ) {
                    Ok(json) => handle_frame(ctx, &json),
                    Err(e) => {
                        // Garbage or a decompression bomb: counted and skipped.
                        tracing::debug!(%e, "flashblocks frame skipped");
                        ctx.metrics.rejected(Rejection::Malformed);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Applies one frame and, when accepted, hands it to subscribers.
pub fn handle_frame(ctx: &Context, json: &[u8]) {
    // Tolerates metadata without receipts or balances (Base's streams).
    let fb = match engine_types::flashblocks::parse(json) {
        Ok(fb) => fb,
        Err(e) => {
            tracing::debug!(%e, "flashblock frame is not an OpFlashblockPayload");
            ctx.metrics.rejected(Rejection::Malformed);
            return;
        }
    };
    record_lag(ctx, &fb);
    let result = ctx.write(|s| {
        let applied = s.ingest(&fb)?;
        let waiting = fb.index == 0
            && s.tip(std::time::Instant::now())
                .is_none_or(|t| t.number() < fb.metadata.block_number);
        Ok((applied, waiting))
    });
    match result {
        Ok((applied, waiting)) => {
            if waiting {
                // Held for a parent the head poll has not seen yet: look now, not next tick.
                ctx.head_nudge.notify_one();
            }
            ctx.metrics.applied();
            // Execute the new pending chain before anyone asks for its receipts.
            ctx.execute_nudge.notify_one();
            if applied == Applied::Replaced {
                ctx.metrics.reorged();
            }
            if let Ok(text) = std::str::from_utf8(json) {
                // No subscriber is not an error.
                let _ = ctx.flashblocks.send(Arc::from(text));
            }
        }
        Err((why, e)) => {
            tracing::debug!(%e, index = fb.index, block = fb.metadata.block_number, "flashblock rejected");
            ctx.metrics.rejected(why);
        }
    }
}

fn record_lag(ctx: &Context, fb: &OpFlashblockPayload) {
    // Only index 0 says which timestamp its block has; later ones refresh the frame age.
    ctx.metrics
        .frame_arrived(unix_ms(), fb.base.as_ref().map(|b| b.timestamp));
}
