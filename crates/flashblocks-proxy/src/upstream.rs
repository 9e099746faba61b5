//! One reconnecting client per upstream: jittered exponential backoff, ping/pong liveness, and
//! every received flashblock forwarded to the fan-out task (which de-duplicates across upstreams).

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::{sync::mpsc, time::Instant};
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};
use tracing::{debug, info, warn};
use url::Url;

use crate::{
    config::UpstreamConfig,
    dedup::FlashblockKey,
    fanout::{self, Inbound, MAX_MESSAGE_BYTES},
    metrics::UpstreamMetrics,
};

/// First reconnect delay.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Bound on the connect + handshake time of one attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connected session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    /// The upstream closed the connection.
    #[error("closed by upstream")]
    Closed,
    /// Neither a pong nor a message for longer than the pong timeout.
    #[error("no pong within {0:?}")]
    PongTimeout(Duration),
    /// Transport or protocol error.
    #[error("websocket error: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The fan-out task is gone (shutdown).
    #[error("fan-out stopped")]
    Shutdown,
}

/// Exponential backoff with full jitter, capped at `max`.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at [`INITIAL_BACKOFF`] (or `max` if smaller).
    pub fn new(max: Duration) -> Self {
        Self {
            next: INITIAL_BACKOFF.min(max),
            max,
        }
    }

    /// The delay before the next attempt: uniform in [next/2, next], then doubles.
    pub fn delay(&mut self) -> Duration {
        let cur = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = cur / 2;
        half + rand::rng().random_range(Duration::ZERO..=cur - half)
    }

    /// Back to the initial delay after a successful connection.
    pub fn reset(&mut self) {
        self.next = INITIAL_BACKOFF.min(self.max);
    }
}

/// Runs the client for upstream `index` forever (until the fan-out side is dropped).
pub async fn run(
    index: usize,
    url: Url,
    cfg: UpstreamConfig,
    tx: mpsc::Sender<Inbound>,
    metrics: UpstreamMetrics,
) {
    let mut backoff = Backoff::new(cfg.max_backoff);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    loop {
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true),
        )
        .await;
        match attempt {
            Ok(Ok((ws, _))) => {
                info!(upstream = index, %url, "upstream connected");
                metrics.connected.set(1.0);
                metrics.connects.increment(1);
                backoff.reset();
                let end = session(index, ws, &cfg, &tx, &metrics).await;
                metrics.connected.set(0.0);
                match end {
                    SessionEnd::Shutdown => return,
                    e => warn!(upstream = index, %url, reason = %e, "upstream disconnected"),
                }
            }
            Ok(Err(e)) => debug!(upstream = index, %url, error = %e, "upstream connect failed"),
            Err(_) => debug!(upstream = index, %url, "upstream connect timed out"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff.delay()).await;
    }
}

async fn session<S>(
    index: usize,
    ws: tokio_tungstenite::WebSocketStream<S>,
    cfg: &UpstreamConfig,
    tx: &mpsc::Sender<Inbound>,
    metrics: &UpstreamMetrics,
) -> SessionEnd
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval(cfg.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Any traffic proves the upstream alive, not only pongs.
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let data = match msg {
                    None => return SessionEnd::Closed,
                    Some(Err(e)) => return e.into(),
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) => return SessionEnd::Closed,
                    Some(Ok(_)) => {
                        // Ping (answered by tungstenite) or pong.
                        last_seen = Instant::now();
                        continue;
                    }
                };
                last_seen = Instant::now();
                metrics.messages.increment(1);
                let Some(json) = fanout::normalize(data) else {
                    metrics.invalid.increment(1);
                    continue;
                };
                let key = FlashblockKey::parse(&json);
                if key.is_none() {
                    metrics.invalid.increment(1);
                }
                if tx.send(Inbound { upstream: index, key, json }).await.is_err() {
                    return SessionEnd::Shutdown;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > cfg.pong_timeout {
                    return SessionEnd::PongTimeout(cfg.pong_timeout);
                }
                if let Err(e) = sink.send(Message::Ping(Bytes::new())).await {
                    return e.into();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(1000));
        let mut prev_cap = INITIAL_BACKOFF;
        for _ in 0..10 {
            let d = b.delay();
            assert!(
                d >= prev_cap / 2 && d <= prev_cap,
                "{d:?} outside [{:?}, {prev_cap:?}]",
                prev_cap / 2
            );
            prev_cap = (prev_cap * 2).min(Duration::from_millis(1000));
        }
        b.reset();
        assert!(b.delay() <= INITIAL_BACKOFF);
    }
}
