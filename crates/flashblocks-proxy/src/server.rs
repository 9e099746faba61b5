//! Accepting subscribers: request head, routing (`/healthz`, `/ws/<key>`), API-key and limit
//! checks, the WebSocket upgrade, and the per-subscriber loop writing pre-encoded frames.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use std::io::{ErrorKind, Read, Write};

use tokio::{
    io::{AsyncWriteExt, Interest, unix::AsyncFd},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, broadcast::error::RecvError, watch},
    time::{Instant, timeout},
};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, warn};

use crate::{
    auth::{ApiKeys, AppId},
    client_ip::ClientIpResolver,
    config::ClientPingConfig,
    fanout::{Hub, Subscription},
    frame::{self, ClientEvent, FrameReader, Opcode},
    http::{self, RawHead},
    limits::Limiter,
    metrics::{Metrics, RejectReason},
};

/// Connections allowed in the handshake phase at once (the accept loop waits beyond it).
pub const MAX_PENDING_HANDSHAKES: usize = 4096;

/// Everything a connection handler needs.
pub struct Shared {
    /// Fan-out hub to subscribe to.
    pub hub: Hub,
    /// Admission control.
    pub limiter: Limiter,
    /// API keys.
    pub keys: ApiKeys,
    /// Client IP resolution.
    pub resolver: ClientIpResolver,
    /// Metrics.
    pub metrics: Metrics,
    /// Subscriber keepalive.
    pub client_ping: Option<ClientPingConfig>,
    /// Flips to true on shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Ok(slot) = pending.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move { handle(stream, peer, shared, slot).await });
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Health,
    Subscribe(Option<AppId>),
    Unauthorized,
    NotFound,
}

fn route(path: &str, keys: &ApiKeys) -> Route {
    let path = path.split('?').next().unwrap_or_default();
    if path == "/healthz" {
        return Route::Health;
    }
    let key = match path {
        "/" | "/ws" | "/ws/" => None,
        p => match p.strip_prefix("/ws/") {
            Some(k) => Some(k),
            None => return Route::NotFound,
        },
    };
    if keys.is_empty() {
        return Route::Subscribe(None);
    }
    match key.and_then(|k| keys.lookup(k)) {
        Some(app) => Route::Subscribe(Some(app)),
        None => Route::Unauthorized,
    }
}

struct Request {
    method_get: bool,
    path: String,
    upgrade: bool,
    ws_key: Option<String>,
    ws_version_ok: bool,
    client_ip: std::net::IpAddr,
}

fn parse(raw: &RawHead, peer: SocketAddr, resolver: &ClientIpResolver) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&raw.buf[..raw.head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    Some(Request {
        method_get: req.method == Some("GET"),
        path: req.path.unwrap_or("/").to_string(),
        upgrade: has_token("upgrade", "websocket") && has_token("connection", "upgrade"),
        ws_key: header("sec-websocket-key").map(str::to_string),
        ws_version_ok: header("sec-websocket-version") == Some("13"),
        client_ip: resolver.resolve(peer.ip(), req.headers),
    })
}

