//! The one reconnecting WebSocket client every crate uses for flashblocks streams: connect with
//! a timeout (`wss://` over rustls with [`crate::tls`]'s configuration), hand every text or
//! binary frame to the caller as received, keep the connection honest with pings and a liveness
//! deadline, and reconnect with jittered exponential backoff until shutdown.
//!
//! The client decodes nothing and owns no metrics: it reports [`Event`]s to a [`Handler`], so
//! each crate parses frames its own way and keeps its own metric names. It logs connection
//! changes itself; a certificate problem is logged at error level on every attempt, naming the
//! URL and what to fix, because retrying alone will not fix it.

use std::{future::Future, ops::ControlFlow, sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::time::{Instant, MissedTickBehavior};
pub use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes, protocol::CloseFrame};
use tokio_tungstenite::{
    Connector, WebSocketStream,
    tungstenite::{Error as WsError, Message, protocol::WebSocketConfig},
};

use crate::tls::{self, ClientConfig, TlsError};

/// Reconnect delays: the `n`th consecutive attempt waits a random time in
/// `[d/2, d]` where `d = min(initial * 2^n, max)`; a successful connection starts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay's upper bound.
    pub initial: Duration,
    /// The largest delay's upper bound.
    pub max: Duration,
}

/// The reconnect delay sequence of one client.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    next: Duration,
}

impl Backoff {
    /// Starts at `config.initial` (or `config.max` if smaller).
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            next: config.initial.min(config.max),
        }
    }

    /// The delay before the next attempt; the one after it doubles, up to the maximum.
    pub fn delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = self.next.saturating_mul(2).min(self.config.max);
        // Jitter on the upper half so a fleet of clients does not reconnect in lockstep.
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.next = self.config.initial.min(self.config.max);
    }
}

/// What proves a connected server alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifeSign {
    /// Only a pong answering our pings.
    Pong,
    /// Any frame: data, ping or pong.
    AnyFrame,
}

/// How a silent or dead connection is noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Send a ping this often (the first right after connecting); `None` sends none.
    pub ping_interval: Option<Duration>,
    /// The connection is dropped when no [`LifeSign`] arrived for this long.
    pub timeout: Duration,
    /// What counts as a sign of life.
    pub sign: LifeSign,
}

/// One client's configuration.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Bound on TCP connect + TLS + WebSocket handshake of one attempt.
    pub connect_timeout: Duration,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Ping and liveness deadline.
    pub liveness: Liveness,
    /// Largest message (and frame) accepted; a larger one ends the connection.
    pub max_message_bytes: usize,
    /// A ready TLS configuration for `wss://`; `None`: one trusting `roots`.
    pub tls: Option<Arc<ClientConfig>>,
    /// The roots a `wss://` server's certificate must chain to when `tls` is `None` (the
    /// binaries fill it from `SSL_CERT_FILE` / `SSL_CERT_DIR` at startup).
    pub roots: tls::TrustedRoots,
}

/// A data frame, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text frame (valid UTF-8).
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
}

impl Frame {
    /// The frame's payload.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::Text(t) => t.as_bytes(),
            Frame::Binary(b) => b,
        }
    }
}

impl From<Frame> for Bytes {
    fn from(frame: Frame) -> Self {
        match frame {
            Frame::Text(t) => t.into(),
            Frame::Binary(b) => b,
        }
    }
}

