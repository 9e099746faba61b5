//! The builder's flashblocks stream: connect (with a timeout; `wss://` over rustls with
//! [`engine_api::tls`]'s configuration), read text or binary frames, ping on an interval and drop
//! a connection whose pong is late, reconnect with jittered exponential backoff. A malformed
//! frame is counted and skipped; the connection stays up. A certificate that is not accepted is
//! logged as an error naming the URL and the problem on every attempt: it will not fix itself.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::watch;
use tokio_tungstenite::{
    Connector,
    tungstenite::{Bytes, Message, Utf8Bytes, protocol::WebSocketConfig},
};

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

/// Keeps a connection to the builder until shutdown.
pub async fn run(
    config: InboundConfig,
    store: Arc<FlashblocksStore>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = config.initial_reconnect;
    let mut connector = None;
    loop {
        if connector.is_none() {
            // Built once; a wss URL without any trusted root retries at the next attempt.
            connector = connector_for(&config.url);
        }
        if let Some(connector) = connector.clone() {
            match tokio::time::timeout(
                config.connect_timeout,
                tokio_tungstenite::connect_async_tls_with_config(
                    config.url.as_str(),
                    Some(ws_config()),
                    true,
                    Some(connector),
                ),
            )
            .await
            {
                Ok(Ok((ws, _))) => {
                    tracing::info!(url = %config.url, "connected to the builder's flashblocks stream");
                    metrics.flashblocks_connected(true);
                    delay = config.initial_reconnect;
                    let ended = session(ws, &config, &store, &metrics, &mut shutdown).await;
                    metrics.flashblocks_connected(false);
                    match ended {
                        SessionEnd::Shutdown => return,
                        SessionEnd::Lost(why) => {
                            tracing::warn!(url = %config.url, %why, "flashblocks stream lost; reconnecting")
                        }
                    }
                }
                Ok(Err(e)) => match engine_api::tls::failure(&e) {
                    // A certificate problem will not go away by retrying: say so loudly.
                    Some(tls) => {
                        tracing::error!(url = %config.url, error = %engine_api::tls::explain(tls), retry_in = ?delay, "TLS to the builder's flashblocks stream failed")
                    }
                    None => {
                        tracing::warn!(url = %config.url, error = %e, retry_in = ?delay, "cannot connect to the builder's flashblocks stream")
                    }
                },
                Err(_) => {
                    tracing::warn!(url = %config.url, timeout = ?config.connect_timeout, "flashblocks connect timed out")
                }
            }
        }
        metrics.flashblocks_reconnect();
        // Full jitter on the upper half so a fleet of instances does not reconnect in lockstep.
        let jittered = delay.mul_f64(rand::rng().random_range(0.5..=1.0));
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(config.max_reconnect);
    }
}

/// rustls for `wss://` (trusting the system's roots or `SSL_CERT_FILE`), plain TCP otherwise;
/// `None` (logged) when no TLS configuration can be built.
fn connector_for(url: &str) -> Option<Connector> {
    if !url.starts_with("wss://") {
        return Some(Connector::Plain);
    }
    match engine_api::tls::client_config() {
        Ok(tls) => Some(Connector::Rustls(tls)),
        Err(e) => {
            tracing::error!(%url, error = %e, "cannot connect to the builder's flashblocks stream over TLS");
            None
        }
    }
}

/// Largest flashblock message accepted (tungstenite's default is 64 MiB).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

async fn session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    config: &InboundConfig,
    store: &FlashblocksStore,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_pong = Instant::now();
    loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => handle(text, store, metrics),
                Some(Ok(Message::Binary(bytes))) => match Utf8Bytes::try_from(bytes) {
                    Ok(text) => handle(text, store, metrics),
                    Err(_) => malformed(metrics, "binary frame is not UTF-8 JSON"),
                },
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Close(frame))) => return SessionEnd::Lost(format!("closed by the builder: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                None => return SessionEnd::Lost("stream ended".into()),
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > config.pong_timeout + config.ping_interval {
                    return SessionEnd::Lost(format!("no pong for {:?}", last_pong.elapsed()));
                }
                if let Err(e) = tx.send(Message::Ping(Bytes::new())).await {
                    return SessionEnd::Lost(e.to_string());
                }
            }
            _ = shutdown.changed() => {
                let _ = tx.send(Message::Close(None)).await;
                return SessionEnd::Shutdown;
            }
        }
    }
}

fn handle(text: Utf8Bytes, store: &FlashblocksStore, metrics: &Metrics) {
    match engine_api::flashblocks::parse(text.as_bytes()) {
        Ok(fb) => {
            let (id, index) = (fb.payload_id, fb.index);
            let verdict = store.ingest(fb, text);
            tracing::debug!(%id, index, ?verdict, "flashblock");
        }
        Err(e) => malformed(metrics, &e.to_string()),
    }
}

fn malformed(metrics: &Metrics, why: &str) {
    metrics.flashblock_rejected("malformed");
    tracing::warn!(%why, "skipping a malformed flashblocks frame");
}