async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    // Frames are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let raw = match http::read_head(&mut stream).await {
        Ok(r) => r,
        Err(e) => {
            debug!(%peer, error = %e, "bad request head");
            return;
        }
    };
    let Some(req) = parse(&raw, peer, &shared.resolver) else {
        http::respond(
            &mut stream,
            400,
            "Bad Request",
            "malformed request\n",
            "text/plain",
        )
        .await;
        return;
    };
    let app = match route(&req.path, &shared.keys) {
        Route::Health => {
            let body = format!(
                "{{\"status\":\"ok\",\"subscribers\":{}}}\n",
                shared.limiter.active()
            );
            http::respond(&mut stream, 200, "OK", &body, "application/json").await;
            return;
        }
        Route::NotFound => {
            http::respond(&mut stream, 404, "Not Found", "not found\n", "text/plain").await;
            return;
        }
        Route::Unauthorized => {
            shared.metrics.unauthorized.increment(1);
            http::respond(
                &mut stream,
                401,
                "Unauthorized",
                "missing or unknown API key\n",
                "text/plain",
            )
            .await;
            return;
        }
        Route::Subscribe(app) => app,
    };
    let ws_key = match (&req.ws_key, req.method_get && req.upgrade) {
        (Some(k), true) if req.ws_version_ok => k.clone(),
        (_, false) => {
            http::respond(
                &mut stream,
                426,
                "Upgrade Required",
                "websocket upgrade required\n",
                "text/plain",
            )
            .await;
            return;
        }
        _ => {
            http::respond(
                &mut stream,
                400,
                "Bad Request",
                "bad websocket handshake\n",
                "text/plain",
            )
            .await;
            return;
        }
    };
    let permit = match shared.limiter.acquire(req.client_ip, app).await {
        Ok(p) => p,
        Err(reason) => {
            shared.metrics.rate_limited(reason);
            let (status, text) = match reason {
                RejectReason::LimiterUnavailable => (503, "Service Unavailable"),
                _ => (429, "Too Many Requests"),
            };
            debug!(%peer, ip = %req.client_ip, reason = reason.as_str(), "connection refused");
            http::respond(
                &mut stream,
                status,
                text,
                &format!("{}\n", reason.as_str()),
                "text/plain",
            )
            .await;
            return;
        }
    };
    // Subscribe before the 101 goes out: everything published after the client sees the upgrade
    // reaches it.
    let sub = shared.hub.subscribe();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(ws_key.as_bytes())
    );
    if timeout(http::HEAD_TIMEOUT, stream.write_all(response.as_bytes()))
        .await
        .map_or(true, |r| r.is_err())
    {
        return; // `permit` drops here and releases every count.
    }
    let leftover = raw.buf[raw.head_len..].to_vec();
    drop(raw);
    drop(slot);
    let gauge = shared.metrics.connections(app).clone();
    gauge.increment(1.0);
    let end = client_loop(stream, leftover, sub, &shared).await;
    gauge.decrement(1.0);
    match end {
        End::Lagged => shared.metrics.lagged_disconnects.increment(1),
        End::PongTimeout => shared.metrics.pong_timeouts.increment(1),
        _ => {}
    }
    debug!(%peer, ip = %req.client_ip, reason = ?end, "subscriber disconnected");
    drop(permit);
}

/// Why a subscriber's connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Lagged,
    PongTimeout,
    ClientClosed,
    Protocol,
    Io,
    Shutdown,
}

/// How often a write that found the socket full is retried. Such a subscriber is already a
/// whole kernel socket buffer behind, so polling it costs nothing measurable, and it keeps
/// subscriber sockets out of epoll for writability (see [`client_loop`]).
const WRITE_RETRY: Duration = Duration::from_millis(5);

