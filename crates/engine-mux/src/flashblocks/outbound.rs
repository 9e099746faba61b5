//! Re-publication: a WebSocket server on --flashblocks-host:--flashblocks-port sending every
//! accepted flashblock, in order, to every subscriber. Each frame is the bytes received from the
//! builder (serialized once, shared). A subscriber further behind than the channel's bound is
//! disconnected and counted, never silently skipped.

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
    protocol::{CloseFrame, frame::coding::CloseCode},
};

use crate::metrics::Metrics;

/// Most concurrent subscribers (flashblocks-proxy instances, not end users).
pub const MAX_SUBSCRIBERS: usize = 1024;
/// Longest a single frame write may block before the subscriber counts as stuck.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a client gets to finish the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the server; returns its bound address and accept task.
pub async fn start(
    addr: SocketAddr,
    frames: broadcast::Sender<Utf8Bytes>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((
        local,
        tokio::spawn(accept_loop(listener, frames, metrics, shutdown)),
    ))
}

async fn accept_loop(
    listener: TcpListener,
    frames: broadcast::Sender<Utf8Bytes>,
    metrics: Arc<Metrics>,
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
        let (metrics, subscribers, shutdown) =
            (metrics.clone(), subscribers.clone(), shutdown.clone());
        tokio::spawn(async move {
            let Ok(Ok(ws)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_async(stream))
                    .await
            else {
                tracing::debug!(%peer, "flashblocks subscriber failed the handshake");
                return;
            };
            let n = subscribers.fetch_add(1, Ordering::Relaxed) + 1;
            metrics.flashblocks_subscribers(n);
            serve(ws, rx, &metrics, shutdown, peer).await;
            let n = subscribers.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics.flashblocks_subscribers(n);
        });
    }
}

async fn serve<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut rx: broadcast::Receiver<Utf8Bytes>,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut incoming) = ws.split();
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(text) => match tokio::time::timeout(WRITE_STALL_TIMEOUT, tx.send(Message::Text(text))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    // A socket that cannot take one frame for this long is not reading at all;
                    // while stuck here its lag is invisible, so it is dropped on the stall itself.
                    Err(_) => {
                        metrics.flashblocks_lagging_disconnect();
                        tracing::warn!(%peer, "disconnecting a flashblocks subscriber whose socket stopped draining");
                        return;
                    }
                },
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
