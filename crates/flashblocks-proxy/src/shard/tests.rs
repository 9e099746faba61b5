//! Tests of the writer shards on real sockets, on each send path.

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::Duration,
};

use super::{writer::YIELD_EVERY, *};
use crate::{auth::ApiKeys, metrics::scrape};

struct Setup {
    hub: Hub,
    shards: Shards,
    metrics: Metrics,
    _stop: watch::Sender<bool>,
    listener: TcpListener,
}

fn setup(path: SendPath, capacity: usize, new_ring: fn() -> std::io::Result<SendRing>) -> Setup {
    let hub = Hub::new();
    let metrics = Metrics::new(&[], &ApiKeys::default(), &[]);
    let (stop, stop_rx) = watch::channel(false);
    let (shards, _tasks) =
        Shards::start_with(&hub, 2, capacity, path, metrics.clone(), stop_rx, new_ring).unwrap();
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
    let explicit = Shards::start_with(&hub, 2, 20, SendPath::IoUring, metrics, stop_rx, refused);
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
