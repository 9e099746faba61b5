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

use std::{
    collections::{HashMap, VecDeque},
    io::{ErrorKind, Write},
    net::{Shutdown, TcpStream},
    os::fd::AsRawFd,
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

use tracing::{info, warn};

use crate::{
    cli::SendPath,
    fanout::{Encoding, Frames, Hub, Published},
    frame,
    metrics::Metrics,
    uring::{SendOp, SendRing, Target},
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
    /// Its slot in the shard's io_uring file table, if registered there (released on removal).
    slot: Option<u32>,
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

    /// Applies the result of one batched send of `frame` (made only while nothing was queued):
    /// bytes sent or a negated errno, handled as [`Sub::offer`] handles a direct write's.
    fn complete(&mut self, frame: &Bytes, res: i32, sent: &mut (u64, u64)) -> Offer {
        match usize::try_from(res) {
            Ok(n) if n == frame.len() => {
                sent.0 += 1;
                sent.1 += n as u64;
                Offer::Ok
            }
            Ok(0) => Offer::Drop(Dropped::Io),
            // Partly written: the rest goes out with the retries, like a direct write's.
            Ok(n) if n < frame.len() => {
                self.queue.push_back(frame.clone());
                self.offset = n;
                Offer::Ok
            }
            Ok(_) => Offer::Drop(Dropped::Io),
            Err(_) if res == -libc::EAGAIN || res == -libc::EINTR => {
                self.queue.push_back(frame.clone());
                self.offset = 0;
                Offer::Ok
            }
            Err(_) => Offer::Drop(Dropped::Io),
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

/// Sends `frames` to every subscriber in `batch` through `ring` and applies the results. If the
/// ring itself fails (not a socket: the ring, which does not happen on a working kernel), the
/// batch's subscribers are dropped — some of them may have got the frame, so carrying on could
/// duplicate it — and the shard continues with direct writes.
fn send_batch(
    ring: &mut Option<SendRing>,
    batch: &mut Batch<'_>,
    frames: &mut Frames,
    results: &mut Vec<i32>,
    sent: &mut (u64, u64),
    dropped: &mut Vec<(u64, Dropped)>,
) {
    let Some(r) = ring else {
        return;
    };
    if batch.is_empty() {
        return;
    }
    let brotli = batch
        .iter()
        .any(|(_, s)| s.encoding == Encoding::Brotli)
        .then(|| frames.brotli_or_encode().clone());
    let frame_for = |e: Encoding| match (e, &brotli) {
        (Encoding::Brotli, Some(b)) => b,
        _ => &frames.plain,
    };
    let ops: Vec<SendOp<'_>> = batch
        .iter()
        .map(|(_, s)| SendOp {
            to: s.slot.map_or(Target::Fd(s.sock.as_raw_fd()), Target::Slot),
            buf: frame_for(s.encoding),
        })
        .collect();
    let outcome = r.send_batch(&ops, results);
    drop(ops);
    match outcome {
        Ok(()) => {
            for ((id, sub), &res) in batch.drain(..).zip(results.iter()) {
                if let Offer::Drop(why) = sub.complete(frame_for(sub.encoding), res, sent) {
                    dropped.push((id, why));
                }
            }
        }
        Err(e) => {
            warn!(error = %e, subscribers = batch.len(), "io_uring failed: dropping the batch's subscribers, continuing with direct writes");
            dropped.extend(batch.drain(..).map(|(id, _)| (id, Dropped::Io)));
            *ring = None;
        }
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
    /// Batched sends; `None` = one direct write per subscriber.
    ring: Option<SendRing>,
    /// Results of the last batch (kept to reuse its allocation).
    results: Vec<i32>,
    metrics: Metrics,
}

/// Subscribers whose sends of the current frame go out in one batch.
type Batch<'a> = Vec<(u64, &'a mut Sub)>;

impl Shard {
    fn new(capacity: usize, ring: Option<SendRing>, metrics: Metrics) -> Self {
        if ring.is_some() {
            metrics.shards_io_uring.increment(1.0);
        } else {
            metrics.shards_write.increment(1.0);
        }
        Self {
            subs: HashMap::new(),
            reported_queued: 0,
            reported_commands: 0,
            recent: VecDeque::with_capacity(capacity),
            capacity,
            ring,
            results: Vec::new(),
            metrics,
        }
    }

    /// Removes a subscriber, releasing its registered-file slot (which holds the socket open).
    fn remove(&mut self, id: u64) -> Option<Sub> {
        let mut sub = self.subs.remove(&id)?;
        if let (Some(slot), Some(ring)) = (sub.slot.take(), &mut self.ring) {
            ring.release(slot);
        }
        Some(sub)
    }

    fn drop_sub(&mut self, id: u64, why: Dropped) {
        if let Some(sub) = self.remove(id) {
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
                    slot: None,
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
                sub.slot = self
                    .ring
                    .as_mut()
                    .and_then(|r| r.register(sub.sock.as_raw_fd()));
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
                self.remove(id);
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
        let mut ring = self.ring.take();
        let had_ring = ring.is_some();
        let mut results = std::mem::take(&mut self.results);
        let mut batch: Batch<'_> = Vec::with_capacity(YIELD_EVERY);
        for (i, (id, sub)) in self.subs.iter_mut().enumerate() {
            if i > 0 && i % YIELD_EVERY == 0 {
                send_batch(
                    &mut ring,
                    &mut batch,
                    &mut frames,
                    &mut results,
                    &mut sent,
                    &mut dropped,
                );
                tokio::task::yield_now().await;
            }
            if seq <= sub.after_seq {
                continue;
            }
            // A subscriber with queued frames takes the direct path: the new frame goes behind them.
            if ring.is_some() && sub.queue.is_empty() {
                batch.push((*id, sub));
            } else if let Offer::Drop(why) =
                sub.offer(frames.get(sub.encoding), capacity, &mut sent)
            {
                dropped.push((*id, why));
            }
        }
        send_batch(
            &mut ring,
            &mut batch,
            &mut frames,
            &mut results,
            &mut sent,
            &mut dropped,
        );
        drop(batch);
        if had_ring && ring.is_none() {
            self.metrics.shards_io_uring.decrement(1.0);
            self.metrics.shards_write.increment(1.0);
            // The dropped ring released every slot.
            for sub in self.subs.values_mut() {
                sub.slot = None;
            }
        }
        self.ring = ring;
        self.results = results;
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
                () = shutting_down(&mut shutdown) => break,
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
                        slot: None,
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

/// Resolves once shutdown is signalled (never if the sender is gone without signalling).
pub(crate) async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
        time::Duration,
    };

    use super::*;
    use crate::{auth::ApiKeys, metrics::scrape};

    struct Setup {
        hub: Hub,
        shards: Shards,
        metrics: Metrics,
        _stop: watch::Sender<bool>,
        listener: TcpListener,
    }

    fn setup(
        path: SendPath,
        capacity: usize,
        new_ring: fn() -> std::io::Result<SendRing>,
    ) -> Setup {
        let hub = Hub::new();
        let metrics = Metrics::new(&[], &ApiKeys::default(), &[]);
        let (stop, stop_rx) = watch::channel(false);
        let (shards, _tasks) =
            Shards::start_with(&hub, 2, capacity, path, metrics.clone(), stop_rx, new_ring)
                .unwrap();
        Setup {
            hub,
            shards,
            metrics,
            _stop: stop,
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    impl Setup {
        /// A connected pair: (the proxy's non-blocking side, the subscriber's blocking side).
        fn pair(&self) -> (TcpStream, TcpStream) {
            let client = TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
            let (server, _) = self.listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            (server, client)
        }

        async fn subscribe(&self, server: TcpStream) -> SubHandle {
            self.shards
                .register(Arc::new(server), self.hub.last_seq(), Encoding::Plain)
                .await
                .unwrap()
        }

        fn shards_on(&self, path: &str) -> f64 {
            let key = format!("flashblocks_proxy_writer_shards{{send_path=\"{path}\"}}");
            scrape(&self.metrics.render(), &key).unwrap()
        }
    }

    /// Whether io_uring works here; if not, a loud skip of the io_uring half of `test` (a
    /// failure under `ENGINE_MUX_REQUIRE_ALL_TESTS`).
    fn io_uring_here(test: &str) -> bool {
        match SendRing::new() {
            Ok(_) => true,
            Err(e) => {
                test_utils::skip(
                    test,
                    &format!("io_uring unavailable here ({e}): only the write path is tested"),
                );
                false
            }
        }
    }

    fn set_small_buffer(sock: &TcpStream, opt: libc::c_int) {
        let size: libc::c_int = 4096;
        // SAFETY: a valid socket and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }

    fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        client.read_exact(&mut got).unwrap();
        got
    }

    fn paths(test: &str) -> Vec<SendPath> {
        let mut p = vec![SendPath::Write];
        if io_uring_here(test) {
            p.push(SendPath::IoUring);
        }
        p
    }

    /// More subscribers than a shard writes between yields (so batches are split), several
    /// frames of different sizes: every subscriber gets exactly the frames' bytes, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_subscriber_gets_every_frame_in_order_on_each_send_path() {
        for path in paths("shard::every_subscriber_gets_every_frame_in_order_on_each_send_path") {
            let s = setup(path, 20, SendRing::new);
            let label = if path == SendPath::Write {
                "write"
            } else {
                "io_uring"
            };
            assert_eq!(s.shards_on(label), 2.0, "{path:?}");
            let mut clients = Vec::new();
            for _ in 0..(2 * YIELD_EVERY + 37) {
                let (server, client) = s.pair();
                s.subscribe(server).await;
                clients.push(client);
            }
            let mut expected = Vec::new();
            for i in 0..8usize {
                let json = format!(r#"{{"index":{i},"pad":"{}"}}"#, "ab".repeat(100 + 700 * i));
                expected.extend_from_slice(&s.hub.publish(json.into()).plain);
            }
            let got = tokio::task::spawn_blocking(move || {
                clients
                    .iter_mut()
                    .map(|c| read_n(c, expected.len()) == expected)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap();
            let wrong: Vec<usize> = (0..got.len()).filter(|&i| !got[i]).collect();
            assert!(
                wrong.is_empty(),
                "{path:?}: subscribers {wrong:?} got other bytes"
            );
        }
    }

    /// A subscriber whose socket fills up mid-frame gets the rest from its queue once it reads
    /// again, and one that stays full is dropped as lagging after `capacity` queued frames —
    /// on the io_uring path exactly as on the write path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_subscriber_is_queued_then_caught_up_or_dropped_as_lagging() {
        for path in paths("shard::slow_subscriber_is_queued_then_caught_up_or_dropped_as_lagging") {
            let capacity = 4;

            let s = setup(path, capacity, SendRing::new);
            // Small send buffers: a frame larger than the kernel's largest packet (64 KiB) is
            // then taken only in part, and once the peer's receive buffer is full, not at all.
            let (server, mut slow) = s.pair();
            set_small_buffer(&server, libc::SO_SNDBUF);
            let (server2, mut stuck) = s.pair();
            set_small_buffer(&server2, libc::SO_SNDBUF);
            s.subscribe(server).await;
            let stuck_h = s.subscribe(server2).await;

            // Small and large frames alternate; the subscribers read nothing yet.
            let mut expected = Vec::new();
            for i in 0..capacity {
                let pad = if i % 2 == 0 { 500 } else { 100 * 1024 };
                let json = format!(r#"{{"index":{i},"pad":"{}"}}"#, "cd".repeat(pad));
                expected.extend_from_slice(&s.hub.publish(json.into()).plain);
            }
            let got =
                tokio::task::spawn_blocking(move || read_n(&mut slow, expected.len()) == expected);
            assert!(
                got.await.unwrap(),
                "{path:?}: slow subscriber got other bytes"
            );

            // The one that never reads: once `capacity` frames are queued, the next drops it.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut more = 0;
            while stuck_h.state.dropped() != Dropped::Lagged {
                assert!(
                    std::time::Instant::now() < deadline && more < 200,
                    "{path:?}: never dropped"
                );
                s.hub.publish(format!(r#"{{"more":{more}}}"#).into());
                more += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let lagged = scrape(
                &s.metrics.render(),
                "flashblocks_proxy_lagged_disconnects_total",
            );
            assert_eq!(lagged, Some(1.0), "{path:?}");

            // Its connection is ended (the shard shut it down), after whatever was in flight.
            let eof = tokio::task::spawn_blocking(move || {
                let mut buf = [0u8; 65536];
                loop {
                    match stuck.read(&mut buf) {
                        Ok(0) | Err(_) => return true,
                        Ok(_) => {}
                    }
                }
            });
            assert!(eof.await.unwrap());
        }
    }

    /// A registered socket is held open by the ring until its slot is released: a subscriber
    /// removed from the shard must see its connection end when the proxy drops the socket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn removed_subscriber_socket_is_closed_not_held_by_the_ring() {
        if !io_uring_here("shard::removed_subscriber_socket_is_closed_not_held_by_the_ring") {
            return;
        }
        let s = setup(SendPath::IoUring, 20, SendRing::new);
        let (server, mut client) = s.pair();
        let h = s.subscribe(server).await;
        let frame = s.hub.publish(Bytes::from_static(b"{}")).plain;
        let mut c = tokio::task::spawn_blocking(move || {
            assert_eq!(read_n(&mut client, frame.len()), frame);
            client
        })
        .await
        .unwrap();
        // The reader task's exit path: unregister, then drop its reference to the socket.
        s.shards.unregister(&h).await;
        let eof = tokio::task::spawn_blocking(move || {
            let mut b = [0u8; 16];
            c.read(&mut b).map(|n| n == 0).unwrap_or(false)
        });
        assert!(eof.await.unwrap(), "connection still open after removal");
    }

    /// Where io_uring cannot be used (kernel without it, `kernel.io_uring_disabled`, seccomp),
    /// `auto` falls back to direct writes, says so in the metric, and still delivers;
    /// an explicit `io-uring` refuses to start instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unavailable_io_uring_falls_back_to_writes_and_says_so() {
        fn refused() -> std::io::Result<SendRing> {
            // What io_uring_setup returns when disabled by sysctl or a seccomp filter.
            Err(std::io::Error::from_raw_os_error(libc::EPERM))
        }
        let s = setup(SendPath::Auto, 20, refused);
        assert_eq!(s.shards_on("write"), 2.0);
        assert_eq!(s.shards_on("io_uring"), 0.0);
        let (server, mut client) = s.pair();
        s.subscribe(server).await;
        let frame = s.hub.publish(Bytes::from_static(br#"{"a":1}"#)).plain;
        let got = tokio::task::spawn_blocking(move || read_n(&mut client, frame.len()) == frame);
        assert!(got.await.unwrap());

        let (_, stop_rx) = watch::channel(false);
        let metrics = Metrics::new(&[], &ApiKeys::default(), &[]);
        let hub = Hub::new();
        let explicit =
            Shards::start_with(&hub, 2, 20, SendPath::IoUring, metrics, stop_rx, refused);
        assert!(
            explicit.is_err(),
            "--send-path io-uring must not silently fall back"
        );

        if io_uring_here("shard::refused") {
            let s = setup(SendPath::Auto, 20, SendRing::new);
            assert_eq!(
                s.shards_on("io_uring"),
                2.0,
                "auto uses io_uring where it works"
            );
        }
    }
}
