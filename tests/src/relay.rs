//! A WebSocket relay a test can cut and restore, between a flashblocks source and a subscriber.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use tokio::{net::TcpListener, sync::watch};

/// A WebSocket relay between a flashblocks source and flashblocks-rpc that a test can cut
/// (closing every connection and refusing new ones) and restore.
pub struct Relay {
    /// Where subscribers connect.
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay of `source`, listening on a free loopback port.
    pub async fn start(source: String) -> Self {
        Self::start_with(source, false).await
    }

    /// A relay of `source` that cuts every flashblock's metadata down to `{block_number}`, as
    /// Base's public stream sends it (no receipts, no balances).
    pub async fn stripping_metadata(source: String) -> Self {
        Self::start_with(source, true).await
    }

    async fn start_with(source: String, strip: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, up_rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if !*up_rx.borrow() {
                    drop(stream);
                    continue;
                }
                let source = source.clone();
                let mut up_rx = up_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut downstream) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let Ok((mut upstream, _)) = tokio_tungstenite::connect_async(source).await
                    else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            msg = upstream.next() => match msg {
                                Some(Ok(m)) if m.is_text() || m.is_binary() => {
                                    let m = if strip { strip_metadata(m) } else { m };
                                    if downstream.send(m).await.is_err() { break; }
                                }
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                            _ = cut(&mut up_rx) => break,
                        }
                    }
                    let _ = downstream.close(None).await;
                });
            }
        });
        Self { addr, up, task }
    }

    /// The relay's WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        let _ = self.up.send(true);
    }
}

/// The frame with its metadata cut to `{block_number}` (frames that are not JSON pass as
/// they are).
fn strip_metadata(
    m: tokio_tungstenite::tungstenite::Message,
) -> tokio_tungstenite::tungstenite::Message {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&m.clone().into_data()) else {
        return m;
    };
    let number = v["metadata"]["block_number"].clone();
    v["metadata"] = serde_json::json!({ "block_number": number });
    tokio_tungstenite::tungstenite::Message::text(v.to_string())
}

/// Resolves once the relay is cut.
async fn cut(up: &mut watch::Receiver<bool>) {
    loop {
        if !*up.borrow_and_update() {
            return;
        }
        if up.changed().await.is_err() {
            return;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
