//! Shared fixtures: a real `redis-server`, scriptable upstream WebSocket servers, proxy
//! instances (in process or as a child process), subscribers, and deadline-bounded waits.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use clap::Parser;
use flashblocks_proxy::{ProxyHandle, cli::Args, config::Config};
use futures::{SinkExt, StreamExt};
use tokio::{
    net::TcpListener,
    sync::{broadcast, watch},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

/// Default bound for every wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The workspace's one poll-with-a-deadline, free port and metric reader, for every scenario.
pub use test_utils::{eventually, free_port, metric};

/// A `redis-server` child process on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts `redis-server` and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts `redis-server` on `port` (e.g. to bring a killed one back).
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                // DEBUG SLEEP stalls the server in the tests of replies that come too late.
                "--enable-debug-command",
                "local",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install -y redis-server)");
        let server = Self {
            child: Some(child),
            port,
        };
        let url = server.url();
        eventually(DEADLINE, "redis-server answers PING", || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url) else {
                    return false;
                };
                let Ok(mut c) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            }
        })
        .await;
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection for inspecting keys.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn killed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|k| *k).await.is_ok();
}

/// A scriptable upstream: every connected proxy receives what the test sends.
pub struct Upstream {
    pub addr: SocketAddr,
    tx: broadcast::Sender<Message>,
    conns: watch::Receiver<usize>,
    kill: watch::Sender<bool>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Listens on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _) = broadcast::channel::<Message>(4096);
        let (conns_tx, conns) = watch::channel(0usize);
        let (kill, kill_rx) = watch::channel(false);
        let tx2 = tx.clone();
        let acceptor = tokio::spawn(async move {
            let mut kill_rx2 = kill_rx.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = killed(&mut kill_rx2) => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let mut rx = tx2.subscribe();
                let conns_tx = conns_tx.clone();
                let mut kill_rx = kill_rx.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let (mut sink, mut stream) = ws.split();
                    conns_tx.send_modify(|n| *n += 1);
                    loop {
                        tokio::select! {
                            m = rx.recv() => {
                                let Ok(m) = m else { break };
                                if sink.send(m).await.is_err() { break }
                            }
                            // Reading answers the proxy's pings.
                            m = stream.next() => if !matches!(m, Some(Ok(_))) { break },
                            () = killed(&mut kill_rx) => break,
                        }
                    }
                    conns_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        Self {
            addr,
            tx,
            conns,
            kill,
            acceptor,
        }
    }

    /// `ws://addr`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Waits until `n` proxies are connected.
    pub async fn wait_connections(&self, n: usize) {
        let mut c = self.conns.clone();
        tokio::time::timeout(DEADLINE, c.wait_for(|v| *v == n))
            .await
            .unwrap_or_else(|_| panic!("upstream {} never had {n} connections", self.addr))
            .unwrap();
    }

    /// Sends a text frame to every connected proxy.
    pub fn send_text(&self, s: impl Into<String>) {
        let _ = self.tx.send(Message::Text(s.into().into()));
    }

    /// Sends a binary frame to every connected proxy.
    pub fn send_binary(&self, b: impl Into<Bytes>) {
        let _ = self.tx.send(Message::Binary(b.into()));
    }

    /// Drops every connection and stops listening, as a crash would.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }

    /// Kills and waits until the port is free and every connection is gone.
    pub async fn stop(self) -> SocketAddr {
        self.kill();
        let _ = (&mut { self.acceptor }).await;
        let mut c = self.conns.clone();
        let _ = tokio::time::timeout(DEADLINE, c.wait_for(|v| *v == 0)).await;
        self.addr
    }
}

/// A flashblock in op-alloy's `OpFlashblockPayload` JSON shape; `base` only on index 0.
pub fn flashblock(payload: u64, index: u64) -> String {
    let base = if index == 0 {
        format!(
            r#""base":{{"parent_beacon_block_root":"0x{z}","parent_hash":"0x{z}","fee_recipient":"0x4200000000000000000000000000000000000011","prev_randao":"0x{z}","block_number":"0x{payload:x}","gas_limit":"0x1c9c380","timestamp":"0x6777","extra_data":"0x","base_fee_per_gas":"0x1"}},"#,
            z = "0".repeat(64)
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"payload_id":"0x{payload:016x}","index":{index},{base}"diff":{{"state_root":"0x{z}","receipts_root":"0x{z}","logs_bloom":"0x{bloom}","gas_used":"0x5208","block_hash":"0x{z}","transactions":[],"withdrawals":[],"withdrawals_root":"0x{z}"}},"metadata":{{"block_number":{payload}}}}}"#,
        z = "0".repeat(64),
        bloom = "0".repeat(512)
    )
}

/// Proxy flags common to the tests: loopback, ephemeral port, no metrics listener.
pub fn base_flags(upstreams: &[&Upstream]) -> Vec<String> {
    let ups: Vec<String> = upstreams.iter().map(|u| u.url()).collect();
    vec![
        "--listen-addr".into(),
        "127.0.0.1:0".into(),
        "--metrics".into(),
        "false".into(),
        "--upstream-ws".into(),
        ups.join(","),
        "--subscriber-ping-interval-ms".into(),
        "200".into(),
        "--subscriber-pong-timeout-ms".into(),
        "1000".into(),
        "--subscriber-max-interval-ms".into(),
        "500".into(),
    ]
}

