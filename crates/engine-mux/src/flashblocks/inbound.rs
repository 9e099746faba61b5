//! The builder's flashblocks stream, kept by [`engine_api::ws`]'s reconnecting client
//! (`wss://` over rustls, connect timeout, pings with a pong deadline, jittered backoff). Text
//! frames, and binary frames holding UTF-8 JSON, are parsed and handed to the store; a
//! malformed frame is counted and skipped, the connection stays up.

use std::{ops::ControlFlow, sync::Arc, time::Duration};

use engine_api::{
    tls::TrustedRoots,
    ws::{BackoffConfig, Event, Frame, Handler, LifeSign, Liveness, Utf8Bytes, WsConfig},
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::{flashblocks::store::FlashblocksStore, metrics::Metrics};

/// How the inbound connection behaves.
#[derive(Clone, Debug)]
pub struct InboundConfig {
    /// The builder's flashblocks WebSocket URL.
    pub url: String,
    /// First reconnect delay.
    pub initial_reconnect: Duration,
    /// Largest reconnect delay.
    pub max_reconnect: Duration,
    /// Connection attempt timeout.
    pub connect_timeout: Duration,
    /// Ping interval.
    pub ping_interval: Duration,
    /// A pong later than this after the last one ends the connection.
    pub pong_timeout: Duration,
}

/// Largest flashblock message accepted (tungstenite's default is 64 MiB).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

impl InboundConfig {
    fn ws(&self, roots: TrustedRoots) -> WsConfig {
        WsConfig {
            url: self.url.clone(),
            connect_timeout: self.connect_timeout,
            backoff: BackoffConfig {
                initial: self.initial_reconnect,
                max: self.max_reconnect,
            },
            liveness: Liveness {
                ping_interval: Some(self.ping_interval),
                // The pong to a ping may take `pong_timeout`; the next ping goes out an interval later.
                timeout: self.pong_timeout + self.ping_interval,
                sign: LifeSign::Pong,
            },
            max_message_bytes: MAX_MESSAGE_BYTES,
            tls: None,
            roots,
        }
    }
}

/// Keeps a connection to the builder until shutdown.
pub(crate) async fn run(
    config: InboundConfig,
    roots: TrustedRoots,
    store: Arc<FlashblocksStore>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handler = Inbound { store, metrics };
    engine_api::ws::run(config.ws(roots), handler, async move {
        let _ = shutdown.changed().await;
    })
    .instrument(tracing::info_span!("builder_flashblocks"))
    .await;
}

struct Inbound {
    store: Arc<FlashblocksStore>,
    metrics: Arc<Metrics>,
}

impl Handler for Inbound {
    async fn on_event(&mut self, event: Event) -> ControlFlow<()> {
        match event {
            Event::Connected => self.metrics.flashblocks_connected(true),
            Event::Disconnected(_) => self.metrics.flashblocks_connected(false),
            Event::ReconnectScheduled(_) => self.metrics.flashblocks_reconnect(),
            Event::Frame(Frame::Text(text)) => self.handle(text),
            Event::Frame(Frame::Binary(bytes)) => match Utf8Bytes::try_from(bytes) {
                Ok(text) => self.handle(text),
                Err(_) => self.malformed("binary frame is not UTF-8 JSON"),
            },
        }
        ControlFlow::Continue(())
    }
}

impl Inbound {
    fn handle(&self, text: Utf8Bytes) {
        match engine_api::flashblocks::parse(text.as_bytes()) {
            Ok(fb) => {
                let (id, index) = (fb.payload_id, fb.index);
                let verdict = self.store.ingest(fb, text);
                tracing::debug!(%id, index, ?verdict, "flashblock");
            }
            Err(e) => self.malformed(&e.to_string()),
        }
    }

    fn malformed(&self, why: &str) {
        self.metrics.flashblock_rejected("malformed");
        tracing::warn!(%why, "skipping a malformed flashblocks frame");
    }
}
