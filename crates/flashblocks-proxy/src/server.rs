//! Accepting subscribers: request head, routing (`/healthz`, `/ws/<key>`), API-key and limit
//! checks, the WebSocket upgrade, and the per-subscriber loop writing pre-encoded frames.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use std::io::Read;

use tokio::{
    io::{AsyncWriteExt, Interest, unix::AsyncFd},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    time::{Instant, timeout},
};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, warn};

use crate::{
    auth::{ApiKeys, AppId},
    client_ip::ClientIpResolver,
    config::ClientPingConfig,
    fanout::{Encoding, Hub},
    frame::{self, ClientEvent, FrameReader, Opcode},
    http::{self, RawHead},
    limits::Limiter,
    metrics::{Metrics, RejectReason},
    shard::{Dropped, Shards, SubHandle, shutting_down},
};

/// Connections allowed in the handshake phase at once (the accept loop waits beyond it).
pub const MAX_PENDING_HANDSHAKES: usize = 4096;

/// Everything a connection handler needs.
pub struct Shared {
    /// Fan-out hub (sequence numbers).
    pub hub: Hub,
    /// Writer shards subscribers are attached to.
    pub shards: Shards,
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
    /// Encoding of subscribers that do not choose (`--enable-compression`: Brotli).
    pub default_encoding: Encoding,
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
    let Some(encoding) = Encoding::from_path(&req.path, shared.default_encoding) else {
        http::respond(
            &mut stream,
            400,
            "Bad Request",
            "compression must be brotli or none\n",
            "text/plain",
        )
        .await;
        return;
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
    // Counted from admission, so the gauge already includes a client that has seen its 101.
    let counted = Counted::new(shared.metrics.connections(app).clone());
    // Before `after_seq`: messages published from here on are compressed for this subscriber.
    let _interest = (encoding == Encoding::Brotli).then(|| shared.hub.want_brotli());
    // Read before the 101 goes out: the shard replays anything published after this point.
    let after_seq = shared.hub.last_seq();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(ws_key.as_bytes())
    );
    if timeout(http::HEAD_TIMEOUT, stream.write_all(response.as_bytes()))
        .await
        .map_or(true, |r| r.is_err())
    {
        return; // `permit` and `counted` drop here and release every count.
    }
    let leftover = raw.buf[raw.head_len..].to_vec();
    drop(raw);
    drop(slot);
    let end = client_loop(stream, leftover, after_seq, encoding, &shared).await;
    drop(counted);
    // Lagged disconnects are counted by the shard that decided them.
    if end == End::PongTimeout {
        shared.metrics.pong_timeouts.increment(1);
    }
    debug!(%peer, ip = %req.client_ip, reason = ?end, "subscriber disconnected");
    drop(permit);
}

/// One unit of a gauge, given back on drop (every exit path).
struct Counted(metrics::Gauge);

