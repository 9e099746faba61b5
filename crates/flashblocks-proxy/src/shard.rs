//! Writer shards: a few tasks (one per core) each own a set of subscriber sockets and write every
//! published frame to all of them with direct non-blocking writes.
//!
//! Compared with one task per subscriber this does no wake-up, poll or channel receive per
//! subscriber per message, and sockets are never registered with epoll for writability (every
//! subscriber ACK would otherwise be an event to process). A subscriber whose socket is full gets
//! a queue of at most `--message-buffer-size` frames (shared `Bytes`, one pointer each), retried
//! on a short timer; one more frame and it is disconnected as lagging.

use std::{
    collections::{HashMap, VecDeque},
    io::{ErrorKind, Write},
    net::{Shutdown, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::{broadcast, mpsc, watch},
    task::JoinHandle,
};

use crate::{
    fanout::{Encoding, Frames, Hub, Published},
    frame,
    metrics::Metrics,
};

/// How often sockets that were full are retried. Such a subscriber is already a whole kernel
/// socket buffer behind, so polling it is cheap and keeps sockets out of epoll for writes.
pub const WRITE_RETRY: Duration = Duration::from_millis(5);
/// Commands queued per shard (registrations, control frames, removals).
pub const COMMAND_QUEUE: usize = 4096;
/// Subscribers written before the shard yields to other tasks.
const YIELD_EVERY: usize = 512;

/// Why a shard dropped a subscriber (readable by the subscriber's reader task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Dropped {
    /// Still attached.
    No = 0,
    /// More than `--message-buffer-size` frames behind.
    Lagged = 1,
    /// Write error.
    Io = 2,
    /// Proxy shutting down.
    Shutdown = 3,
}

/// State shared between a subscriber's reader task and its shard.
#[derive(Debug, Default)]
pub struct SubState {
    dropped: AtomicU8,
}

impl SubState {
    /// Why the shard dropped this subscriber, if it did.
    pub fn dropped(&self) -> Dropped {
        match self.dropped.load(Ordering::Acquire) {
            1 => Dropped::Lagged,
            2 => Dropped::Io,
            3 => Dropped::Shutdown,
            _ => Dropped::No,
        }
    }
}

enum Command {
    Register {
        id: u64,
        sock: Arc<TcpStream>,
        state: Arc<SubState>,
        after_seq: u64,
        encoding: Encoding,
    },
    Control {
        id: u64,
        frame: Bytes,
    },
    Unregister {
        id: u64,
    },
}

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
    /// Starts `n` shards reading from `hub`, each allowing `capacity` queued frames per subscriber.
    pub fn start(
        hub: &Hub,
        n: usize,
        capacity: usize,
        metrics: Metrics,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
            senders.push(tx);
            let shard = Shard::new(capacity, metrics.clone());
            tasks.push(tokio::spawn(shard.run(
                hub.subscribe(),
                rx,
                shutdown.clone(),
            )));
        }
        metrics.fanout_buffer_capacity.set(capacity as f64);
        (
            Self {
                senders,
                next_shard: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
            },
            tasks,
        )
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

struct Sub {
    sock: Arc<TcpStream>,
    state: Arc<SubState>,
    /// Frames not yet fully written; the first one partially when `offset > 0`.
    queue: VecDeque<Bytes>,
    offset: usize,
    /// Frames with a sequence number up to this one predate the subscriber.
    after_seq: u64,
    /// Which of a message's frames it gets.
    encoding: Encoding,
}

enum Offer {
    Ok,
    Drop(Dropped),
}

