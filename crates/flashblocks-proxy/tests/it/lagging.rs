//! A subscriber that stops reading is disconnected once it is more than `--message-buffer-size`
//! messages behind, and counted; the others keep receiving every message.

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_client_disconnected_while_others_keep_every_message() {
    let up = Upstream::start().await;
    let p = start_proxy(&[&up], &["--message-buffer-size", "4"]).await;
    up.wait_connections(1).await;
    let mut good = subscribe(p.local_addr(), "/").await.unwrap();

    // The laggard: a raw socket with a small receive buffer that completes the handshake and
    // then never reads again.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = sock.connect(p.local_addr()).await.unwrap();
    slow.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    slow.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    eventually(DEADLINE, "two subscribers", || async {
        p.limiter().active() == 2
    })
    .await;

    // ~64 KiB messages, each published only after the good client got the previous one, so only
    // the laggard can fall behind.
    let pad = "x".repeat(64 * 1024);
    let mut sent = 0u64;
    while metric(
        &p.metrics().render(),
        "flashblocks_proxy_lagged_disconnects_total",
    ) < 1.0
    {
        assert!(
            sent < 2000,
            "laggard never disconnected after {sent} messages"
        );
        up.send_text(format!(
            r#"{{"payload_id":"0x01","index":{sent},"metadata":{{"pad":"{pad}"}}}}"#
        ));
        let got = next_text(&mut good).await;
        assert_eq!(
            key_of(&got).1,
            sent,
            "good client missed or reordered a message"
        );
        sent += 1;
    }
    // The good client is still attached and still receives everything.
    for _ in 0..5 {
        up.send_text(format!(r#"{{"payload_id":"0x01","index":{sent}}}"#));
        assert_eq!(key_of(&next_text(&mut good).await).1, sent);
        sent += 1;
    }
    eventually(DEADLINE, "laggard's counts released", || async {
        p.limiter().active() == 1
            && metric(
                &p.metrics().render(),
                "flashblocks_proxy_connections{app=\"public\"}",
            ) == 1.0
    })
    .await;
    // The laggard's socket is closed by the proxy: draining it ends in EOF or a reset.
    let mut buf = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(DEADLINE, async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "laggard socket still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected_by_ping_timeout() {
    let up = Upstream::start().await;
    let p = start_proxy(
        &[&up],
        &[
            "--client-ping-enabled",
            "--client-ping-interval-ms",
            "100",
            "--client-pong-timeout-ms",
            "1000",
        ],
    )
    .await;
    let mut raw = tokio::net::TcpStream::connect(p.local_addr())
        .await
        .unwrap();
    raw.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // A client that answers pings (tungstenite does) stays connected meanwhile.
    let mut polite = subscribe(p.local_addr(), "/").await.unwrap();
    let polite_reader = tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(Ok(_)) = polite.next().await {}
    });
    eventually(DEADLINE, "silent client dropped", || async {
        metric(
            &p.metrics().render(),
            "flashblocks_proxy_client_pong_timeouts_total",
        ) == 1.0
    })
    .await;
    assert_eq!(p.limiter().active(), 1);
    polite_reader.abort();
}