/// Why there is no connection (an attempt failed, or a connected session ended).
#[derive(Debug, thiserror::Error)]
pub enum Disconnect {
    /// No TLS configuration could be built for a `wss://` URL.
    #[error("no TLS configuration: {0}")]
    NoTlsConfig(#[source] TlsError),
    /// The attempt did not complete within the connect timeout.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The TLS handshake failed (the message says what to fix).
    #[error("TLS handshake: {0}")]
    Tls(String),
    /// The attempt failed otherwise (refused, DNS, HTTP answer instead of an upgrade, ...).
    #[error("connect: {0}")]
    Connect(#[source] Box<WsError>),
    /// The server closed the connection (close frame, or the stream ended).
    #[error("closed by the server{}", .0.as_ref().map(|f| format!(": {} {}", f.code, f.reason)).unwrap_or_default())]
    Closed(Option<CloseFrame>),
    /// No sign of life within the liveness timeout.
    #[error("no sign of life for {0:?}")]
    Silent(Duration),
    /// Reading or writing a connected socket failed (including a message over the size limit).
    #[error("transport: {0}")]
    Transport(#[source] Box<WsError>),
    /// A connected session ended because the client stops (shutdown, or the handler asked
    /// to); nothing is reported after it.
    #[error("stopped")]
    Stopped,
}

impl Disconnect {
    /// Whether a connected session ended (as opposed to an attempt that never connected).
    pub fn was_connected(&self) -> bool {
        matches!(
            self,
            Disconnect::Closed(_)
                | Disconnect::Silent(_)
                | Disconnect::Transport(_)
                | Disconnect::Stopped
        )
    }
}

/// What the client reports, in order.
#[derive(Debug)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// A text or binary frame arrived.
    Frame(Frame),
    /// An attempt failed or the connection was lost.
    Disconnected(Disconnect),
    /// The next attempt starts after this delay.
    ReconnectScheduled(Duration),
}

/// Receives a client's events. Returning `ControlFlow::Break` stops the client (as shutdown does).
pub trait Handler: Send {
    /// Handles one event; awaiting here holds the client (backpressure on the socket).
    fn on_event(&mut self, event: Event) -> impl Future<Output = ControlFlow<()>> + Send;
}

/// Why a session ended.
enum End {
    /// Shutdown or the handler asked to stop.
    Stop,
    Lost(Disconnect),
}

/// Keeps a connection to `config.url` until `shutdown` resolves or the handler breaks.
pub async fn run<H: Handler>(
    config: WsConfig,
    mut handler: H,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Backoff::new(config.backoff);
    let mut connector = None;
    let url = config.url.as_str();
    loop {
        let attempt = tokio::select! {
            r = connect(&config, &mut connector) => r,
            () = &mut shutdown => return,
        };
        let reason = match attempt {
            Ok(ws) => {
                tracing::info!(%url, "websocket connected");
                backoff.reset();
                if handler.on_event(Event::Connected).await.is_break() {
                    return;
                }
                match session(ws, &config, &mut handler, shutdown.as_mut()).await {
                    End::Stop => {
                        tracing::info!(%url, "websocket closed: stopping");
                        // Lets the owner mark the stream down; nothing follows it.
                        let _ = handler
                            .on_event(Event::Disconnected(Disconnect::Stopped))
                            .await;
                        return;
                    }
                    End::Lost(why) => why,
                }
            }
            Err(why) => why,
        };
        let delay = backoff.delay();
        log(url, &reason, delay);
        if handler
            .on_event(Event::Disconnected(reason))
            .await
            .is_break()
            || handler
                .on_event(Event::ReconnectScheduled(delay))
                .await
                .is_break()
        {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return,
        }
    }
}

fn log(url: &str, reason: &Disconnect, retry_in: Duration) {
    match reason {
        // Neither fixes itself: say so loudly on every attempt.
        Disconnect::Tls(_) | Disconnect::NoTlsConfig(_) => {
            tracing::error!(%url, error = %reason, ?retry_in, "TLS to the websocket server failed")
        }
        r if r.was_connected() => {
            tracing::warn!(%url, reason = %r, ?retry_in, "websocket connection lost; reconnecting")
        }
        r => tracing::warn!(%url, error = %r, ?retry_in, "cannot connect to the websocket server"),
    }
}

type Stream = WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    config: &WsConfig,
    connector: &mut Option<Connector>,
) -> Result<Stream, Disconnect> {
    let connector = match connector {
        Some(c) => c.clone(),
        None => {
            // Built once; a failure (no trusted root) is retried at the next attempt.
            let built = connector_for(config)?;
            *connector = Some(built.clone());
            built
        }
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let attempt = tokio_tungstenite::connect_async_tls_with_config(
        config.url.as_str(),
        Some(ws_config),
        true,
        Some(connector),
    );
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(match tls::failure(&e) {
            Some(tls) => Disconnect::Tls(tls::explain(tls)),
            None => Disconnect::Connect(Box::new(e)),
        }),
        Err(_) => Err(Disconnect::ConnectTimeout(config.connect_timeout)),
    }
}

/// rustls for `wss://`, plain TCP otherwise.
fn connector_for(config: &WsConfig) -> Result<Connector, Disconnect> {
    // Schemes are case-insensitive (RFC 3986).
    let tls = config
        .url
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"));
    if !tls {
        return Ok(Connector::Plain);
    }
    match &config.tls {
        Some(tls) => Ok(Connector::Rustls(tls.clone())),
        None => tls::client_config(&config.roots)
            .map(Connector::Rustls)
            .map_err(Disconnect::NoTlsConfig),
    }
}

async fn session<H: Handler>(
    ws: Stream,
    config: &WsConfig,
    handler: &mut H,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> End {
    let (mut sink, mut stream) = ws.split();
    let liveness = config.liveness;
    let mut ping = liveness.ping_interval.map(|every| {
        let mut ping = tokio::time::interval(every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping
    });
    let silent = tokio::time::sleep(liveness.timeout);
    let mut silent = std::pin::pin!(silent);
    let alive = |silent: &mut std::pin::Pin<&mut tokio::time::Sleep>| {
        silent.as_mut().reset(Instant::now() + liveness.timeout)
    };
    let any = liveness.sign == LifeSign::AnyFrame;
    loop {
        let next_ping = async {
            match ping.as_mut() {
                Some(p) => {
                    p.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next() => {
                let frame = match msg {
                    Some(Ok(Message::Text(t))) => Frame::Text(t),
                    Some(Ok(Message::Binary(b))) => Frame::Binary(b),
                    Some(Ok(Message::Pong(_))) => {
                        alive(&mut silent);
                        continue;
                    }
                    // Pings are answered by tungstenite itself.
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => {
                        if any {
                            alive(&mut silent);
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => return End::Lost(Disconnect::Closed(frame)),
                    Some(Err(e)) => return End::Lost(Disconnect::Transport(Box::new(e))),
                    None => return End::Lost(Disconnect::Closed(None)),
                };
                if any {
                    alive(&mut silent);
                }
                if handler.on_event(Event::Frame(frame)).await.is_break() {
                    close(&mut sink, config.connect_timeout).await;
                    return End::Stop;
                }
            }
            () = next_ping => {
                // A peer that stopped reading can block the write; that is no sign of life either.
                let ping = sink.send(Message::Ping(Bytes::new()));
                match tokio::time::timeout(liveness.timeout, ping).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return End::Lost(Disconnect::Transport(Box::new(e))),
                    Err(_) => return End::Lost(Disconnect::Silent(liveness.timeout)),
                }
            }
            () = &mut silent => return End::Lost(Disconnect::Silent(liveness.timeout)),
            () = &mut shutdown => {
                close(&mut sink, config.connect_timeout).await;
                return End::Stop;
            }
        }
    }
}

/// A polite close frame, bounded so that a stuck socket cannot hold shutdown up.
async fn close(sink: &mut futures::stream::SplitSink<Stream, Message>, within: Duration) {
    let _ = tokio::time::timeout(within, sink.send(Message::Close(None))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_caps_and_resets() {
        let config = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut b = Backoff::new(config);
        let mut ceiling = config.initial;
        for _ in 0..12 {
            let d = b.delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(config.max);
        }
        assert_eq!(ceiling, config.max, "reached the cap");
        b.reset();
        assert!(b.delay() <= config.initial);
    }

    #[test]
    fn initial_above_max_starts_at_max() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(1),
        });
        assert!(b.delay() <= Duration::from_secs(1));
    }

    #[test]
    fn only_session_ends_count_as_connected() {
        assert!(Disconnect::Silent(Duration::ZERO).was_connected());
        assert!(Disconnect::Closed(None).was_connected());
        assert!(!Disconnect::ConnectTimeout(Duration::ZERO).was_connected());
        assert!(!Disconnect::Tls("x".into()).was_connected());
    }
}
