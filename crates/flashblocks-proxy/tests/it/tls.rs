//! A `wss://` upstream whose certificate a private CA generated in the test signed: trusted
//! through the configuration's roots, the proxy connects and fans its flashblocks out; the binary
//! started with `SSL_CERT_FILE` naming the CA (set on the child process only, never on the test
//! process) does the same, as an operator runs it.

use std::{net::SocketAddr, time::Duration};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use engine_api::tls::TrustedRoots;
use test_utils::TestCa;

use crate::harness::*;

/// A `wss://` upstream streaming flashblocks of payload 1 (index 0, 1, ...) every 50 ms to
/// each connection, answering pings meanwhile.
async fn wss_upstream(acceptor: tokio_rustls::TlsAcceptor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut source) = ws.split();
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                for index in 0.. {
                    tokio::select! {
                        _ = tick.tick() => {
                            if sink.send(Message::text(flashblock(1, index))).await.is_err() {
                                return;
                            }
                        }
                        m = source.next() => if !matches!(m, Some(Ok(_))) { return },
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn wss_upstream_trusted_through_the_configured_ca_is_fanned_out() {
    let ca = TestCa::new("flashblocks-proxy");
    let addr = wss_upstream(ca.acceptor()).await;
    let url = format!("wss://localhost:{}", addr.port());
    let mut argv = vec!["flashblocks-proxy".to_string()];
    let mut flags = base_flags(&[]);
    let at = flags.iter().position(|f| f == "--upstream-ws").unwrap();
    flags[at + 1] = url;
    argv.extend(flags);
    let mut config = flashblocks_proxy::config::Config::try_from(
        <flashblocks_proxy::cli::Args as clap::Parser>::try_parse_from(argv).unwrap(),
    )
    .unwrap();
    config.upstream.tls_roots = TrustedRoots::ca_file(&ca.pem_file);
    let p = flashblocks_proxy::start(config).await.unwrap();
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();
    let (payload, _) = key_of(&next_text(&mut ws).await);
    assert_eq!(payload, format!("0x{:016x}", 1));
}

/// The binary honours `SSL_CERT_FILE` as websocket-proxy operators use it: no flag, the variable
/// alone makes the private CA trusted.
#[tokio::test]
async fn binary_trusts_the_ca_ssl_cert_file_names() {
    let ca = TestCa::new("flashblocks-proxy-bin");
    let addr = wss_upstream(ca.acceptor()).await;
    let url = format!("wss://localhost:{}", addr.port());
    let child = ProxyProcess::spawn_with(
        &[],
        &["--upstream-ws", &url],
        &[("SSL_CERT_FILE", ca.pem_file.as_os_str())],
    )
    .await;
    let mut ws = subscribe(child.addr, "/").await.unwrap();
    let (payload, _) = key_of(&next_text(&mut ws).await);
    assert_eq!(payload, format!("0x{:016x}", 1));
}
