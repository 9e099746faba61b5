//! Fan-out: de-duplication of upstream messages, then each message is encoded (and compressed)
//! once into a complete WebSocket frame and handed to the writer shards ([`crate::shard`]),
//! which write those same bytes to every subscriber.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use engine_api::ws::Frame;
use engine_types::flashblocks::{FrameError, frame_json};
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
    engine_types::flashblocks::brotli_decompress(data, limit).ok()
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

/// One published message, encoded once per encoding subscribers asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    /// The message as is: a text frame (a binary one if it is not UTF-8).
    pub plain: Bytes,
    /// The message Brotli-compressed in a binary frame; computed once, when at least one
    /// subscriber asked for it at publish time (see [`Frames::brotli_or_encode`] for the rest).
    pub brotli: Option<Bytes>,
    json: Bytes,
}

impl Frames {
    /// Encodes `json`, compressing it too when `brotli` is asked.
    pub fn encode(json: Bytes, brotli: bool) -> Self {
        let plain = if std::str::from_utf8(&json).is_ok() {
            frame::encode(Opcode::Text, &json)
        } else {
            frame::encode(Opcode::Binary, &json)
        };
        let brotli = brotli.then(|| frame::encode(Opcode::Binary, &compress(&json)));
        Self {
            plain,
            brotli,
            json,
        }
    }

    /// The frame for a subscriber of `encoding`.
    pub fn get(&mut self, encoding: Encoding) -> &Bytes {
        match encoding {
            Encoding::Plain => &self.plain,
            Encoding::Brotli => self.brotli_or_encode(),
        }
    }

    /// The compressed frame; encoded here if the publisher did not (a subscriber that asked for
    /// compression registered while the message was being published).
    pub fn brotli_or_encode(&mut self) -> &Bytes {
        let json = &self.json;
        self.brotli
            .get_or_insert_with(|| frame::encode(Opcode::Binary, &compress(json)))
    }
}

/// What a subscriber receives: the JSON as a text frame, or Brotli-compressed JSON in binary
/// frames (websocket-proxy's `--enable-compression` format). `--enable-compression` sets the
/// default; a subscriber chooses with `?compression=brotli` or `?compression=none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON text frames.
    Plain,
    /// Brotli-compressed binary frames.
    Brotli,
}

impl Encoding {
    /// The encoding a request path asks for (`compression=brotli|none` in its query), `default`
    /// when it does not say; `None` for any other value.
    pub fn from_path(path: &str, default: Encoding) -> Option<Encoding> {
        let Some((_, query)) = path.split_once('?') else {
            return Some(default);
        };
        let mut chosen = default;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("compression", "brotli")) => chosen = Encoding::Brotli,
                Some(("compression", "none")) => chosen = Encoding::Plain,
                Some(("compression", _)) => return None,
                _ => {}
            }
        }
        Some(chosen)
    }
}

/// A published message with its sequence number (1, 2, ...).
pub type Published = (u64, Frames);

/// The publishing side.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Published>,
    seq: Arc<AtomicU64>,
    brotli_subscribers: Arc<AtomicUsize>,
}

/// Counts a subscriber that wants compressed frames for as long as it lives.
#[derive(Debug)]
pub struct BrotliInterest(Arc<AtomicUsize>);

impl Drop for BrotliInterest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hub {
    /// A hub; messages are compressed only while some subscriber wants them compressed.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(SHARD_RING);
        Self {
            tx,
            seq: Arc::new(AtomicU64::new(0)),
            brotli_subscribers: Arc::new(AtomicUsize::new(0)),
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

    /// Registers interest in compressed frames until the returned guard is dropped.
    pub fn want_brotli(&self) -> BrotliInterest {
        self.brotli_subscribers.fetch_add(1, Ordering::AcqRel);
        BrotliInterest(self.brotli_subscribers.clone())
    }

    /// Encodes `json` once per wanted encoding and hands the frames to every shard.
    pub fn publish(&self, json: Bytes) -> Frames {
        let brotli = self.brotli_subscribers.load(Ordering::Acquire) > 0;
        let frames = Frames::encode(json, brotli);
        // Only this task publishes, so sequence order is send order.
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        // No shard listening is not an error.
        let _ = self.tx.send((seq, frames.clone()));
        frames
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

/// Reduces an upstream frame to flashblock JSON ([`engine_types::flashblocks::frame_json`]): text
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
        hub.publish(msg.json);
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
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        let f = hub.publish(Bytes::from_static(b"{}"));
        assert_eq!(&f.plain[..], &[0x81, 2, b'{', b'}']);
        assert_eq!(f.brotli, None, "nobody asked for compression");
        assert_eq!(rx.recv().await.unwrap(), (1, f));
        hub.publish(Bytes::from_static(b"{}"));
        assert_eq!(rx.recv().await.unwrap().0, 2);
        assert_eq!(hub.last_seq(), 2);

        let interest = hub.want_brotli();
        let f = hub.publish(Bytes::from_static(br#"{"a":1}"#));
        let z = f
            .brotli
            .clone()
            .expect("compressed once for the subscriber that asked");
        assert_eq!(z[0], 0x82);
        assert_eq!(decompress(&z[2..], 100).unwrap(), br#"{"a":1}"#);
        drop(interest);
        let mut f = hub.publish(Bytes::from_static(br#"{"a":1}"#));
        assert_eq!(f.brotli, None);
        // A late subscriber that wants it gets it encoded on demand.
        assert_eq!(f.get(Encoding::Brotli), &z);
    }

    #[test]
    fn subscribers_choose_the_encoding_in_the_query() {
        use Encoding::*;
        assert_eq!(Encoding::from_path("/ws", Plain), Some(Plain));
        assert_eq!(Encoding::from_path("/ws", Brotli), Some(Brotli));
        assert_eq!(
            Encoding::from_path("/ws/k?compression=brotli", Plain),
            Some(Brotli)
        );
        assert_eq!(
            Encoding::from_path("/?x=1&compression=none", Brotli),
            Some(Plain)
        );
        assert_eq!(Encoding::from_path("/?compression=zstd", Plain), None);
    }
}
