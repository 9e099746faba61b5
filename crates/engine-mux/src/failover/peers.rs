//! Following the peers' flashblocks streams (the other sequencers' engine-mux outbound streams,
//! or a flashblocks-proxy in front of them), each on [`engine_api::ws`]'s reconnecting client.
//! Each frame must carry the set's MAC ([`super::signed`]); the frame inside is parsed with
//! [`engine_api::flashblocks::parse`] and checked by [`HeldPreconfirmations::ingest`]. A frame
//! without a valid MAC is refused, counted and logged, and changes nothing.

use std::{
    ops::ControlFlow,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use engine_api::ws::{BackoffConfig, Event, Frame, Handler, LifeSign, Liveness, WsConfig};
use tokio::{sync::watch, task::JoinHandle};
use tracing::Instrument;

use super::{
    held::{HeldPreconfirmations, PeerVerdict},
    signed::{PeerKey, peer_stream_url},
};
use crate::metrics::Metrics;

/// Largest peer flashblock message accepted (as for the builder's stream).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How each peer stream is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStreams {
    /// The peers' flashblocks WebSocket URLs (`ws://` or `wss://`).
    pub urls: Vec<String>,
    /// First reconnect delay (doubles up to `max_reconnect`).
    pub initial_reconnect: Duration,
    /// Largest reconnect delay.
    pub max_reconnect: Duration,
    /// Connection attempt timeout.
    pub connect_timeout: Duration,
    /// Ping interval; a connection without a pong for two intervals is dropped.
    pub ping_interval: Duration,
    /// The secret the set shares: only frames it signed are accepted.
    pub key: PeerKey,
}

struct Peer {
    index: usize,
    held: Arc<HeldPreconfirmations>,
    metrics: Arc<Metrics>,
    connected: Arc<AtomicUsize>,
    up: bool,
    key: PeerKey,
    /// Whether this connection already logged a refused frame (one warning per connection).
    warned: bool,
}

impl Peer {
    fn set_up(&mut self, up: bool) {
        if self.up != up {
            self.up = up;
            let n = if up {
                self.connected.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                self.connected.fetch_sub(1, Ordering::Relaxed) - 1
            };
            self.metrics.peer_streams_connected(n);
        }
    }

    fn handle(&mut self, frame: &Frame) {
        let opened = match frame {
            Frame::Binary(message) => self.key.open(message),
            Frame::Text(_) => Err(super::signed::SignedFrameError::Unsigned),
        };
        let signed = match opened {
            Ok(signed) => signed,
            Err(e) => {
                self.metrics.peer_flashblock("unauthenticated");
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(peer = self.index, error = %e, "refusing peer flashblocks that are not signed with the set's secret (--flashblocks-peer-secret); logged once per connection, counted in engine_mux_peer_flashblocks_total{{outcome=\"unauthenticated\"}}");
                }
                return;
            }
        };
        let json = match engine_api::flashblocks::frame_json(false, signed, MAX_MESSAGE_BYTES) {
            Ok(json) => json,
            Err(e) => return self.malformed(&e.to_string()),
        };
        let fb = match engine_api::flashblocks::parse(&json) {
            Ok(fb) => fb,
            Err(e) => return self.malformed(&e.to_string()),
        };
        let (id, index) = (fb.payload_id, fb.index);
        let verdict = self.held.ingest(self.index, fb, json.len());
        let outcome = match verdict {
            PeerVerdict::Accepted => "accepted",
            PeerVerdict::Duplicate => "duplicate",
            PeerVerdict::Rejected(r) => {
                tracing::debug!(peer = self.index, %id, index, reason = r.as_str(), "peer flashblock refused");
                r.as_str()
            }
        };
        self.metrics.peer_flashblock(outcome);
        let (blocks, txs) = self.held.size();
        self.metrics.peer_preconfirmations_held(blocks, txs);
    }

    fn malformed(&self, why: &str) {
        self.metrics.peer_flashblock("malformed");
        tracing::warn!(peer = self.index, %why, "skipping a malformed peer flashblocks frame");
    }
}

impl Handler for Peer {
    async fn on_event(&mut self, event: Event) -> ControlFlow<()> {
        match event {
            Event::Connected => {
                self.warned = false;
                self.set_up(true);
            }
            Event::Disconnected(_) => self.set_up(false),
            Event::ReconnectScheduled(_) => {}
            Event::Frame(frame) => self.handle(&frame),
        }
        ControlFlow::Continue(())
    }
}

/// Follows every peer stream until `shutdown`.
pub(crate) fn spawn(
    streams: &PeerStreams,
    roots: &engine_api::tls::TrustedRoots,
    held: Arc<HeldPreconfirmations>,
    metrics: Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let connected = Arc::new(AtomicUsize::new(0));
    metrics.peer_streams_connected(0);
    streams
        .urls
        .iter()
        .enumerate()
        .map(|(index, url)| {
            let config = WsConfig {
                url: peer_stream_url(url),
                connect_timeout: streams.connect_timeout,
                backoff: BackoffConfig {
                    initial: streams.initial_reconnect,
                    max: streams.max_reconnect,
                },
                liveness: Liveness {
                    ping_interval: Some(streams.ping_interval),
                    timeout: streams.ping_interval * 2,
                    sign: LifeSign::Pong,
                },
                max_message_bytes: MAX_MESSAGE_BYTES,
                tls: None,
                roots: roots.clone(),
            };
            let peer = Peer {
                index,
                held: held.clone(),
                metrics: metrics.clone(),
                connected: connected.clone(),
                up: false,
                key: streams.key.clone(),
                warned: false,
            };
            let mut shutdown = shutdown.clone();
            tokio::spawn(
                engine_api::ws::run(config, peer, async move {
                    let _ = shutdown.changed().await;
                })
                .instrument(tracing::info_span!("peer_flashblocks", peer = index, %url)),
            )
        })
        .collect()
}
