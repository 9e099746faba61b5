//! The flashblocks WebSocket: streams a payload's flashblocks (built by
//! [`Engine::next_flashblock`]) every interval to every subscriber, as op-rbuilder does on :1111.
//!
//! A subscriber that connects mid-block is first sent the current payload's flashblocks so far
//! (so a consumer that reconnects loses nothing, and must ignore the ones it already has). The
//! `flashblocks_down` fault closes the listener and every subscriber until it is cleared;
//! `flashblocks_late=MS` sends every frame MS later (in order); `flashblocks_hostile` follows
//! each real frame with one a consumer must refuse.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_rpc_types_engine::PayloadId;
use futures::{SinkExt, StreamExt};
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, broadcast, watch},
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::Message;

use crate::engine::{Engine, faults::Faults};

/// Frames buffered per subscriber; a subscriber further behind is disconnected, not buffered.
const SUBSCRIBER_BUFFER: usize = 256;
/// Concurrent WebSocket subscribers.
const MAX_SUBSCRIBERS: usize = 64;
/// Send times remembered for latency measurements.
const SEND_TIMES: usize = 4096;
/// Most frames of the current payload kept for replay to new subscribers.
const MAX_REPLAY: usize = 256;
/// Pause before retrying a listener that could not be re-opened.
const REBIND_RETRY: Duration = Duration::from_millis(50);

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

/// One WebSocket message to the subscribers.
#[derive(Debug, Clone)]
enum Frame {
    Text(Arc<str>),
    Binary(Arc<[u8]>),
}

impl Frame {
    fn message(&self) -> Message {
        match self {
            Self::Text(text) => Message::Text(text.as_ref().into()),
            Self::Binary(bytes) => Message::Binary(bytes.to_vec().into()),
        }
    }
}

#[derive(Debug, Default)]
struct Published {
    /// The payload being streamed and its frames so far (replayed to new subscribers).
    current: Option<PayloadId>,
    frames: Vec<Arc<str>>,
    /// When each recent flashblock was handed to the subscribers.
    sent: VecDeque<(PayloadId, u64, Instant)>,
    /// The payload streamed before `current` (a hostile frame may claim it).
    previous: Option<PayloadId>,
    /// Hostile frames sent so far (they rotate through the kinds).
    hostile: u64,
}

/// The publisher: a bounded fan-out of JSON frames to WebSocket subscribers.
#[derive(Debug)]
pub struct FlashblocksPublisher {
    frames: broadcast::Sender<Frame>,
    published: Mutex<Published>,
    config: FlashblocksConfig,
    faults: Arc<Faults>,
    /// Frames held back by `flashblocks_late`, with when they are due (a FIFO keeps the order).
    late: tokio::sync::mpsc::UnboundedSender<(Instant, PayloadId, u64, Arc<str>)>,
    /// Frames in the delay line: while any are, new ones queue behind them even with the fault
    /// off, so clearing it never reorders the stream.
    late_pending: std::sync::atomic::AtomicUsize,
    /// Bound WebSocket address (kept across `flashblocks_down`).
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

/// Starts the WebSocket listener; `faults` decides when it is closed (`flashblocks_down`).
pub async fn start_publisher(
    config: FlashblocksConfig,
    faults: Arc<Faults>,
) -> std::io::Result<RunningPublisher> {
    let listener = TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let (frames, _) = broadcast::channel(SUBSCRIBER_BUFFER);
    let (late, late_rx) = tokio::sync::mpsc::unbounded_channel();
    let publisher = Arc::new(FlashblocksPublisher {
        frames,
        published: Mutex::default(),
        config,
        faults: faults.clone(),
        late,
        late_pending: Default::default(),
        addr,
    });
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(delay_line(Arc::downgrade(&publisher), late_rx));
    let task = tokio::spawn(supervise(listener, publisher.clone(), faults, stop_rx));
    tracing::info!(%addr, "flashblocks WebSocket listening");
    Ok(RunningPublisher {
        publisher,
        stop,
        task,
    })
}

/// Sends the frames `flashblocks_late` held back, each when it is due, in the order built.
/// Ends with the publisher.
async fn delay_line(
    publisher: std::sync::Weak<FlashblocksPublisher>,
    mut late: tokio::sync::mpsc::UnboundedReceiver<(Instant, PayloadId, u64, Arc<str>)>,
) {
    while let Some((due, id, index, text)) = late.recv().await {
        tokio::time::sleep_until(due.into()).await;
        let Some(publisher) = publisher.upgrade() else {
            return;
        };
        publisher.send_now(id, index, text);
        publisher
            .late_pending
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves the listener while `flashblocks_down` is off; closes it (and kicks every
/// subscriber) while it is on.
async fn supervise(
    listener: TcpListener,
    publisher: Arc<FlashblocksPublisher>,
    faults: Arc<Faults>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_SUBSCRIBERS));
    let mut changes = faults.subscribe();
    // Bumped to disconnect every subscriber of the closed listener.
    let (kick, _) = watch::channel(0u64);
    let mut listener = Some(listener);
    loop {
        let Some(open) = listener.take() else {
            // Down: wait for the fault to clear, then re-open on the same address.
            if faults.is_flashblocks_down() {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { break },
                    _ = stop.changed() => break,
                }
                continue;
            }
            match TcpListener::bind(publisher.addr).await {
                Ok(l) => {
                    tracing::info!(addr = %publisher.addr, "flashblocks WebSocket re-opened");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(%e, "re-opening the flashblocks WebSocket failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(REBIND_RETRY) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
            continue;
        };
        if faults.is_flashblocks_down() {
            tracing::info!(addr = %publisher.addr, "fault flashblocks_down: closing the flashblocks WebSocket");
            drop(open);
            kick.send_modify(|k| *k += 1);
            continue;
        }
        let (stream, peer) = tokio::select! {
            accepted = open.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%e, "flashblocks accept failed");
                    listener = Some(open);
                    continue;
                }
            },
            r = changes.changed() => {
                if r.is_err() { break }
                listener = Some(open);
                continue;
            }
            _ = stop.changed() => break,
        };
        listener = Some(open);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "flashblocks subscriber refused: limit reached");
            continue;
        };
        let (replay, frames) = publisher.subscribe();
        let (stop, kicked) = (stop.clone(), kick.subscribe());
        tokio::spawn(async move {
            let _permit = permit;
            serve_subscriber(stream, replay, frames, stop, kicked).await;
        });
    }
    // Closing: every subscriber goes too.
    kick.send_modify(|k| *k += 1);
}

