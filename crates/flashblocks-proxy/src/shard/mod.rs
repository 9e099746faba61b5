//! Writer shards: a few tasks (one per core) each own a set of subscriber sockets and write every
//! published frame to all of them with direct non-blocking writes.
//!
//! Compared with one task per subscriber this does no wake-up, poll or channel receive per
//! subscriber per message, and sockets are never registered with epoll for writability (every
//! subscriber ACK would otherwise be an event to process). A subscriber whose socket is full gets
//! a queue of at most `--message-buffer-size` frames (shared `Bytes`, one pointer each), retried
//! on a short timer; one more frame and it is disconnected as lagging.
//!
//! Where io_uring is available (`--send-path auto`, the default) a shard submits its sends of one
//! frame in batches through one system call ([`crate::uring`]); each send is still a single
//! non-blocking attempt and its result is handled exactly like a direct write's.

mod sub;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

pub(crate) use self::writer::shutting_down;
use self::writer::{Command, Shard};
pub use self::{
    sub::{Dropped, SubState},
    writer::WRITE_RETRY,
};
use crate::{
    cli::SendPath,
    fanout::{Encoding, Hub},
    metrics::Metrics,
    uring::SendRing,
};

/// Commands queued per shard (registrations, control frames, removals).
pub const COMMAND_QUEUE: usize = 4096;

/// A subscriber attached to a shard.
#[derive(Debug)]
pub struct SubHandle {
    id: u64,
    shard: usize,
    /// Shared state (drop reason).
    pub state: Arc<SubState>,
}

/// Handles to every shard.
pub struct Shards {
    senders: Vec<mpsc::Sender<Command>>,
    next_shard: AtomicUsize,
    next_id: AtomicU64,
}

impl Shards {
    /// Starts `n` shards reading from `hub`, each allowing `capacity` queued frames per subscriber
    /// and sending as `path` says. Fails only for `SendPath::IoUring` without io_uring.
    pub fn start(
        hub: &Hub,
        n: usize,
        capacity: usize,
        path: SendPath,
        metrics: Metrics,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<(Self, Vec<JoinHandle<()>>)> {
        Self::start_with(hub, n, capacity, path, metrics, shutdown, SendRing::new)
    }

    /// [`Shards::start`] with the ring constructor given (tests make io_uring unavailable).
    fn start_with(
        hub: &Hub,
        n: usize,
        capacity: usize,
        path: SendPath,
        metrics: Metrics,
        shutdown: watch::Receiver<bool>,
        new_ring: fn() -> std::io::Result<SendRing>,
    ) -> std::io::Result<(Self, Vec<JoinHandle<()>>)> {
        let mut rings = Vec::new();
        for _ in 0..n.max(1) {
            rings.push(match path {
                SendPath::Write => None,
                SendPath::IoUring => Some(new_ring()?),
                SendPath::Auto => match new_ring() {
                    Ok(r) => Some(r),
                    Err(e) => {
                        warn!(error = %e, "io_uring unavailable: writer shards use one send call per subscriber");
                        rings.resize_with(n.max(1), || None);
                        break;
                    }
                },
            });
        }
        let uring = rings.iter().filter(|r| r.is_some()).count();
        info!(
            shards = rings.len(),
            io_uring = uring,
            write = rings.len() - uring,
            "writer shards started"
        );
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for ring in rings {
            let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
            senders.push(tx);
            let shard = Shard::new(capacity, ring, metrics.clone());
            tasks.push(tokio::spawn(shard.run(
                hub.subscribe(),
                rx,
                shutdown.clone(),
            )));
        }
        metrics.fanout_buffer_capacity.set(capacity as f64);
        Ok((
            Self {
                senders,
                next_shard: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
            },
            tasks,
        ))
    }

    /// Attaches a subscriber socket (non-blocking, after the 101 response was written). Frames
    /// with a sequence number above `after_seq` that the shard already handled are replayed, so
    /// nothing published after the handshake began is missed. `None` if the proxy is stopping.
    pub async fn register(
        &self,
        sock: Arc<TcpStream>,
        after_seq: u64,
        encoding: Encoding,
    ) -> Option<SubHandle> {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SubState::default());
        let cmd = Command::Register {
            id,
            sock,
            state: state.clone(),
            after_seq,
            encoding,
        };
        self.senders[shard].send(cmd).await.ok()?;
        Some(SubHandle { id, shard, state })
    }

    /// Queues a control frame (pong, ping, close) behind the subscriber's pending data frames.
    pub async fn control(&self, h: &SubHandle, frame: Bytes) {
        let _ = self.senders[h.shard]
            .send(Command::Control { id: h.id, frame })
            .await;
    }

    /// Detaches a subscriber; its socket closes when both sides have let go of it.
    pub async fn unregister(&self, h: &SubHandle) {
        let _ = self.senders[h.shard]
            .send(Command::Unregister { id: h.id })
            .await;
    }
}
