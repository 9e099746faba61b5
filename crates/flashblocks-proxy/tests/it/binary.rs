//! The `flashblocks-proxy` binary: configured through websocket-proxy's environment variables,
//! and a malformed value is a clear startup error.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
};

use crate::{client, harness::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_configure_the_binary() {
    let up = Upstream::start().await;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(proxy_bin())
        .env("LISTEN_ADDR", addr.to_string())
        .env("UPSTREAM_WS", up.url())
        .env("METRICS", "false")
        .env("API_KEYS", "alpha:secret:1")
        .env("ENABLE_COMPRESSION", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    eventually(DEADLINE, "binary answers /healthz", || async move {
        client::get(addr, "/healthz").await.is_some()
    })
    .await;
    up.wait_connections(1).await;

    assert_eq!(subscribe(addr, "/ws/wrong").await.unwrap_err().status, 401);
    let mut ws = subscribe(addr, "/ws/secret").await.unwrap();
    assert_eq!(subscribe(addr, "/ws/secret").await.unwrap_err().status, 429);
    let sent = flashblock(1, 0);
    up.send_text(sent.clone());
    let tokio_tungstenite::tungstenite::Message::Binary(b) = next_data(&mut ws).await else {
        panic!("ENABLE_COMPRESSION=true must send compressed binary frames")
    };
    assert_eq!(
        flashblocks_proxy::fanout::decompress(&b, 1 << 20).unwrap(),
        sent.as_bytes()
    );
}

#[test]
fn malformed_values_are_a_clear_startup_error() {
    for (flag, value) in [
        ("--api-keys", "alpha:secret:lots"),
        ("--redis-url", "nope://x"),
        ("--upstream-ws", "not a url"),
    ] {
        let out = Command::new(proxy_bin())
            .args([
                "--upstream-ws",
                "ws://127.0.0.1:1",
                "--metrics",
                "false",
                flag,
                value,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
        assert!(!stderr.contains("secret"), "the key leaked: {stderr}");
    }
}
