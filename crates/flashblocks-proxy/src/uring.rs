//! Batched socket sends through io_uring: one `io_uring_enter` submits a shard's sends of one
//! frame to many subscribers, instead of one `send` system call per subscriber.
//!
//! Every send carries `MSG_DONTWAIT`, which makes io_uring attempt it once, inline during
//! submission, and complete it with `-EAGAIN` if the socket is full — never queue it for later.
//! So when [`SendRing::send_batch`] returns, every send has finished and no buffer or descriptor
//! is referenced by the kernel any more: the results mean exactly what `send(2)` would have
//! returned, and the shard handles them with the same code as its direct writes.
//!
//! Sockets can be registered with the ring ([`SendRing::register`]): sends to a registered
//! socket skip the kernel's per-operation file lookup and reference count (`fget`/`fput`, about 4%
//! of the proxy's CPU at 10,000 subscribers). A registered socket stays open until its slot is
//! released ([`SendRing::release`]) or the ring is dropped.

use std::{
    io::{self, Write},
    os::fd::{AsRawFd, RawFd},
};

use io_uring::{IoUring, opcode, types};

/// Submission queue entries per ring: the most sends submitted by one system call.
pub const RING_ENTRIES: u32 = 1024;
/// Registered-socket slots per ring (a sparse table: the kernel keeps 8 bytes per slot); sockets
/// beyond it are sent to by descriptor.
pub const FILE_SLOTS: u32 = 16_384;

/// Where a send goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A socket by its descriptor.
    Fd(RawFd),
    /// A socket registered with the ring, by its slot.
    Slot(u32),
}

/// One send of a batch: the socket and the bytes to write to it.
#[derive(Debug, Clone, Copy)]
pub struct SendOp<'a> {
    /// Connected, non-blocking stream socket.
    pub to: Target,
    /// Bytes to send (the kernel may take fewer).
    pub buf: &'a [u8],
}

/// An io_uring instance used only for non-blocking sends.
pub struct SendRing {
    ring: IoUring,
    /// Unused registered-file slots; empty when registration is unsupported.
    free_slots: Vec<u32>,
}

impl std::fmt::Debug for SendRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRing").finish_non_exhaustive()
    }
}

/// `MSG_NOSIGNAL` as `std` uses for socket writes (a closed peer is an error, never `SIGPIPE`).
const FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

impl SendRing {
    /// A ring, or the reason io_uring cannot be used here (kernel without it, disabled by
    /// `kernel.io_uring_disabled`, or refused by a seccomp filter).
    pub fn new() -> io::Result<Self> {
        let mut ring = IoUring::builder()
            // Completions are only ever reaped by the submitting thread, right after submitting.
            .setup_coop_taskrun()
            .build(RING_ENTRIES)?;
        check_sends_never_wait(&mut ring)?;
        // Without a table (old kernel, low open-file limit) every send goes by descriptor.
        let free_slots = match ring.submitter().register_files_sparse(FILE_SLOTS) {
            Ok(()) => (0..FILE_SLOTS).rev().collect(),
            Err(_) => Vec::new(),
        };
        Ok(Self { ring, free_slots })
    }

    /// Registers `fd` with the ring; `None` when no slot is free (send by descriptor then).
    pub fn register(&mut self, fd: RawFd) -> Option<u32> {
        let slot = self.free_slots.pop()?;
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(1) => Some(slot),
            _ => {
                self.free_slots.push(slot);
                None
            }
        }
    }

    /// Releases a slot from [`SendRing::register`], dropping the ring's reference to its socket.
    pub fn release(&mut self, slot: u32) {
        // -1 empties the slot. It cannot fail for a slot this ring handed out.
        if self
            .ring
            .submitter()
            .register_files_update(slot, &[-1])
            .is_ok()
        {
            self.free_slots.push(slot);
        }
    }

    /// Sends every op once (non-blocking) and stores each op's result in `results` at the op's
    /// index: bytes sent (`0..=len`) or a negated errno (`-EAGAIN` when the socket is full).
    ///
    /// An `Err` means the ring itself failed; the ops then have unknown outcomes (some may have
    /// been sent) and the ring must not be used again.
    pub fn send_batch(&mut self, ops: &[SendOp<'_>], results: &mut Vec<i32>) -> io::Result<()> {
        results.clear();
        results.resize(ops.len(), i32::MIN);
        for chunk_start in (0..ops.len()).step_by(RING_ENTRIES as usize) {
            let chunk = &ops[chunk_start..ops.len().min(chunk_start + RING_ENTRIES as usize)];
            {
                let mut sq = self.ring.submission();
                for (i, op) in chunk.iter().enumerate() {
                    let len = u32::try_from(op.buf.len()).unwrap_or(u32::MAX);
                    let send = match op.to {
                        Target::Fd(fd) => opcode::Send::new(types::Fd(fd), op.buf.as_ptr(), len),
                        Target::Slot(s) => opcode::Send::new(types::Fixed(s), op.buf.as_ptr(), len),
                    };
                    let sqe = send
                        .flags(FLAGS)
                        .build()
                        .user_data((chunk_start + i) as u64);
                    // SAFETY: `op.buf` and the socket outlive this call, and every send has completed
                    // (its CQE reaped below) before it returns: with MSG_DONTWAIT nothing is left
                    // in flight. The queue has room: it is empty and `chunk` fits in it.
                    if unsafe { sq.push(&sqe) }.is_err() {
                        return Err(io::Error::other("io_uring submission queue full"));
                    }
                }
            }
            let mut pending = chunk.len();
            while pending > 0 {
                match self.ring.submit_and_wait(pending) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    // Completion queue full: reap below, then enter again.
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                    Err(e) => return Err(e),
                }
                for cqe in self.ring.completion() {
                    let Some(slot) = usize::try_from(cqe.user_data())
                        .ok()
                        .and_then(|i| results.get_mut(i))
                    else {
                        return Err(io::Error::other(
                            "io_uring completion for no submitted send",
                        ));
                    };
                    *slot = cqe.result();
                    pending -= 1;
                }
            }
        }
        Ok(())
    }
}