impl Counted {
    fn new(g: metrics::Gauge) -> Self {
        g.increment(1.0);
        Self(g)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
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

/// The subscriber's reader: answers pings, notices pongs, closes and EOF, sends keepalive pings.
/// Writing is the shard's job; everything this task writes goes through the shard's queue so
/// frames never interleave.
///
/// The socket is registered with the reactor for readability only (see [`crate::shard`]).
async fn client_loop(
    stream: TcpStream,
    leftover: Vec<u8>,
    after_seq: u64,
    encoding: Encoding,
    shared: &Shared,
) -> End {
    let Ok(std_stream) = stream.into_std() else {
        return End::Io;
    };
    let sock = Arc::new(std_stream);
    // SAFETY: the std stream owns its descriptor; the Arc keeps it open and unchanged for as long
    // as the AsyncFd (which holds one reference) lives.
    let fd = match unsafe { AsyncFd::register_with_interest(sock.clone(), Interest::READABLE) } {
        Ok(fd) => fd,
        Err(_) => return End::Io,
    };
    let Some(h) = shared
        .shards
        .register(sock.clone(), after_seq, encoding)
        .await
    else {
        // The shards already stopped (shutdown): say goodbye ourselves, best effort.
        let _ = std::io::Write::write(&mut &*sock, &frame::close(1001));
        return End::Shutdown;
    };
    let end = read_loop(&fd, leftover, &h, shared).await;
    shared.shards.unregister(&h).await;
    match h.state.dropped() {
        Dropped::Lagged => End::Lagged,
        Dropped::Io => End::Io,
        Dropped::Shutdown => End::Shutdown,
        Dropped::No => end,
    }
}

async fn read_loop(
    fd: &AsyncFd<Arc<std::net::TcpStream>>,
    leftover: Vec<u8>,
    h: &SubHandle,
    shared: &Shared,
) -> End {
    let mut reader = FrameReader::new();
    let mut rbuf = [0u8; 512];
    let mut shutdown = shared.shutdown.clone();
    let mut events = Vec::new();
    let ping = shared.client_ping;
    // With pings disabled the timer never fires.
    let ping_every = ping.map_or(Duration::from_secs(86_400 * 365), |p| p.interval);
    let mut ping_timer = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();

    if reader.feed(&leftover, |e| events.push(e)).is_err() {
        return End::Protocol;
    }
    loop {
        for ev in events.drain(..) {
            last_heard = Instant::now();
            match ev {
                ClientEvent::Ping(p) => {
                    shared
                        .shards
                        .control(h, frame::encode(Opcode::Pong, &p))
                        .await
                }
                ClientEvent::Close(p) => {
                    shared
                        .shards
                        .control(h, frame::encode(Opcode::Close, &p))
                        .await;
                    return End::ClientClosed;
                }
                ClientEvent::Pong | ClientEvent::Data => {}
            }
        }
        tokio::select! {
            biased;
            // The shards send the close frames.
            () = shutting_down(&mut shutdown) => return End::Shutdown,
            ready = fd.readable() => {
                let Ok(mut guard) = ready else { return End::Io };
                match guard.try_io(|s| (&**s.get_ref()).read(&mut rbuf)) {
                    Err(_would_block) => {}
                    Ok(Ok(0)) | Ok(Err(_)) => return End::Io,
                    Ok(Ok(n)) => {
                        if reader.feed(&rbuf[..n], |e| events.push(e)).is_err() {
                            shared.shards.control(h, frame::close(1002)).await;
                            return End::Protocol;
                        }
                    }
                }
            },
            _ = ping_timer.tick() => {
                if let Some(p) = ping {
                    if last_heard.elapsed() > p.timeout {
                        return End::PongTimeout;
                    }
                    shared.shards.control(h, frame::encode(Opcode::Ping, b"")).await;
                }
            }
        }
    }
}

/// The handshake's parsing steps on bytes alone, for the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::net::{IpAddr, SocketAddr};

    use super::{ApiKeys, AppId, ClientIpResolver, RawHead, Route};

    /// What the connection handler reads from a request head before it answers.
    #[derive(Debug)]
    pub struct Head {
        /// `GET`.
        pub method_get: bool,
        /// The request target.
        pub path: String,
        /// `Upgrade: websocket` with `Connection: upgrade`.
        pub upgrade: bool,
        /// `Sec-WebSocket-Key`.
        pub ws_key: Option<String>,
        /// `Sec-WebSocket-Version: 13`.
        pub ws_version_ok: bool,
        /// The IP the connection counts against.
        pub client_ip: IpAddr,
    }

    /// Where a path goes.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Routed {
        /// `/healthz`.
        Health,
        /// A subscription, of `app` when API keys are configured.
        Subscribe(Option<AppId>),
        /// 404 or 401.
        Refused,
    }

    /// Parses `head` (the bytes up to and including the blank line) as the server does.
    pub fn parse(head: &[u8], peer: SocketAddr, resolver: &ClientIpResolver) -> Option<Head> {
        let raw = RawHead {
            buf: head.to_vec(),
            head_len: head.len(),
        };
        super::parse(&raw, peer, resolver).map(|r| Head {
            method_get: r.method_get,
            path: r.path,
            upgrade: r.upgrade,
            ws_key: r.ws_key,
            ws_version_ok: r.ws_version_ok,
            client_ip: r.client_ip,
        })
    }

    /// Routes `path` as the server does.
    pub fn route(path: &str, keys: &ApiKeys) -> Routed {
        match super::route(path, keys) {
            Route::Health => Routed::Health,
            Route::Subscribe(app) => Routed::Subscribe(app),
            Route::Unauthorized | Route::NotFound => Routed::Refused,
        }
    }
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
