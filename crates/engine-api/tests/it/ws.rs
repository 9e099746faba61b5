//! The reconnecting WebSocket client against local servers whose behaviour each test scripts:
//! frames as received, reconnection with backoff, liveness, connect timeout, TLS.

use std::{
    net::SocketAddr,
    ops::ControlFlow,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use engine_api::ws::{
    BackoffConfig, Bytes, Disconnect, Event, Frame, Handler, LifeSign, Liveness, WsConfig, run,
};
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

/// Forwards every event to the test (bounded; the client waits when the test lags).
struct Recorder(mpsc::Sender<Event>);

impl Handler for Recorder {
    async fn on_event(&mut self, event: Event) -> ControlFlow<()> {
        match self.0.send(event).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

fn config(url: String) -> WsConfig {
    WsConfig {
        url,
        connect_timeout: Duration::from_secs(2),
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(80),
        },
        liveness: Liveness {
            ping_interval: Some(Duration::from_millis(50)),
            timeout: Duration::from_secs(5),
            sign: LifeSign::Pong,
        },
        max_message_bytes: 1 << 20,
        tls: None,
        roots: engine_api::tls::TrustedRoots::system(),
    }
}

/// Runs a client until the returned sender is used or dropped; events arrive on the receiver.
fn start(
    config: WsConfig,
) -> (
    mpsc::Receiver<Event>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run(config, Recorder(tx), async move {
        let _ = stop_rx.await;
    }));
    (rx, stop_tx, task)
}

const WAIT: Duration = Duration::from_secs(5);

async fn next(rx: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event within the deadline")
        .expect("the client is running")
}

/// A listener whose accepted WebSocket connections each go to `serve` (numbered from 0).
async fn ws_server<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, WebSocketStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(n, ws));
        }
    });
    (addr, accepted)
}

/// Reads (which answers pings) until the client goes away; returns what was read.
async fn drain<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Vec<Message> {
    let mut seen = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        seen.push(m);
    }
    seen
}