/// Checks that this kernel completes a `MSG_DONTWAIT` send to a full socket at once with
/// `-EAGAIN` (kernels that queue it until the socket drains would stall a shard behind one slow
/// subscriber): fills a Unix socket pair, submits one send without waiting, and requires its
/// completion to be there already.
fn check_sends_never_wait(ring: &mut IoUring) -> io::Result<()> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    a.set_nonblocking(true)?;
    let chunk = [0u8; 4096];
    loop {
        match (&a).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    static PROBE: [u8; 1] = [1];
    let sqe = opcode::Send::new(types::Fd(a.as_raw_fd()), PROBE.as_ptr(), 1)
        .flags(FLAGS)
        .build()
        .user_data(0);
    // SAFETY: the buffer is static; the socket stays open until the send has completed (below),
    // or, if the kernel queued it, until the ring is dropped by the caller's error path.
    unsafe { ring.submission().push(&sqe) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    ring.submit()?;
    let res = ring.completion().next().map(|c| c.result());
    if res == Some(-libc::EAGAIN) {
        return Ok(());
    }
    // Close the pair so a queued send ends (with an error) before the ring is torn down.
    drop(b);
    drop(a);
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("io_uring does not complete non-blocking sends at once (got {res:?})"),
    ))
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        net::{TcpListener, TcpStream},
        os::fd::AsRawFd,
    };

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        (s, c)
    }

    /// `None` (a loud skip, or a failure under `ENGINE_MUX_REQUIRE_ALL_TESTS`) where io_uring
    /// is unavailable; the shard then uses direct writes, which `shard`'s tests cover.
    fn ring(test: &str) -> Option<SendRing> {
        match SendRing::new() {
            Ok(r) => Some(r),
            Err(e) => {
                test_utils::skip(test, &format!("io_uring unavailable here: {e}"));
                None
            }
        }
    }

    #[test]
    fn batch_larger_than_the_ring_delivers_every_buffer_to_its_socket() {
        let Some(mut ring) =
            ring("uring::batch_larger_than_the_ring_delivers_every_buffer_to_its_socket")
        else {
            return;
        };
        // More sockets than ring entries: the batch is submitted in several chunks.
        let n = RING_ENTRIES as usize + 7;
        let pairs: Vec<_> = (0..n).map(|_| pair()).collect();
        let bufs: Vec<Vec<u8>> = (0..n).map(|i| format!("frame for {i}").into()).collect();
        let ops: Vec<SendOp<'_>> = pairs
            .iter()
            .zip(&bufs)
            .enumerate()
            .map(|(i, ((s, _), b))| SendOp {
                // Half by descriptor, half through registered slots.
                to: if i % 2 == 0 {
                    Target::Fd(s.as_raw_fd())
                } else {
                    Target::Slot(ring.register(s.as_raw_fd()).expect("free slot"))
                },
                buf: b,
            })
            .collect();
        let mut results = Vec::new();
        ring.send_batch(&ops, &mut results).unwrap();
        for (i, ((_, c), b)) in pairs.iter().zip(&bufs).enumerate() {
            assert_eq!(results[i], b.len() as i32, "send {i}");
            let mut got = vec![0; b.len()];
            (&*c).read_exact(&mut got).unwrap();
            assert_eq!(&got, b, "socket {i} got another socket's bytes");
        }
    }

    #[test]
    fn full_socket_reports_eagain_at_once_instead_of_waiting() {
        let Some(mut ring) = ring("uring::full_socket_reports_eagain_at_once_instead_of_waiting")
        else {
            return;
        };
        let (s, c) = pair();
        let chunk = vec![7u8; 1 << 16];
        // Fill the socket (its peer never reads) through the ring itself.
        let mut results = Vec::new();
        let mut total = 0usize;
        loop {
            let op = SendOp {
                to: Target::Fd(s.as_raw_fd()),
                buf: &chunk,
            };
            ring.send_batch(&[op], &mut results).unwrap();
            match results[0] {
                n if n > 0 => total += n as usize,
                e => {
                    assert_eq!(e, -libc::EAGAIN, "a full socket is EAGAIN, not an error");
                    break;
                }
            }
            assert!(total < 1 << 30, "socket never filled");
        }
        // The other socket in the same batch is unaffected by the full one.
        let (s2, c2) = pair();
        let ops = [
            SendOp {
                to: Target::Fd(s.as_raw_fd()),
                buf: b"more",
            },
            SendOp {
                to: Target::Fd(s2.as_raw_fd()),
                buf: b"hello",
            },
        ];
        ring.send_batch(&ops, &mut results).unwrap();
        assert_eq!(results, vec![-libc::EAGAIN, 5]);
        let mut got = [0u8; 5];
        (&c2).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        drop(c);
    }

    #[test]
    fn closed_peer_is_an_error_result_not_a_signal() {
        let Some(mut ring) = ring("uring::closed_peer_is_an_error_result_not_a_signal") else {
            return;
        };
        let (s, c) = pair();
        drop(c);
        let mut results = Vec::new();
        // The first send may still be accepted (the RST arrives in answer to it).
        for _ in 0..100 {
            let op = SendOp {
                to: Target::Fd(s.as_raw_fd()),
                buf: b"x",
            };
            ring.send_batch(&[op], &mut results).unwrap();
            if results[0] < 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            results[0] == -libc::EPIPE || results[0] == -libc::ECONNRESET,
            "got {}",
            results[0]
        );
    }
}
