//! One writer shard's task: its subscribers, the frames it publishes to them (direct
//! non-blocking writes, or batches through io_uring), the retries of full sockets, and the
//! commands that attach and detach subscribers.

use std::{
    collections::{HashMap, VecDeque},
    net::TcpStream,
    os::fd::AsRawFd,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::warn;

use super::sub::{Dropped, Offer, Sub, SubState};
use crate::{
    fanout::{Encoding, Frames, Published},
    metrics::Metrics,
    uring::{SendOp, SendRing, Target},
};

/// How often sockets that were full are retried. Such a subscriber is already a whole kernel
/// socket buffer behind, so polling it is cheap and keeps sockets out of epoll for writes.
pub const WRITE_RETRY: Duration = Duration::from_millis(5);
/// Subscribers written before the shard yields to other tasks.
pub(super) const YIELD_EVERY: usize = 512;

/// What the shard's handles ask of it, in order.
pub(super) enum Command {
    /// Attach a subscriber.
    Register {
        id: u64,
        sock: Arc<TcpStream>,
        state: Arc<SubState>,
        after_seq: u64,
        encoding: Encoding,
    },
    /// Queue a control frame behind its data frames.
    Control { id: u64, frame: Bytes },
    /// Detach a subscriber.
    Unregister { id: u64 },
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

/// One writer task's state.
pub(super) struct Shard {
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
    /// A shard allowing `capacity` queued frames per subscriber, sending through `ring`.
    pub(super) fn new(capacity: usize, ring: Option<SendRing>, metrics: Metrics) -> Self {
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
                let mut sub = Sub::new(sock, state, after_seq, encoding);
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

    /// Runs until shutdown: commands, published frames, retries; then closes every socket.
    pub(super) async fn run(
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
                self.subs
                    .insert(id, Sub::new(sock, state, after_seq, encoding));
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