/// Writes `bytes` with non-blocking writes, giving up as soon as the subscriber is more than its
/// buffer behind (a full socket must not hold a lagging subscriber here forever) or on shutdown.
async fn write_frame(fd: &AsyncFd<std::net::TcpStream>, bytes: &[u8], sub: &Subscription, shutdown: &watch::Receiver<bool>) -> Result<(), End> {
    let mut off = 0;
    loop {
        let mut sock = fd.get_ref();
        match sock.write(&bytes[off..]) {
            Ok(0) => return Err(End::Io),
            Ok(n) => {
                off += n;
                if off == bytes.len() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if sub.lagging() {
                    return Err(End::Lagged);
                }
                if *shutdown.borrow() {
                    return Err(End::Shutdown);
                }
                tokio::time::sleep(WRITE_RETRY).await;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(End::Io),
        }
    }
}

/// Resolves once shutdown is signalled (never if the sender is gone without signalling).
async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The subscriber loop.
///
/// The socket is registered with the reactor for readability only: registered for writability
/// too, every ACK from every subscriber would be an epoll event for the proxy to process (10,000
/// per message at 10,000 subscribers) although nobody waits for it. Writes go straight to the
/// non-blocking socket instead; the rare full socket is retried on a timer by [`write_frame`].
async fn client_loop(stream: TcpStream, leftover: Vec<u8>, mut sub: Subscription, shared: &Shared) -> End {
    let Ok(std_stream) = stream.into_std() else { return End::Io };
    // SAFETY: the std stream owns its descriptor, which stays open and unchanged until the
    // AsyncFd (which owns the stream) is dropped.
    let fd = match unsafe { AsyncFd::register_with_interest(std_stream, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(_) => return End::Io,
    };
    let mut reader = FrameReader::new();
    let mut rbuf = [0u8; 512];
    let mut shutdown = shared.shutdown.clone();
    let mut events = Vec::new();
    let ping = shared.client_ping;
    // With pings disabled the timer never fires.
    let ping_every = ping.map_or(Duration::from_secs(86_400 * 365), |p| p.interval);
    let mut ping_timer = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let mut close_with: Option<u16> = None;

    if reader.feed(&leftover, |e| events.push(e)).is_err() {
        return End::Protocol;
    }
    let end = 'outer: loop {
        for ev in events.drain(..) {
            last_heard = Instant::now();
            match ev {
                ClientEvent::Ping(p) => {
                    if let Err(e) = write_frame(&fd, &frame::encode(Opcode::Pong, &p), &sub, &shutdown).await {
                        break 'outer e;
                    }
                }
                ClientEvent::Close(p) => {
                    let _ = fd.get_ref().write(&frame::encode(Opcode::Close, &p));
                    break 'outer End::ClientClosed;
                }
                ClientEvent::Pong | ClientEvent::Data => {}
            }
        }
        if sub.lagging() {
            break End::Lagged;
        }
        tokio::select! {
            biased;
            () = shutting_down(&mut shutdown) => {
                close_with = Some(1001);
                break End::Shutdown;
            }
            msg = sub.rx.recv() => match msg {
                Ok(frame) => {
                    if let Err(e) = write_frame(&fd, &frame, &sub, &shutdown).await {
                        break e;
                    }
                    shared.metrics.messages_sent.increment(1);
                    shared.metrics.bytes_sent.increment(frame.len() as u64);
                }
                Err(RecvError::Lagged(_)) => break End::Lagged,
                Err(RecvError::Closed) => {
                    close_with = Some(1001);
                    break End::Shutdown;
                }
            },
            ready = fd.readable() => {
                let Ok(mut guard) = ready else { break End::Io };
                match guard.try_io(|s| s.get_ref().read(&mut rbuf)) {
                    Err(_would_block) => {}
                    Ok(Ok(0)) | Ok(Err(_)) => break End::Io,
                    Ok(Ok(n)) => {
                        if reader.feed(&rbuf[..n], |e| events.push(e)).is_err() {
                            close_with = Some(1002);
                            break End::Protocol;
                        }
                    }
                }
            },
            _ = ping_timer.tick() => {
                if let Some(p) = ping {
                    if last_heard.elapsed() > p.timeout {
                        break End::PongTimeout;
                    }
                    if let Err(e) = write_frame(&fd, &frame::encode(Opcode::Ping, b""), &sub, &shutdown).await {
                        break e;
                    }
                }
            }
        }
    };
    if let Some(code) = close_with {
        // Best effort, never waits: the subscriber may be the reason we are closing.
        let _ = fd.get_ref().write(&frame::close(code));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let none = ApiKeys::default();
        assert_eq!(route("/healthz", &none), Route::Health);
        assert_eq!(route("/", &none), Route::Subscribe(None));
        assert_eq!(route("/ws?x=1", &none), Route::Subscribe(None));
        assert_eq!(route("/other", &none), Route::NotFound);
        let keys = ApiKeys::parse(&["a:k1:2"]).unwrap();
        assert_eq!(route("/ws/k1", &keys), Route::Subscribe(Some(0)));
        assert_eq!(route("/ws/k2", &keys), Route::Unauthorized);
        assert_eq!(route("/", &keys), Route::Unauthorized);
        assert_eq!(route("/ws/", &keys), Route::Unauthorized);
    }
}
