//! Fan-out: each message is encoded (and compressed) once into a complete WebSocket frame; every
//! subscriber writes the same bytes. The per-subscriber buffer is a shared ring of
//! `--message-buffer-size` frames (a `broadcast` channel), so a backlog costs one pointer per
//! message per subscriber, never a copy.

use std::io::Read;

use bytes::Bytes;
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
    let mut out = Vec::new();
    let mut reader = brotli::Decompressor::new(data, 4096).take(limit as u64 + 1);
    reader.read_to_end(&mut out).ok()?;
    (out.len() <= limit).then_some(out)
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

/// What a subscriber holds to receive frames.
pub struct Subscription {
    /// Encoded frames.
    pub rx: broadcast::Receiver<Bytes>,
    /// Frames it may fall behind before being dropped.
    pub capacity: usize,
}

impl Subscription {
    /// True when frames it has not received were already overwritten.
    pub fn lagging(&self) -> bool {
        self.rx.len() > self.capacity
    }
}

/// The publishing side.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Bytes>,
    capacity: usize,
    compression: bool,
}

impl Hub {
    /// A hub buffering `capacity` frames per subscriber.
    pub fn new(capacity: usize, compression: bool) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            capacity,
            compression,
        }
    }

    /// A new subscriber, receiving frames published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            capacity: self.capacity,
        }
    }

    /// Encodes `json` once and hands the frame to every subscriber.
    pub fn publish(&self, json: &[u8]) -> Bytes {
        let frame = if self.compression {
            frame::encode(Opcode::Binary, &compress(json))
        } else if std::str::from_utf8(json).is_ok() {
            frame::encode(Opcode::Text, json)
        } else {
            frame::encode(Opcode::Binary, json)
        };
        // No subscribers is not an error.
        let _ = self.tx.send(frame.clone());
        frame
    }

    /// Number of subscribers currently attached.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// Reduces an upstream frame to flashblock JSON: text as is, binary either JSON or Brotli JSON.
pub fn normalize(data: Bytes) -> Option<Bytes> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'{') {
        return Some(data);
    }
    decompress(&data, MAX_MESSAGE_BYTES).map(Bytes::from)
}

/// Runs de-duplication and publishing until every upstream sender is gone.
pub async fn run(mut rx: mpsc::Receiver<Inbound>, hub: Hub, upstreams: usize, metrics: Metrics) {
    let mut dedup = Dedup::new();
    metrics.fanout_buffer_capacity.set(hub.capacity as f64);
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
        assert_eq!(normalize(Bytes::from(c)).unwrap(), Bytes::from(data));
    }

    #[tokio::test]
    async fn publish_encodes_once_and_detects_lag() {
        let hub = Hub::new(2, false);
        let mut s = hub.subscribe();
        let f = hub.publish(b"{}");
        assert_eq!(&f[..], &[0x81, 2, b'{', b'}']);
        assert_eq!(s.rx.recv().await.unwrap(), f);
        for _ in 0..3 {
            hub.publish(b"{}");
        }
        assert!(s.lagging());
        assert!(matches!(
            s.rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
