//! Re-publication: a WebSocket server on --flashblocks-host:--flashblocks-port sending every
//! accepted flashblock, in order, to every subscriber. Each frame is the bytes received from the
//! builder (serialized once, shared). A subscriber further behind than the channel's bound is
//! disconnected and counted, never silently skipped. With the high-availability set's secret
//! configured, subscribers on the peer path get every frame signed (the failover feature's
//! peers); every other path gets the frames as they are.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use tokio::{
    net::TcpListener,
    sync::{broadcast, watch},
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::{
    Message, Utf8Bytes,
    handshake::server::{ErrorResponse, Request, Response},
    protocol::{CloseFrame, frame::coding::CloseCode},
};

use crate::{
    failover::signed::{PEER_PATH, PeerKey},
    metrics::Metrics,
};

/// Most concurrent subscribers (flashblocks-proxy instances, not end users).
pub(crate) const MAX_SUBSCRIBERS: usize = 1024;
/// Longest a single frame write may block before the subscriber counts as stuck.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a client gets to finish the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the server; returns its bound address and accept task. `peer_key`: the set's secret,
/// which signs the frames of subscribers on the peer path (without it that path is refused).
pub(crate) async fn start(
    addr: SocketAddr,
    frames: broadcast::Sender<Utf8Bytes>,
    metrics: Arc<Metrics>,
    peer_key: Option<PeerKey>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((
        local,
        tokio::spawn(accept_loop(listener, frames, metrics, peer_key, shutdown)),
    ))
}

async fn accept_loop(
    listener: TcpListener,
    frames: broadcast::Sender<Utf8Bytes>,
    metrics: Arc<Metrics>,
    peer_key: Option<PeerKey>,
    mut shutdown: watch::Receiver<bool>,
) {
    let subscribers = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "flashblocks accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if subscribers.load(Ordering::Relaxed) >= MAX_SUBSCRIBERS {
            metrics.flashblocks_subscriber_refused();
            tracing::warn!(%peer, "refusing a flashblocks subscriber: at the subscriber limit");
            continue;
        }
        let _ = stream.set_nodelay(true);
        // Subscribe before the handshake so nothing published meanwhile is missed.
        let rx = frames.subscribe();
        let (metrics, subscribers, shutdown, key) = (
            metrics.clone(),
            subscribers.clone(),
            shutdown.clone(),
            peer_key.clone(),
        );
        tokio::spawn(async move {
            let mut signer = None;
            // tungstenite's handshake callback returns its own (large) error response type.
            #[allow(clippy::result_large_err)]
            let pick = |req: &Request, res: Response| {
                if req.uri().path() != PEER_PATH {
                    return Ok(res);
                }
                match &key {
                    Some(key) => {
                        signer = Some(key.clone());
                        Ok(res)
                    }
                    None => {
                        let mut refusal = ErrorResponse::new(Some(
                            "no peer stream here: this engine-mux has no --flashblocks-peer-secret"
                                .into(),
                        ));
                        *refusal.status_mut() = http::StatusCode::NOT_FOUND;
                        Err(refusal)
                    }
                }
            };
            let Ok(Ok(ws)) = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tokio_tungstenite::accept_hdr_async(stream, pick),
            )
            .await
            else {
                tracing::debug!(%peer, "flashblocks subscriber failed the handshake");
                return;
            };
            let n = subscribers.fetch_add(1, Ordering::Relaxed) + 1;
            metrics.flashblocks_subscribers(n);
            serve(ws, rx, &metrics, signer, shutdown, peer).await;
            let n = subscribers.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics.flashblocks_subscribers(n);
        });
    }
}

async fn serve<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut rx: broadcast::Receiver<Utf8Bytes>,
    metrics: &Metrics,
    signer: Option<PeerKey>,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut incoming) = ws.split();
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(text) => {
                    let message = match &signer {
                        Some(key) => Message::Binary(key.sign(text.as_bytes()).into()),
                        None => Message::Text(text),
                    };
                    match tokio::time::timeout(WRITE_STALL_TIMEOUT, tx.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    // A socket that cannot take one frame for this long is not reading at all;
                    // while stuck here its lag is invisible, so it is dropped on the stall itself.
                    Err(_) => {
                        metrics.flashblocks_lagging_disconnect();
                        tracing::warn!(%peer, "disconnecting a flashblocks subscriber whose socket stopped draining");
                        return;
                    }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    metrics.flashblocks_lagging_disconnect();
                    tracing::warn!(%peer, skipped, "disconnecting a flashblocks subscriber that fell behind");
                    let close = CloseFrame { code: CloseCode::Policy, reason: "too slow: fell behind the flashblocks buffer".into() };
                    let _ = tx.send(Message::Close(Some(close))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = shutdown.changed() => {
                let _ = tx.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "shutting down".into() }))).await;
                return;
            }
        }
    }
}