#[tokio::test]
async fn text_and_binary_frames_arrive_as_sent() {
    let (addr, _) = ws_server(|_, mut ws| async move {
        ws.send(Message::text(r#"{"index":0}"#)).await.unwrap();
        ws.send(Message::binary(vec![0u8, 1, 0xff])).await.unwrap();
        drain(&mut ws).await;
    })
    .await;
    let (mut rx, _stop, _task) = start(config(format!("ws://{addr}")));
    assert!(matches!(next(&mut rx).await, Event::Connected));
    match next(&mut rx).await {
        Event::Frame(Frame::Text(t)) => assert_eq!(t.as_str(), r#"{"index":0}"#),
        other => panic!("expected the text frame, got {other:?}"),
    }
    match next(&mut rx).await {
        Event::Frame(f @ Frame::Binary(_)) => assert_eq!(f.as_bytes(), &[0u8, 1, 0xff]),
        other => panic!("expected the binary frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dropped_connection_is_redialled_after_a_jittered_initial_delay() {
    let (addr, accepted) = ws_server(|n, mut ws| async move {
        ws.send(Message::text(format!("connection {n}")))
            .await
            .unwrap();
        if n == 0 {
            // Gone without a close frame, as a crashed server is.
            drop(ws);
        } else {
            drain(&mut ws).await;
        }
    })
    .await;
    let c = config(format!("ws://{addr}"));
    let initial = c.backoff.initial;
    let (mut rx, _stop, _task) = start(c);
    assert!(matches!(next(&mut rx).await, Event::Connected));
    assert!(matches!(next(&mut rx).await, Event::Frame(_)));
    match next(&mut rx).await {
        Event::Disconnected(why) => assert!(why.was_connected(), "{why}"),
        other => panic!("expected the loss, got {other:?}"),
    }
    match next(&mut rx).await {
        Event::ReconnectScheduled(d) => assert!(d >= initial / 2 && d <= initial, "{d:?}"),
        other => panic!("expected a scheduled reconnect, got {other:?}"),
    }
    assert!(matches!(next(&mut rx).await, Event::Connected));
    match next(&mut rx).await {
        Event::Frame(f) => assert_eq!(f.as_bytes(), b"connection 1"),
        other => panic!("expected the second connection's frame, got {other:?}"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failed_attempts_back_off_exponentially_up_to_the_cap() {
    // A port nothing listens on: every attempt is refused.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let c = config(format!("ws://{addr}"));
    let backoff = c.backoff;
    let (mut rx, _stop, _task) = start(c);
    let mut ceiling = backoff.initial;
    for _ in 0..5 {
        match next(&mut rx).await {
            Event::Disconnected(why @ Disconnect::Connect(_)) => assert!(!why.was_connected()),
            other => panic!("expected a refused attempt, got {other:?}"),
        }
        match next(&mut rx).await {
            Event::ReconnectScheduled(d) => {
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "{d:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                )
            }
            other => panic!("expected a scheduled reconnect, got {other:?}"),
        }
        ceiling = (ceiling * 2).min(backoff.max);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_pings_is_dropped() {
    // Holds the socket without reading it, so no pong is ever sent back.
    let (addr, _) = ws_server(|_, ws| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(ws);
    })
    .await;
    let mut c = config(format!("ws://{addr}"));
    c.liveness.timeout = Duration::from_millis(300);
    let (mut rx, _stop, _task) = start(c);
    assert!(matches!(next(&mut rx).await, Event::Connected));
    let connected = Instant::now();
    match next(&mut rx).await {
        Event::Disconnected(Disconnect::Silent(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("expected a silent server to be dropped, got {other:?}"),
    }
    assert!(connected.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_server_answering_pings_stays_connected_past_the_timeout() {
    let pings = Arc::new(AtomicUsize::new(0));
    let seen = pings.clone();
    let (addr, _) = ws_server(move |_, mut ws| {
        let seen = seen.clone();
        async move {
            while let Some(Ok(m)) = ws.next().await {
                if m.is_ping() {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
    .await;
    let mut c = config(format!("ws://{addr}"));
    c.liveness.timeout = Duration::from_millis(200);
    let (mut rx, _stop, _task) = start(c);
    assert!(matches!(next(&mut rx).await, Event::Connected));
    // 12 pings 50 ms apart span three timeouts.
    let deadline = Instant::now() + WAIT;
    while pings.load(Ordering::SeqCst) < 12 {
        assert!(Instant::now() < deadline, "pings keep coming");
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
            panic!("no event expected while pongs come back, got {e:?}");
        }
    }
}

#[tokio::test]
async fn with_any_frame_liveness_data_keeps_a_pongless_server_alive() {
    // Never reads (so never pongs) but streams data.
    let (addr, _) = ws_server(|_, mut ws| async move {
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        loop {
            tick.tick().await;
            if ws.send(Message::text("x")).await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut c = config(format!("ws://{addr}"));
    c.liveness.timeout = Duration::from_millis(200);
    c.liveness.sign = LifeSign::AnyFrame;
    let (mut rx, _stop, _task) = start(c);
    assert!(matches!(next(&mut rx).await, Event::Connected));
    // 15 frames 40 ms apart span three timeouts.
    for _ in 0..15 {
        match next(&mut rx).await {
            Event::Frame(_) => {}
            other => panic!("expected data only, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn without_pings_an_idle_server_is_dropped_after_the_timeout() {
    let (addr, _) = ws_server(|_, mut ws| async move {
        drain(&mut ws).await;
    })
    .await;
    let mut c = config(format!("ws://{addr}"));
    c.liveness = Liveness {
        ping_interval: None,
        timeout: Duration::from_millis(200),
        sign: LifeSign::AnyFrame,
    };
    let (mut rx, _stop, _task) = start(c);
    assert!(matches!(next(&mut rx).await, Event::Connected));
    assert!(matches!(
        next(&mut rx).await,
        Event::Disconnected(Disconnect::Silent(_))
    ));
}

#[tokio::test]
async fn a_stuck_handshake_is_bounded_by_the_connect_timeout() {
    // Accepts TCP connections and never answers the upgrade request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut c = config(format!("ws://{addr}"));
    c.connect_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let (mut rx, _stop, _task) = start(c);
    match next(&mut rx).await {
        Event::Disconnected(Disconnect::ConnectTimeout(t)) => {
            assert_eq!(t, Duration::from_millis(200))
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(matches!(next(&mut rx).await, Event::ReconnectScheduled(_)));
    assert!(matches!(
        next(&mut rx).await,
        Event::Disconnected(Disconnect::ConnectTimeout(_))
    ));
}

#[tokio::test]
async fn shutdown_closes_politely_and_ends_the_client() {
    let (closed_tx, closed_rx) = oneshot::channel();
    let closed_tx = Arc::new(std::sync::Mutex::new(Some(closed_tx)));
    let (addr, _) = ws_server(move |_, mut ws| {
        let closed_tx = closed_tx.clone();
        async move {
            let seen = drain(&mut ws).await;
            let close = seen.iter().any(Message::is_close);
            if let Some(tx) = closed_tx.lock().unwrap().take() {
                let _ = tx.send(close);
            }
        }
    })
    .await;
    let (mut rx, stop, task) = start(config(format!("ws://{addr}")));
    assert!(matches!(next(&mut rx).await, Event::Connected));
    stop.send(()).unwrap();
    assert!(matches!(
        next(&mut rx).await,
        Event::Disconnected(Disconnect::Stopped)
    ));
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the client ends")
        .unwrap();
    assert!(rx.recv().await.is_none(), "nothing follows the last event");
    let close = tokio::time::timeout(WAIT, closed_rx)
        .await
        .unwrap()
        .unwrap();
    assert!(close, "the server got a close frame");
}

#[tokio::test]
async fn a_handler_break_stops_the_client() {
    let (addr, accepted) = ws_server(|_, mut ws| async move {
        ws.send(Message::text("one")).await.unwrap();
        drain(&mut ws).await;
    })
    .await;
    struct StopAtFrame;
    impl Handler for StopAtFrame {
        async fn on_event(&mut self, event: Event) -> ControlFlow<()> {
            match event {
                Event::Frame(_) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let task = tokio::spawn(run(
        config(format!("ws://{addr}")),
        StopAtFrame,
        std::future::pending(),
    ));
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the client ends")
        .unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "and does not reconnect");
}

#[tokio::test]
async fn an_oversized_message_ends_the_connection() {
    let (addr, _) = ws_server(|n, mut ws| async move {
        if n == 0 {
            let _ = ws.send(Message::binary(vec![7u8; 4096])).await;
        }
        drain(&mut ws).await;
    })
    .await;
    let mut c = config(format!("ws://{addr}"));
    c.max_message_bytes = 1024;
    let (mut rx, _stop, _task) = start(c);
    assert!(matches!(next(&mut rx).await, Event::Connected));
    match next(&mut rx).await {
        Event::Disconnected(why @ Disconnect::Transport(_)) => assert!(why.was_connected()),
        other => panic!("expected the connection to end, got {other:?}"),
    }
}

#[test]
fn bytes_of_a_frame_are_its_payload() {
    let b: Bytes = Frame::Binary(Bytes::from_static(b"ab")).into();
    assert_eq!(&b[..], b"ab");
}

mod tls {
    use engine_api::tls::{RootCertStore, TrustedRoots, client_config, client_config_with_roots};
    use test_utils::TestCa;
    use tokio_rustls::rustls;

    use super::*;

    /// A client configuration trusting only `ca`.
    fn client(ca: &TestCa) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.root()).unwrap();
        client_config_with_roots(roots).unwrap()
    }

    /// A `wss://` server sending one text frame per connection; counts completed handshakes.
    async fn wss_server(acceptor: tokio_rustls::TlsAcceptor) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let count = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(stream) = acceptor.accept(stream).await else {
                    continue;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = ws.send(Message::text("over tls")).await;
                    drain(&mut ws).await;
                });
            }
        });
        (addr, handshakes)
    }

    #[tokio::test]
    async fn wss_to_a_server_the_configured_ca_signed_receives_frames() {
        let ca = TestCa::new("trusted");
        let (addr, handshakes) = wss_server(ca.acceptor()).await;
        let mut c = config(format!("wss://localhost:{}", addr.port()));
        c.tls = Some(client(&ca));
        let (mut rx, _stop, _task) = start(c);
        assert!(matches!(next(&mut rx).await, Event::Connected));
        match next(&mut rx).await {
            Event::Frame(f) => assert_eq!(f.as_bytes(), b"over tls"),
            other => panic!("expected the frame, got {other:?}"),
        }
        assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    }

    /// A PEM file given the way `SSL_CERT_FILE` gives it is what the connection trusts (the
    /// process environment is left alone: `TrustedRoots::from_vars` takes the value).
    #[tokio::test]
    async fn wss_trusts_the_ca_in_the_file_ssl_cert_file_names() {
        let ca = TestCa::new("env");
        let roots = TrustedRoots::from_vars(Some(ca.pem_file.clone().into_os_string()), None);
        let (addr, _) = wss_server(ca.acceptor()).await;
        let mut c = config(format!("wss://127.0.0.1:{}", addr.port()));
        c.tls = Some(client_config(&roots).unwrap());
        let (mut rx, _stop, _task) = start(c);
        let first = next(&mut rx).await;
        assert!(matches!(first, Event::Connected), "{first:?}");
        assert!(matches!(next(&mut rx).await, Event::Frame(_)));
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_reported_and_retried_with_backoff() {
        let server_ca = TestCa::new("unknown");
        let client_ca = TestCa::new("trusted");
        let (addr, handshakes) = wss_server(server_ca.acceptor()).await;
        let mut c = config(format!("wss://localhost:{}", addr.port()));
        c.tls = Some(client(&client_ca));
        let (mut rx, _stop, _task) = start(c);
        for _ in 0..3 {
            match next(&mut rx).await {
                Event::Disconnected(Disconnect::Tls(why)) => {
                    assert!(why.contains("not signed by a trusted root"), "{why}")
                }
                other => panic!("expected a TLS failure, got {other:?}"),
            }
            assert!(matches!(next(&mut rx).await, Event::ReconnectScheduled(_)));
        }
        assert_eq!(handshakes.load(Ordering::SeqCst), 0);
    }
}
