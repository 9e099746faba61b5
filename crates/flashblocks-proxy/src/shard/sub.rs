//! One subscriber as its shard holds it: its socket, the frames it is behind (at most
//! `--message-buffer-size`), and how a direct or batched send to it completes; and the drop
//! reason its reader task reads.

use std::{
    collections::VecDeque,
    io::{ErrorKind, Write},
    net::{Shutdown, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
};

use bytes::Bytes;

use crate::{fanout::Encoding, frame, metrics::Metrics};

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
    pub(super) dropped: AtomicU8,
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

/// A subscriber socket and its queue.
pub(super) struct Sub {
    pub(super) sock: Arc<TcpStream>,
    pub(super) state: Arc<SubState>,
    /// Frames not yet fully written; the first one partially when `offset > 0`.
    pub(super) queue: VecDeque<Bytes>,
    pub(super) offset: usize,
    /// Frames with a sequence number up to this one predate the subscriber.
    pub(super) after_seq: u64,
    /// Which of a message's frames it gets.
    pub(super) encoding: Encoding,
    /// Its slot in the shard's io_uring file table, if registered there (released on removal).
    pub(super) slot: Option<u32>,
}

/// What became of a frame offered to a subscriber.
pub(super) enum Offer {
    /// Sent, or queued within the bound.
    Ok,
    /// The subscriber must be dropped.
    Drop(Dropped),
}

impl Sub {
    /// A subscriber with nothing queued, not yet in the shard's io_uring file table.
    pub(super) fn new(
        sock: Arc<TcpStream>,
        state: Arc<SubState>,
        after_seq: u64,
        encoding: Encoding,
    ) -> Self {
        Self {
            sock,
            state,
            queue: VecDeque::new(),
            offset: 0,
            after_seq,
            encoding,
            slot: None,
        }
    }

    /// Writes queued frames until done or the socket is full. Returns frames and bytes completed.
    pub(super) fn flush(&mut self) -> Result<(u64, u64), Dropped> {
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
    pub(super) fn offer(&mut self, frame: &Bytes, capacity: usize, sent: &mut (u64, u64)) -> Offer {
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
    pub(super) fn complete(&mut self, frame: &Bytes, res: i32, sent: &mut (u64, u64)) -> Offer {
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

    /// Marks the subscriber dropped for `why`, sends a close frame when one fits and shuts
    /// the socket down.
    pub(super) fn close(self, why: Dropped, metrics: &Metrics) {
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