/// Starts an in-process proxy with `base_flags` plus `extra`.
pub async fn start_proxy(upstreams: &[&Upstream], extra: &[&str]) -> ProxyHandle {
    let mut argv = vec!["flashblocks-proxy".to_string()];
    let mut base = base_flags(upstreams);
    if extra.contains(&"--metrics") {
        base.drain(2..4);
    }
    argv.extend(base);
    argv.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap();
    flashblocks_proxy::start(config).await.unwrap()
}

/// The `flashblocks-proxy` binary: cargo's, or `FLASHBLOCKS_PROXY_BIN` (when several checkouts
/// share one target directory, cargo's uplifted copy may be another checkout's build).
pub fn proxy_bin() -> String {
    std::env::var("FLASHBLOCKS_PROXY_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_flashblocks-proxy").to_string())
}

/// A proxy running as a child process (so it can be SIGKILLed); killed on drop.
pub struct ProxyProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl ProxyProcess {
    /// Spawns the `flashblocks-proxy` binary and waits until `/healthz` answers.
    pub async fn spawn(upstreams: &[&Upstream], extra: &[&str]) -> Self {
        Self::spawn_with(upstreams, extra, &[]).await
    }

    /// [`Self::spawn`] with extra environment variables for the child (and only the child).
    pub async fn spawn_with(
        upstreams: &[&Upstream],
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut flags = base_flags(upstreams);
        flags[1] = addr.to_string();
        let child = Command::new(proxy_bin())
            .args(flags)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Self {
            child: Some(child),
            addr,
        };
        eventually(DEADLINE, "child proxy answers /healthz", || async move {
            crate::client::get(addr, "/healthz").await.is_some()
        })
        .await;
        p
    }

    /// SIGKILL: no graceful release of anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A WebSocket subscriber.
pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A refused upgrade.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

/// Connects to `ws://addr{path}` with extra headers.
pub async fn subscribe_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<Ws, Refused> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).unwrap());
    }
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(Refused {
            status: resp.status().as_u16(),
            body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        }),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

/// Connects to `ws://addr{path}`.
pub async fn subscribe(addr: SocketAddr, path: &str) -> Result<Ws, Refused> {
    subscribe_with(addr, path, &[]).await
}

/// The next data message (text or binary payload), skipping control frames.
pub async fn next_data(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("no message before the deadline")
            .expect("stream ended")
            .expect("websocket error");
        if matches!(m, Message::Text(_) | Message::Binary(_)) {
            return m;
        }
    }
}

/// The next text message.
pub async fn next_text(ws: &mut Ws) -> String {
    match next_data(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// `(payload_id, index)` of a flashblock JSON text.
pub fn key_of(json: &str) -> (String, u64) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (
        v["payload_id"].as_str().unwrap().to_string(),
        v["index"].as_u64().unwrap(),
    )
}

/// The members of lease set `key` that have not lapsed, by Redis' own clock.
pub async fn live_leases(conn: &mut impl redis::aio::ConnectionLike, key: &str) -> Vec<String> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    redis::cmd("ZRANGEBYSCORE")
        .arg(key)
        .arg(format!("({now_ms}"))
        .arg("+inf")
        .query_async(conn)
        .await
        .unwrap()
}

/// Live Redis leases instance `p` holds in the per-IP set of `ip`.
pub async fn redis_ip_count(redis: &RedisServer, p: &ProxyHandle, ip: &str) -> i64 {
    let keys = p.limiter().redis_keys().unwrap().clone();
    let leases = live_leases(&mut redis.conn().await, &keys.ip(ip)).await;
    leases.iter().filter(|t| keys.owns(t)).count() as i64
}

/// A real three-master Redis Cluster: `redis-server --cluster-enabled yes` × 3 in temporary
/// directories, joined with `redis-cli --cluster create`; killed and removed on drop.
pub struct RedisCluster {
    nodes: Vec<Child>,
    dir: std::path::PathBuf,
    pub ports: Vec<u16>,
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node reports `cluster_state:ok`.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "fbproxy-cluster-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            ports: Vec::new(),
        };
        for _ in 0..3 {
            let port = free_cluster_port();
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--dir",
                    node_dir.to_str().unwrap(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install -y redis-server)");
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            eventually(DEADLINE, "cluster node answers PING", || async move {
                node_info(port, "PING").await.is_some()
            })
            .await;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect(
                "redis-cli must be installed (it comes with redis-server: package redis-tools)",
            );
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for &port in &cluster.ports {
            eventually(DEADLINE, "cluster_state:ok on every node", || async move {
                node_info(port, "CLUSTER INFO")
                    .await
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            })
            .await;
        }
        cluster
    }

    /// `redis://127.0.0.1:<port>` of the first node (a seed; the client discovers the rest).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// A cluster connection for inspecting keys.
    pub async fn conn(&self) -> redis::cluster_async::ClusterConnection {
        redis::cluster::ClusterClient::new(vec![self.url()])
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }
}

/// Runs a command without arguments (`PING`, `CLUSTER INFO`) on one node.
async fn node_info(port: u16, command: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut c = client.get_multiplexed_async_connection().await.ok()?;
    let mut parts = command.split(' ');
    let mut cmd = redis::cmd(parts.next()?);
    for p in parts {
        cmd.arg(p);
    }
    cmd.query_async::<String>(&mut c).await.ok()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