async fn serve_subscriber(
    stream: tokio::net::TcpStream,
    replay: Vec<Arc<str>>,
    mut frames: broadcast::Receiver<Frame>,
    mut stop: watch::Receiver<bool>,
    mut kicked: watch::Receiver<u64>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    for text in replay {
        if ws.send(Message::Text(text.as_ref().into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if ws.send(frame.message()).await.is_err() {
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
            _ = kicked.changed() => break,
        }
    }
    let _ = ws.close(None).await;
}

/// The hostile frame sent after the real frame `real` (JSON), by `turn`: unparseable text; the
/// real frame claimed by another payload (the one streamed before, past its end; else an
/// invented one); the
/// real frame under the index before its own (index 0: again); a binary frame that is neither
/// JSON nor Brotli. `None` when the real frame does not parse (it always does).
fn hostile_frame(turn: u64, real: &str, previous: Option<PayloadId>) -> Option<Frame> {
    let frame = |fb: &OpFlashblockPayload| {
        serde_json::to_string(fb)
            .ok()
            .map(|t| Frame::Text(t.into()))
    };
    match turn % 5 {
        0 => Some(Frame::Text(
            r#"{"payload_id": "0x00", "index": 1, "diff": {"#.into(),
        )),
        1 | 2 => {
            let mut fb: OpFlashblockPayload = serde_json::from_str(real).ok()?;
            match previous {
                // Past the end of the block before, which op-node has already taken.
                Some(p) if turn % 5 == 1 => {
                    fb.payload_id = p;
                    fb.index += 100;
                }
                _ => fb.payload_id = PayloadId::new(fb.payload_id.0.map(|b| !b)),
            }
            frame(&fb)
        }
        3 => {
            let mut fb: OpFlashblockPayload = serde_json::from_str(real).ok()?;
            fb.index = fb.index.saturating_sub(1);
            frame(&fb)
        }
        // Not UTF-8 (0xff), and not a Brotli stream either (unit-tested).
        _ => Some(Frame::Binary(Arc::from(
            &[0xff, 0xfe, 0x00, 0x13, 0x37, 0x80][..],
        ))),
    }
}

impl FlashblocksPublisher {
    /// The current payload's frames so far and a receiver for everything after them (taken
    /// together, so a new subscriber neither misses nor doubles a frame).
    fn subscribe(&self) -> (Vec<Arc<str>>, broadcast::Receiver<Frame>) {
        let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        (published.frames.clone(), self.frames.subscribe())
    }

    /// Serializes `fb` and hands it to every subscriber (and the replay for new ones).
    pub fn publish_flashblock(&self, fb: &OpFlashblockPayload) {
        match serde_json::to_string(fb) {
            Ok(text) => self.publish(fb.payload_id, fb.index, text.into()),
            Err(e) => tracing::warn!(%e, "flashblock serialization failed"),
        }
    }

    fn publish(&self, id: PayloadId, index: u64, text: Arc<str>) {
        let delay = self.faults.flashblocks_delay();
        let queued = self.late_pending.load(std::sync::atomic::Ordering::SeqCst) > 0;
        if delay.is_some() || queued {
            // Held back: still in the order built, but behind op-node's getPayload.
            self.late_pending
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let due = Instant::now() + delay.unwrap_or_default();
            if self.late.send((due, id, index, text)).is_err() {
                self.late_pending
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
            return;
        }
        self.send_now(id, index, text);
    }

    fn send_now(&self, id: PayloadId, index: u64, text: Arc<str>) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if published.current != Some(id) {
            published.previous = published.current.replace(id);
            published.frames.clear();
        }
        if published.frames.len() < MAX_REPLAY {
            published.frames.push(text.clone());
        }
        if published.sent.len() >= SEND_TIMES {
            published.sent.pop_front();
        }
        published.sent.push_back((id, index, Instant::now()));
        // No subscriber is not an error: the stream is best effort.
        let _ = self.frames.send(Frame::Text(text.clone()));
        if self.faults.is_flashblocks_hostile() {
            let turn = published.hostile;
            published.hostile += 1;
            let previous = published.previous;
            drop(published);
            if let Some(frame) = hostile_frame(turn, &text, previous) {
                tracing::debug!(turn, %id, index, "fault flashblocks_hostile: sending a bad frame");
                let _ = self.frames.send(frame);
            }
        }
    }

    /// When flashblock `index` of payload `id` was handed to the subscribers (recent ones
    /// only), for latency measurements.
    pub fn sent_at(&self, id: PayloadId, index: u64) -> Option<Instant> {
        let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        published
            .sent
            .iter()
            .rev()
            .find(|(i, n, _)| *i == id && *n == index)
            .map(|(_, _, at)| *at)
    }

    /// Publishes flashblocks of payload `id` until getPayload seals it, the builder goes
    /// down, or the per-payload maximum is reached.
    pub fn stream_payload(self: &Arc<Self>, engine: Arc<Engine>, id: PayloadId) {
        let publisher = self.clone();
        tokio::spawn(async move {
            for index in 0..publisher.config.max_per_payload {
                let engine = engine.clone();
                let publish = publisher.clone();
                let step = tokio::task::spawn_blocking(move || {
                    engine.next_flashblock(id, index, |fb| publish.publish_flashblock(fb))
                })
                .await;
                match step {
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(%e, %id, "flashblock build failed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(%e, "flashblock task failed");
                        break;
                    }
                }
                tokio::time::sleep(publisher.config.interval).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_frames_are_each_refusable() {
        let real = OpFlashblockPayload {
            payload_id: PayloadId::new([1; 8]),
            index: 2,
            ..Default::default()
        };
        let text = serde_json::to_string(&real).unwrap();
        let previous = Some(PayloadId::new([9; 8]));
        let parsed = |f: Option<Frame>| match f {
            Some(Frame::Text(t)) => engine_api::flashblocks::parse(t.as_bytes()).ok(),
            _ => None,
        };
        assert!(
            parsed(hostile_frame(0, &text, previous)).is_none(),
            "unparseable"
        );
        let stale = parsed(hostile_frame(1, &text, previous)).unwrap();
        assert_eq!(
            (stale.payload_id, stale.index),
            (PayloadId::new([9; 8]), 102)
        );
        let foreign = parsed(hostile_frame(2, &text, previous)).unwrap();
        assert_eq!(foreign.payload_id, PayloadId::new([!1; 8]));
        let invented = parsed(hostile_frame(6, &text, None)).unwrap();
        assert_ne!(invented.payload_id, real.payload_id);
        let back = parsed(hostile_frame(3, &text, previous)).unwrap();
        assert_eq!((back.payload_id, back.index), (real.payload_id, 1));
        let Some(Frame::Binary(bytes)) = hostile_frame(4, &text, previous) else {
            panic!("a binary frame");
        };
        assert!(std::str::from_utf8(&bytes).is_err());
        assert!(engine_api::flashblocks::brotli_decompress(&bytes, 1 << 20).is_err());
    }
}
