//! flashblocks-proxy in process (its library, configured through its own CLI), and a plain
//! WebSocket subscriber to it.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use flashblocks_proxy::{ProxyHandle, cli::Args, config::Config};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

/// A WebSocket subscriber.
pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Starts flashblocks-proxy on an ephemeral loopback port, fanning out `upstream_url` (for
/// example engine-mux's outbound flashblocks), with no API keys, no compression, no Redis and
/// no metrics listener.
pub async fn start_proxy(upstream_url: &str) -> ProxyHandle {
    let argv = [
        "flashblocks-proxy",
        "--listen-addr",
        "127.0.0.1:0",
        "--metrics",
        "false",
        "--upstream-ws",
        upstream_url,
    ];
    let config = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap();
    flashblocks_proxy::start(config).await.unwrap()
}

/// `ws://addr/`.
pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// Subscribes to `url`, failing the test if that takes longer than `deadline`.
pub async fn subscribe(url: &str, deadline: Duration) -> Ws {
    tokio::time::timeout(deadline, tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
        .0
}

/// The next text frame parsed as JSON, skipping control frames; fails the test when nothing
/// arrives within `deadline`, the stream ends, or the frame is not JSON text.
pub async fn next_json(ws: &mut Ws, deadline: Duration) -> Value {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let msg = tokio::time::timeout_at(until, ws.next())
            .await
            .expect("a frame before the deadline")
            .expect("stream open")
            .expect("readable frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Binary(_) => panic!("binary frame: the proxy compresses only when asked"),
            _ => {}
        }
    }
}
