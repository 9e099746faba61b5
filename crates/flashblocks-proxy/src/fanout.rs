//! Fan-out: de-duplication of upstream messages, then each message is encoded (and compressed)
//! once into a complete WebSocket frame and handed to the writer shards ([`crate::shard`]),
//! which write those same bytes to every subscriber.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use engine_api::{
    flashblocks::{FrameError, frame_json},
    ws::Frame,
};
use tokio::sync::{broadcast, mpsc};

use crate::{
    dedup::{Dedup, FlashblockKey, Verdict},
    frame::{self, Opcode},
    metrics::Metrics,
};

/// Largest decompressed upstream message accepted.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Brotli quality used for outgoing messages: fast enough for large flashblocks, most of the gain.
const BROTLI_QUALITY: i32 = 5;
const BROTLI_WINDOW: i32 = 22;

/// Brotli-compresses `data`.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: BROTLI_WINDOW,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    // Writing into a Vec cannot fail.
    let _ = brotli::BrotliCompress(&mut &data[..], &mut out, &params);
    out
}

/// Decompresses Brotli data, refusing output above `limit` bytes.
pub fn decompress(data: &[u8], limit: usize) -> Option<Vec<u8>> {
    engine_api::flashblocks::brotli_decompress(data, limit).ok()
}

/// One message from an upstream, already reduced to flashblock JSON.
#[derive(Debug)]
pub struct Inbound {
    /// Index of the upstream in `--upstream-ws`.
    pub upstream: usize,
    /// Ordering key; `None` when the message is not a flashblock.
    pub key: Option<FlashblockKey>,
    /// JSON bytes.
    pub json: Bytes,
}

/// Frames buffered between the publisher and the writer shards (shared storage, one copy per
/// frame; the ring keeps its last frames alive, so it is small). Shards never block on sockets,
/// so they only fall this far behind if starved of CPU for seconds.
pub const SHARD_RING: usize = 64;

/// A published frame with its sequence number (1, 2, ...).
pub type Published = (u64, Bytes);

/// The publishing side.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Published>,
    seq: Arc<AtomicU64>,
    compression: bool,
}

impl Hub {
    /// A hub, compressing outgoing messages if asked.
    pub fn new(compression: bool) -> Self {
        let (tx, _) = broadcast::channel(SHARD_RING);
        Self {
            tx,
            seq: Arc::new(AtomicU64::new(0)),
            compression,
        }
    }

    /// A receiver of every frame published from now on (one per writer shard).
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    /// Sequence number of the last published frame.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Encodes `json` once and hands the frame to every shard.
    pub fn publish(&self, json: &[u8]) -> Bytes {
        let frame = if self.compression {
            frame::encode(Opcode::Binary, &compress(json))
        } else if std::str::from_utf8(json).is_ok() {
            frame::encode(Opcode::Text, json)
        } else {
            frame::encode(Opcode::Binary, json)
        };
        // Only this task publishes, so sequence order is send order.
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        // No shard listening is not an error.
        let _ = self.tx.send((seq, frame.clone()));
        frame
    }
}

/// Reduces an upstream frame to flashblock JSON ([`engine_api::flashblocks::frame_json`]): text
/// as is, binary either JSON or Brotli JSON (bounded by [`MAX_MESSAGE_BYTES`]). JSON frames are
/// not copied.
pub fn normalize(frame: Frame) -> Result<Bytes, FrameError> {
    let (binary, data): (bool, Bytes) = match frame {
        Frame::Text(t) => (false, t.into()),
        Frame::Binary(b) => (true, b),
    };
    match frame_json(binary, &data, MAX_MESSAGE_BYTES)? {
        Cow::Borrowed(_) => Ok(data),
        Cow::Owned(json) => Ok(Bytes::from(json)),
    }
}

/// Runs de-duplication and publishing until every upstream sender is gone.
pub async fn run(mut rx: mpsc::Receiver<Inbound>, hub: Hub, upstreams: usize, metrics: Metrics) {
    let mut dedup = Dedup::new();
    while let Some(msg) = rx.recv().await {
        metrics.inbound_queue.set(rx.len() as f64);
        let verdict = match &msg.key {
            Some(key) => dedup.check(key),
            // Not a flashblock: with one upstream pass it through unchanged (as websocket-proxy
            // does); with several there is no way to tell copies apart, so it is dropped.
            None if upstreams == 1 => Verdict::Deliver,
            None => Verdict::Duplicate,
        };
        if verdict != Verdict::Deliver {
            metrics.messages_deduplicated.increment(1);
            continue;
        }
        hub.publish(&msg.json);
        metrics.messages_published.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brotli_round_trip_and_limit() {
        let data = br#"{"payload_id":"0x01","index":0}"#.repeat(100);
        let c = compress(&data);
        assert!(c.len() < data.len());
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
        assert!(decompress(&c, data.len() - 1).is_none());
        assert!(decompress(b"garbage", 100).is_none());
        assert_eq!(
            normalize(Frame::Binary(Bytes::from(c))).unwrap(),
            Bytes::from(data)
        );
    }

    #[tokio::test]
    async fn publish_encodes_once_with_increasing_sequence() {
        let hub = Hub::new(false);
        let mut rx = hub.subscribe();
        let f = hub.publish(b"{}");
        assert_eq!(&f[..], &[0x81, 2, b'{', b'}']);
        assert_eq!(rx.recv().await.unwrap(), (1, f));
        hub.publish(b"{}");
        assert_eq!(rx.recv().await.unwrap().0, 2);
        assert_eq!(hub.last_seq(), 2);
        let hub = Hub::new(true);
        let f = hub.publish(br#"{"a":1}"#);
        assert_eq!(f[0], 0x82);
    }
}
