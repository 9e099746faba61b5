//! Builder-mode flashblocks: while a payload is being built, publish an `OpFlashblockPayload`
//! every interval (index 0 with the base, then diffs) over WebSocket, as op-rbuilder does on
//! :1111. getPayload seals the payload and answers the block of the last flashblock sent.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_rpc_types_engine::PayloadId;
use futures::{SinkExt, StreamExt};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, broadcast, watch},
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::Message;

use crate::engine::Engine;

/// Frames buffered per subscriber; a subscriber further behind is disconnected, not buffered.
const SUBSCRIBER_BUFFER: usize = 256;
/// Concurrent WebSocket subscribers.
const MAX_SUBSCRIBERS: usize = 64;

/// Where and how often flashblocks are published.
#[derive(Debug, Clone, Copy)]
pub struct FlashblocksConfig {
    /// WebSocket listen address (port 0 = ephemeral).
    pub addr: SocketAddr,
    /// Time between flashblocks of one payload.
    pub interval: Duration,
    /// Most flashblocks per payload (index 0 included).
    pub max_per_payload: u64,
}

/// The publisher: a bounded fan-out of JSON frames to WebSocket subscribers.
#[derive(Debug)]
pub struct FlashblocksPublisher {
    frames: broadcast::Sender<Arc<str>>,
    config: FlashblocksConfig,
    /// Bound WebSocket address.
    pub addr: SocketAddr,
}

/// A running publisher and its accept loop.
#[derive(Debug)]
pub struct RunningPublisher {
    /// The publisher (hand it to the engine's RPC layer).
    pub publisher: Arc<FlashblocksPublisher>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningPublisher {
    /// Closes the listener and every subscriber.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the WebSocket listener.
pub async fn start_publisher(config: FlashblocksConfig) -> std::io::Result<RunningPublisher> {
    let listener = TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let (frames, _) = broadcast::channel(SUBSCRIBER_BUFFER);
    let publisher = Arc::new(FlashblocksPublisher {
        frames,
        config,
        addr,
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, publisher.clone(), stop_rx));
    tracing::info!(%addr, "flashblocks WebSocket listening");
    Ok(RunningPublisher {
        publisher,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    publisher: Arc<FlashblocksPublisher>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_SUBSCRIBERS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%e, "flashblocks accept failed");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "flashblocks subscriber refused: limit reached");
            continue;
        };
        let frames = publisher.frames.subscribe();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_subscriber(stream, frames, stop).await;
        });
    }
}

async fn serve_subscriber(
    stream: tokio::net::TcpStream,
    mut frames: broadcast::Receiver<Arc<str>>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(text) => {
                    if ws.send(Message::Text(text.as_ref().into())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "flashblocks subscriber too slow: disconnecting");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => break,
        }
    }
    let _ = ws.close(None).await;
}

impl FlashblocksPublisher {
    /// Publishes flashblocks of payload `id` until getPayload seals it or the per-payload
    /// maximum is reached.
    pub fn stream_payload(self: &Arc<Self>, engine: Arc<Engine>, id: PayloadId) {
        let publisher = self.clone();
        tokio::spawn(async move {
            for index in 0..publisher.config.max_per_payload {
                let engine = engine.clone();
                let step =
                    tokio::task::spawn_blocking(move || engine.next_flashblock(id, index)).await;
                let flashblock = match step {
                    Ok(Ok(Some(fb))) => fb,
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(%e, %id, "flashblock build failed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(%e, "flashblock task failed");
                        break;
                    }
                };
                match serde_json::to_string(&flashblock) {
                    // No subscriber is not an error: the stream is best effort.
                    Ok(text) => {
                        let _ = publisher.frames.send(text.into());
                    }
                    Err(e) => tracing::warn!(%e, "flashblock serialization failed"),
                }
                tokio::time::sleep(publisher.config.interval).await;
            }
        });
    }
}