impl Sub {
    /// Writes queued frames until done or the socket is full. Returns frames and bytes completed.
    fn flush(&mut self) -> Result<(u64, u64), Dropped> {
        let (mut frames, mut bytes) = (0, 0);
        while let Some(front) = self.queue.front() {
            match (&*self.sock).write(&front[self.offset..]) {
                Ok(0) => return Err(Dropped::Io),
                Ok(n) => {
                    self.offset += n;
                    if self.offset == front.len() {
                        frames += 1;
                        bytes += front.len() as u64;
                        self.queue.pop_front();
                        self.offset = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Dropped::Io),
            }
        }
        Ok((frames, bytes))
    }

    /// Writes `frame` (or queues it behind earlier ones) and reports what completed. The frame
    /// is cloned (a shared-refcount increment) only when the socket cannot take it whole: the
    /// refcount is one cache line that every shard would otherwise hit for every subscriber.
    fn offer(&mut self, frame: &Bytes, capacity: usize, sent: &mut (u64, u64)) -> Offer {
        if !self.queue.is_empty() {
            if self.queue.len() >= capacity {
                return Offer::Drop(Dropped::Lagged);
            }
            self.queue.push_back(frame.clone());
            return match self.flush() {
                Ok((f, b)) => {
                    sent.0 += f;
                    sent.1 += b;
                    Offer::Ok
                }
                Err(d) => Offer::Drop(d),
            };
        }
        let mut off = 0;
        loop {
            match (&*self.sock).write(&frame[off..]) {
                Ok(0) => return Offer::Drop(Dropped::Io),
                Ok(n) => {
                    off += n;
                    if off == frame.len() {
                        sent.0 += 1;
                        sent.1 += frame.len() as u64;
                        return Offer::Ok;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.queue.push_back(frame.clone());
                    self.offset = off;
                    return Offer::Ok;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Offer::Drop(Dropped::Io),
            }
        }
    }

    fn close(self, why: Dropped, metrics: &Metrics) {
        self.state.dropped.store(why as u8, Ordering::Release);
        if why == Dropped::Lagged {
            metrics.lagged_disconnects.increment(1);
        }
        // A close frame only fits between frames; a lagging socket is full anyway.
        if self.queue.is_empty() || self.offset == 0 {
            let code = if why == Dropped::Shutdown { 1001 } else { 1008 };
            let _ = (&*self.sock).write(&frame::close(code));
        }
        // Wakes the reader task (EOF) and ends the TCP connection even while it holds the fd.
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

struct Shard {
    subs: HashMap<u64, Sub>,
    /// Queued frames last reported to the gauge (it is shared by all shards: report deltas).
    reported_queued: usize,
    reported_commands: usize,
    /// Recently published frames, replayed to subscribers registering just after them.
    recent: VecDeque<Published>,
    capacity: usize,
    metrics: Metrics,
}

impl Shard {
    fn new(capacity: usize, metrics: Metrics) -> Self {
        Self {
            subs: HashMap::new(),
            reported_queued: 0,
            reported_commands: 0,
            recent: VecDeque::with_capacity(capacity),
            capacity,
            metrics,
        }
    }

    fn drop_sub(&mut self, id: u64, why: Dropped) {
        if let Some(sub) = self.subs.remove(&id) {
            sub.close(why, &self.metrics);
        }
    }

    fn count(&self, sent: (u64, u64)) {
        self.metrics.messages_sent.increment(sent.0);
        self.metrics.bytes_sent.increment(sent.1);
    }

    /// Applies a command; true if it left a subscriber with queued frames.
    fn command(&mut self, cmd: Command) -> bool {
        let mut sent = (0, 0);
        let mut backlog = false;
        match cmd {
            Command::Register {
                id,
                sock,
                state,
                after_seq,
                encoding,
            } => {
                let mut sub = Sub {
                    sock,
                    state,
                    queue: VecDeque::new(),
                    offset: 0,
                    after_seq,
                    encoding,
                };
                for (seq, f) in &mut self.recent {
                    if *seq > after_seq
                        && let Offer::Drop(why) =
                            sub.offer(f.get(encoding), self.capacity, &mut sent)
                    {
                        sub.close(why, &self.metrics);
                        self.count(sent);
                        return false;
                    }
                }
                backlog = !sub.queue.is_empty();
                self.subs.insert(id, sub);
            }
            Command::Control { id, frame } => {
                if let Some(sub) = self.subs.get_mut(&id)
                    && let Offer::Drop(why) = sub.offer(&frame, self.capacity + 1, &mut sent)
                {
                    self.drop_sub(id, why);
                }
                backlog = self.subs.get(&id).is_some_and(|s| !s.queue.is_empty());
            }
            Command::Unregister { id } => {
                self.subs.remove(&id);
            }
        }
        self.count(sent);
        backlog
    }

    async fn publish(&mut self, seq: u64, mut frames: Frames) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        let mut sent = (0, 0);
        let mut dropped = Vec::new();
        let capacity = self.capacity;
        for (i, (id, sub)) in self.subs.iter_mut().enumerate() {
            if i > 0 && i % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
            if seq <= sub.after_seq {
                continue;
            }
            if let Offer::Drop(why) = sub.offer(frames.get(sub.encoding), capacity, &mut sent) {
                dropped.push((*id, why));
            }
        }
        self.recent.push_back((seq, frames));
        for (id, why) in dropped {
            self.drop_sub(id, why);
        }
        self.count(sent);
    }

    fn retry(&mut self) {
        let mut sent = (0, 0);
        let mut dropped = Vec::new();
        for (id, sub) in self.subs.iter_mut().filter(|(_, s)| !s.queue.is_empty()) {
            match sub.flush() {
                Ok((f, b)) => {
                    sent.0 += f;
                    sent.1 += b;
                }
                Err(why) => dropped.push((*id, why)),
            }
        }
        for (id, why) in dropped {
            self.drop_sub(id, why);
        }
        self.count(sent);
    }

    /// Updates the queue gauges; true if any subscriber has queued frames.
    fn report(&mut self, commands: usize) -> bool {
        let queued: usize = self.subs.values().map(|s| s.queue.len()).sum();
        self.metrics
            .subscriber_queued_frames
            .increment(queued as f64 - self.reported_queued as f64);
        self.reported_queued = queued;
        self.metrics
            .shard_commands
            .increment(commands as f64 - self.reported_commands as f64);
        self.reported_commands = commands;
        queued > 0
    }

    async fn run(
        mut self,
        mut frames: broadcast::Receiver<Published>,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut retry = tokio::time::interval(WRITE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backlogged = false;
        // A command received after shutdown began is handled by the close-down below. The flag
        // is checked directly: `biased` alone does not guarantee the shutdown branch wins (its
        // future can be pending on the task's co-operative budget while a command is ready).
        let mut received_late = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                () = crate::server::shutting_down(&mut shutdown) => break,
                cmd = commands.recv() => match cmd {
                    Some(c) if *shutdown.borrow() => {
                        received_late = Some(c);
                        break;
                    }
                    Some(c) => {
                        backlogged |= self.command(c);
                        continue;
                    }
                    None => break,
                },
                f = frames.recv() => match f {
                    Ok((seq, frame)) => self.publish(seq, frame).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // The shard itself fell behind (CPU starvation): its subscribers missed
                        // frames and must not see a silent gap.
                        let ids: Vec<u64> = self.subs.keys().copied().collect();
                        for id in ids {
                            self.drop_sub(id, Dropped::Lagged);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = retry.tick(), if backlogged => self.retry(),
            }
            backlogged = self.report(commands.len());
        }
        // Subscribers registered but not yet attached get their close frame too.
        commands.close();
        let late = std::iter::from_fn(|| received_late.take().or_else(|| commands.try_recv().ok()));
        for cmd in late {
            if let Command::Register {
                id,
                sock,
                state,
                after_seq,
                encoding,
            } = cmd
            {
                self.subs.insert(
                    id,
                    Sub {
                        sock,
                        state,
                        queue: VecDeque::new(),
                        offset: 0,
                        after_seq,
                        encoding,
                    },
                );
            }
        }
        let ids: Vec<u64> = self.subs.keys().copied().collect();
        for id in ids {
            self.drop_sub(id, Dropped::Shutdown);
        }
        self.report(0);
    }
}
