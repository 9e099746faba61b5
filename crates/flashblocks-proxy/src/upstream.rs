//! One reconnecting client per upstream ([`engine_api::ws`]: jittered exponential backoff,
//! connect timeout, pings with any traffic counting as life, `wss://` over rustls), every
//! received flashblock forwarded to the fan-out task (which de-duplicates across upstreams).

use std::{ops::ControlFlow, time::Duration};

use engine_api::ws::{BackoffConfig, Event, Handler, LifeSign, Liveness, WsConfig};
use tokio::sync::mpsc;
use tracing::Instrument;
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

/// The shared client's configuration for one upstream.
pub fn ws_config(url: &Url, cfg: &UpstreamConfig) -> WsConfig {
    WsConfig {
        url: url.to_string(),
        connect_timeout: CONNECT_TIMEOUT,
        backoff: BackoffConfig {
            initial: INITIAL_BACKOFF,
            max: cfg.max_backoff,
        },
        liveness: Liveness {
            ping_interval: Some(cfg.ping_interval),
            // Any traffic proves the upstream alive, not only pongs.
            timeout: cfg.pong_timeout,
            sign: LifeSign::AnyFrame,
        },
        max_message_bytes: MAX_MESSAGE_BYTES,
        // Loaded at the first `wss://` attempt; should it fail, every attempt reports why.
        tls: None,
        roots: cfg.tls_roots.clone(),
    }
}

/// Runs the client for upstream `index` until the fan-out side is dropped.
pub async fn run(
    index: usize,
    url: Url,
    cfg: UpstreamConfig,
    tx: mpsc::Sender<Inbound>,
    metrics: UpstreamMetrics,
) {
    let fanout_gone = tx.clone();
    let handler = Upstream { index, tx, metrics };
    engine_api::ws::run(ws_config(&url, &cfg), handler, async move {
        fanout_gone.closed().await
    })
    .instrument(tracing::info_span!("upstream", index))
    .await;
}

struct Upstream {
    index: usize,
    tx: mpsc::Sender<Inbound>,
    metrics: UpstreamMetrics,
}

impl Handler for Upstream {
    async fn on_event(&mut self, event: Event) -> ControlFlow<()> {
        let frame = match event {
            Event::Connected => {
                self.metrics.connected.set(1.0);
                self.metrics.connects.increment(1);
                return ControlFlow::Continue(());
            }
            Event::Disconnected(_) => {
                self.metrics.connected.set(0.0);
                return ControlFlow::Continue(());
            }
            Event::ReconnectScheduled(_) => return ControlFlow::Continue(()),
            Event::Frame(frame) => frame,
        };
        self.metrics.messages.increment(1);
        let json = match fanout::normalize(frame) {
            Ok(json) => json,
            Err(e) => {
                // Garbage or a decompression bomb: counted and skipped.
                tracing::debug!(%e, "upstream frame skipped");
                self.metrics.invalid.increment(1);
                return ControlFlow::Continue(());
            }
        };
        let key = FlashblockKey::parse(&json);
        if key.is_none() {
            self.metrics.invalid.increment(1);
        }
        let inbound = Inbound {
            upstream: self.index,
            key,
            json,
        };
        match self.tx.send(inbound).await {
            Ok(()) => ControlFlow::Continue(()),
            // The fan-out task is gone (shutdown).
            Err(_) => ControlFlow::Break(()),
        }
    }
}
