//! Fan-out benchmark (not a test): runs the `flashblocks-proxy` binary as a child process, feeds
//! it ~4 KB flashblocks at a fixed rate from an in-process upstream, and measures delivery
//! latency at N raw-socket subscribers plus the proxy's CPU time and peak RSS.
//!
//! `ulimit -n 65536 && cargo run --release -p flashblocks-proxy --bin fanout-bench -- \
//!    --subscribers 1000,5000,10000`

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, broadcast, watch},
    time::Instant,
};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "flashblocks-proxy fan-out benchmark")]
struct BenchArgs {
    /// Subscriber counts to run, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    subscribers: Vec<usize>,
    /// Messages per second.
    #[arg(long, default_value_t = 5)]
    rate: u64,
    /// Approximate message size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Pad messages with pseudo-random hex (compresses about as well as real flashblocks'
    /// hex-encoded transactions, ~2:1) instead of a repeated `ab` (compresses ~100:1).
    #[arg(long)]
    random_hex: bool,
    /// Publishing time per run.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Path of the proxy binary (default: next to this binary).
    #[arg(long)]
    proxy_bin: Option<String>,
    /// Request path of the subscribers (e.g. `/?compression=brotli`).
    #[arg(long, default_value = "/")]
    path: String,
    /// Record latency at every n-th subscriber only (the others only count what they receive);
    /// keeps the bench's own CPU down when frames must be inflated to read the timestamp.
    #[arg(long, default_value_t = 1)]
    latency_every: usize,
    /// Extra flags passed to the proxy (e.g. `--enable-compression`).
    #[arg(long, allow_hyphen_values = true)]
    proxy_flags: Vec<String>,
}

fn clock() -> u64 {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

const TS_DIGITS: usize = 20;
const TS_AT: usize = 6; // after `{"ts":`

fn message(seq: u64, size: usize, random_hex: bool) -> String {
    let head = format!(
        r#"{{"ts":{:020},"payload_id":"0x{:016x}","index":{},"diff":{{"transactions":["0x"#,
        clock(),
        seq / 10,
        seq % 10
    );
    let tail = r#""]},"metadata":{}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    if !random_hex {
        return format!("{head}{}{tail}", "ab".repeat(pad / 2));
    }
    // xorshift64: cheap, deterministic per message, incompressible beyond hex's 2:1.
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let hex: String = (0..pad / 2 * 2)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdef"[(x & 15) as usize])
        })
        .collect();
    format!("{head}{hex}{tail}")
}

/// Send timestamps of the messages published, keyed by the last bytes of their Brotli form
/// (the proxy compresses with the same function, deterministically): subscribers of compressed
/// frames look the timestamp up instead of inflating every frame, which would cost the bench
/// more CPU than the proxy spends.
fn compressed_sends() -> &'static std::sync::RwLock<std::collections::HashMap<[u8; 16], u64>> {
    static SENDS: OnceLock<std::sync::RwLock<std::collections::HashMap<[u8; 16], u64>>> =
        OnceLock::new();
    SENDS.get_or_init(Default::default)
}

fn tail_key(data: &[u8]) -> Option<[u8; 16]> {
    data.get(data.len().checked_sub(16)?..)?.try_into().ok()
}

/// Records the Brotli form of `msg` (only while subscribers ask for compressed frames).
fn record_compressed(msg: &str) {
    let z = flashblocks_proxy::fanout::compress(msg.as_bytes());
    let ts = msg
        .get(TS_AT..TS_AT + TS_DIGITS)
        .and_then(|d| d.parse().ok())
        .unwrap_or_default();
    if let Some(key) = tail_key(&z) {
        compressed_sends()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, ts);
    }
}

/// The send timestamp of a data frame: at a fixed offset of text JSON, looked up for a
/// Brotli-compressed binary frame.
fn timestamp(opcode: u8, payload: &[u8]) -> Option<u64> {
    if opcode == 2 && payload.first() != Some(&b'{') {
        let key = tail_key(payload)?;
        return compressed_sends()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
    }
    std::str::from_utf8(payload.get(TS_AT..TS_AT + TS_DIGITS)?)
        .ok()?
        .parse()
        .ok()
}

fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// ((user, system) CPU seconds, peak RSS KiB, current RSS KiB) of a process.
fn proc_stats(pid: u32) -> Option<((f64, f64), u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14/15 of stat (utime, stime) are 12/13 after the command; CLK_TCK is 100 on Linux.
    let user = f.get(11)?.parse::<u64>().ok()? as f64 / 100.0;
    let sys = f.get(12)?.parse::<u64>().ok()? as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |k: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(k))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(((user, sys), kib("VmHWM:")?, kib("VmRSS:")?))
}

struct Publisher {
    addr: SocketAddr,
    tx: broadcast::Sender<String>,
    connected: watch::Receiver<usize>,
}

async fn publisher() -> Publisher {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<String>(64);
    let (conn_tx, connected) = watch::channel(0);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let mut rx = tx2.subscribe();
            let conn_tx = conn_tx.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                conn_tx.send_modify(|n| *n += 1);
                loop {
                    tokio::select! {
                        m = rx.recv() => {
                            let Ok(m) = m else { break };
                            if sink.send(Message::Text(m.into())).await.is_err() { break }
                        }
                        m = stream.next() => if !matches!(m, Some(Ok(_))) { break },
                    }
                }
                conn_tx.send_modify(|n| *n -= 1);
            });
        }
    });
    Publisher {
        addr,
        tx,
        connected,
    }
}

#[derive(Default)]
struct SubResult {
    latencies_us: Vec<u32>,
    received: u64,
    closed_early: bool,
}

async fn connect(addr: SocketAddr, path: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await?;
        head.push(b[0]);
        if head.len() > 4096 {
            return Err(std::io::Error::other("handshake head too long"));
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&head).into_owned(),
        ));
    }
    Ok(s)
}

