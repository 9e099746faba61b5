//! The flashblocks WebSocket client: connects, applies every frame to the pending state,
//! fans accepted flashblocks out to subscribers, and reconnects with jittered exponential
//! backoff. While disconnected no pending state is held, so answers come from the upstream.

use std::{io::Read, sync::Arc, time::Duration};

use futures::StreamExt;
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use rand::Rng;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};

use crate::{
    config::StreamConfig,
    context::Context,
    metrics::{Rejection, unix_ms},
    pending::state::Applied,
};

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Connecting failed.
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The stream URL.
        url: String,
        /// The WebSocket error.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// Connecting took longer than the idle timeout.
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(String),
    /// Reading failed.
    #[error("reading: {0}")]
    Read(Box<tokio_tungstenite::tungstenite::Error>),
    /// No frame within the idle timeout.
    #[error("no frame for {0:?}")]
    Idle(Duration),
    /// The server closed the connection.
    #[error("closed by the server")]
    Closed,
}

/// Runs the client until `stop` flips.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let config = ctx.config.stream.clone();
    let mut attempt: u32 = 0;
    loop {
        let result = tokio::select! {
            r = connection(&ctx, &config, &mut attempt) => r,
            _ = stop.changed() => return,
        };
        ctx.metrics.set_connected(false);
        ctx.write(|s| s.clear());
        if let Err(e) = result {
            tracing::warn!(%e, "flashblocks stream down");
        }
        let delay = backoff(&config, attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Jittered exponential backoff: `min * 2^attempt` capped at `max`, then scaled by a random
/// factor in [0.5, 1] so many instances do not reconnect in lockstep.
pub fn backoff(config: &StreamConfig, attempt: u32) -> Duration {
    let exp = config
        .reconnect_min
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let capped = exp.min(config.reconnect_max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

async fn connection(
    ctx: &Context,
    config: &StreamConfig,
    attempt: &mut u32,
) -> Result<(), StreamError> {
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes));
    let connect =
        tokio_tungstenite::connect_async_with_config(config.url.as_str(), Some(ws_config), false);
    let (mut ws, _) = tokio::time::timeout(config.idle_timeout, connect)
        .await
        .map_err(|_| StreamError::ConnectTimeout(config.url.clone()))?
        .map_err(|e| StreamError::Connect {
            url: config.url.clone(),
            source: Box::new(e),
        })?;
    tracing::info!(url = %config.url, "flashblocks stream connected");
    ctx.metrics.set_connected(true);
    *attempt = 0;
    loop {
        let next = tokio::time::timeout(config.idle_timeout, ws.next())
            .await
            .map_err(|_| StreamError::Idle(config.idle_timeout))?;
        match next {
            None | Some(Ok(Message::Close(_))) => return Err(StreamError::Closed),
            Some(Err(e)) => return Err(StreamError::Read(Box::new(e))),
            Some(Ok(Message::Text(text))) => handle_frame(ctx, text.as_bytes()),
            Some(Ok(Message::Binary(bytes))) => match decode_binary(&bytes, config.max_frame_bytes)
            {
                Some(json) => handle_frame(ctx, &json),
                None => ctx.metrics.rejected(Rejection::Malformed),
            },
            // Pings are answered by tungstenite itself.
            Some(Ok(_)) => {}
        }
    }
}

/// Binary frames carry JSON either as is or Brotli-compressed (as rollup-boost's proxy
/// sends them). Decompression is bounded by the frame limit.
fn decode_binary(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    if bytes.first() == Some(&b'{') {
        return Some(bytes.to_vec());
    }
    let mut out = Vec::new();
    let reader = brotli::Decompressor::new(bytes, 4096);
    reader.take(limit as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= limit).then_some(out)
}

/// Applies one frame and, when accepted, hands it to subscribers.
pub fn handle_frame(ctx: &Context, json: &[u8]) {
    let fb: OpFlashblockPayload = match serde_json::from_slice(json) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StreamConfig {
        StreamConfig {
            url: "ws://x".into(),
            max_frame_bytes: 1 << 20,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let c = config();
        for attempt in 0..40 {
            let d = backoff(&c, attempt);
            let ceiling = c
                .reconnect_min
                .saturating_mul(1 << attempt.min(20))
                .min(c.reconnect_max);
            assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn binary_frames_decode_plain_or_brotli_within_the_limit() {
        let json = br#"{"a":1}"#;
        assert_eq!(decode_binary(json, 100).unwrap(), json);
        let mut compressed = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut compressed, 4096, 5, 22);
            std::io::Write::write_all(&mut w, json).unwrap();
        }
        assert_eq!(decode_binary(&compressed, 100).unwrap(), json);
        assert!(decode_binary(&compressed, 3).is_none());
        assert!(decode_binary(&[0xff, 0x00, 0x13], 100).is_none());
    }
}