/// Reads server frames until `stop`; records the latency of every data frame.
async fn subscriber(
    s: TcpStream,
    mut stop: watch::Receiver<bool>,
    expected: usize,
    timed: bool,
) -> SubResult {
    let mut r = BufReader::with_capacity(8192, s);
    let mut res = SubResult {
        latencies_us: Vec::with_capacity(expected),
        ..Default::default()
    };
    let mut payload = Vec::with_capacity(8192);
    loop {
        let frame = async {
            let mut h = [0u8; 2];
            r.read_exact(&mut h).await?;
            let len = match h[1] & 0x7f {
                126 => u64::from(r.read_u16().await?),
                127 => r.read_u64().await?,
                n => u64::from(n),
            };
            payload.resize(len as usize, 0);
            r.read_exact(&mut payload).await?;
            std::io::Result::Ok(h[0] & 0x0f)
        };
        tokio::select! {
            f = frame => match f {
                Ok(op @ (1 | 2)) => {
                    let now = clock();
                    if let Some(ts) = timed.then(|| timestamp(op, &payload)).flatten() {
                        res.latencies_us.push(now.saturating_sub(ts).min(u64::from(u32::MAX)) as u32);
                    }
                    res.received += 1;
                }
                Ok(8) | Err(_) => {
                    res.closed_early = !*stop.borrow();
                    return res;
                }
                Ok(_) => {}
            },
            _ = stop.changed() => return res,
        }
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn run(args: &BenchArgs, n: usize, bin: &str) {
    let publ = publisher().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let limit = (n + 100).to_string();
    let mut child: Child = Command::new(bin)
        .args([
            "--listen-addr",
            &addr.to_string(),
            "--upstream-ws",
            &format!("ws://{}", publ.addr),
        ])
        .args([
            "--instance-connection-limit",
            &limit,
            "--per-ip-connection-limit",
            &limit,
        ])
        .args(["--metrics", "false", "--log-level", "warn"])
        .args(&args.proxy_flags)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn proxy");
    let pid = child.id();
    let mut connected = publ.connected.clone();
    tokio::time::timeout(Duration::from_secs(30), connected.wait_for(|c| *c == 1))
        .await
        .expect("proxy never connected upstream")
        .unwrap();

    let t0 = Instant::now();
    let expected = (args.rate * args.duration_secs) as usize;
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(256));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let gate = gate.clone();
        let failed = failed.clone();
        let path = args.path.clone();
        conns.push(tokio::spawn(async move {
            let _p = gate.acquire().await.unwrap();
            for _attempt in 0..5 {
                match connect(addr, &path).await {
                    Ok(s) => return Some(s),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            failed.fetch_add(1, Ordering::Relaxed);
            None
        }));
    }
    let mut subs = Vec::with_capacity(n);
    for (i, c) in conns.into_iter().enumerate() {
        if let Some(s) = c.await.unwrap() {
            let timed = i % args.latency_every.max(1) == 0;
            subs.push(tokio::spawn(subscriber(
                s,
                stop_rx.clone(),
                expected,
                timed,
            )));
        }
    }
    let connect_time = t0.elapsed();
    let connect_failed = failed.load(Ordering::Relaxed);
    // Let the proxy settle after the connection storm before measuring the steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (cpu0, _, _) = proc_stats(pid).unwrap();
    let (me0, _, _) = proc_stats(std::process::id()).unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.rate));
    for seq in 0..expected as u64 {
        tick.tick().await;
        let msg = message(seq, args.size, args.random_hex);
        if args.path.contains("compression=brotli")
            || (args.proxy_flags.iter().any(|f| f == "--enable-compression")
                && !args.path.contains("compression=none"))
        {
            record_compressed(&msg);
        }
        let _ = publ.tx.send(msg);
    }
    let elapsed = started.elapsed();
    // Grace period for the last message to arrive everywhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu1, hwm, rss) = proc_stats(pid).unwrap();
    let (me1, _, _) = proc_stats(std::process::id()).unwrap();
    eprintln!(
        "subscribers' own CPU (bench process): {:.2} s user + {:.2} s sys",
        me1.0 - me0.0,
        me1.1 - me0.1
    );
    let _ = stop_tx.send(true);

    let mut lat = Vec::with_capacity(n * expected);
    let (mut dropped, mut missing) = (0usize, 0u64);
    for s in subs {
        let r = s.await.unwrap();
        dropped += usize::from(r.closed_early);
        missing += (expected as u64).saturating_sub(r.received);
        lat.extend(r.latencies_us);
    }
    let _ = child.kill();
    let _ = child.wait();
    lat.sort_unstable();
    let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let cpu = user + sys;
    println!(
        "| {n} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} s ({:.1}% of a core; user {:.2} s, sys {:.2} s) | {:.1} MiB | {:.1} MiB | {} | {} | {:.1} s |",
        lat.len(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.last().map_or(f64::NAN, |m| f64::from(*m) / 1000.0),
        cpu,
        100.0 * cpu / (elapsed.as_secs_f64() + 2.0),
        user,
        sys,
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        dropped + connect_failed,
        missing,
        connect_time.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    let args = BenchArgs::parse();
    let max = args.subscribers.iter().copied().max().unwrap_or(0) as u64;
    if let Some(lim) = nofile_limit()
        && lim < max + 1024
    {
        eprintln!(
            "open-file limit {lim} is too low for {max} subscribers: run `ulimit -n 65536` first"
        );
        std::process::exit(2);
    }
    let bin = args.proxy_bin.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.with_file_name("flashblocks-proxy")
            .to_string_lossy()
            .into_owned()
    });
    clock();
    println!(
        "rate {}/s, ~{} B messages, {} s per run; latency in ms; CPU over the publishing window + 2 s",
        args.rate, args.size, args.duration_secs
    );
    let sample = message(0, args.size, args.random_hex);
    println!(
        "message {} B as text, {} B Brotli-compressed (quality 5, as the proxy compresses)",
        sample.len(),
        flashblocks_proxy::fanout::compress(sample.as_bytes()).len()
    );
    println!(
        "| subscribers | samples | p50 | p99 | p99.9 | max | proxy CPU | peak RSS | RSS at end | dropped | missing msgs | connect time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.subscribers {
        run(&args, n, &bin).await;
    }
}
