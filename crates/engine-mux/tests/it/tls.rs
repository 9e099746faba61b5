//! Upstreams behind TLS with a private CA generated per test: `https://` engines and a `wss://`
//! flashblocks stream work when `SSL_CERT_FILE` trusts the CA, and an untrusted certificate is
//! a clear error naming the URL. Each test sets `SSL_CERT_FILE` first thing; that is sound
//! only because nextest runs every test in a process of its own.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::B256;
use alloy_rpc_types_engine::PayloadId;
use futures::{SinkExt, StreamExt};
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};
use parking_lot::Mutex;
use serde_json::json;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    harness::eventually,
    mock_engine::{MockEngine, MockOptions, engine_client},
    peers::{TestCa, set_ssl_cert_file, start},
};

fn tls(ca: &TestCa) -> MockOptions {
    MockOptions {
        tls: Some(ca.acceptor()),
        ..Default::default()
    }
}

/// A builder's flashblocks endpoint behind TLS: frames the test pushes go to the client that
/// completed the TLS and WebSocket handshakes.
struct WssSource {
    addr: SocketAddr,
    tx: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>>,
    handshakes: Arc<Mutex<usize>>,
}

impl WssSource {
    async fn start(acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tx: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>> = Arc::default();
        let handshakes: Arc<Mutex<usize>> = Arc::default();
        let (slot, count) = (tx.clone(), handshakes.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(stream) = acceptor.accept(stream).await else {
                    continue;
                };
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                let (mut sink, mut source) = ws.split();
                let (frames_tx, mut frames_rx) = mpsc::unbounded_channel();
                *slot.lock() = Some(frames_tx);
                *count.lock() += 1;
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            frame = frames_rx.recv() => match frame {
                                Some(m) => if sink.send(m).await.is_err() { return },
                                None => return,
                            },
                            msg = source.next() => match msg {
                                Some(Ok(Message::Ping(p))) => { let _ = sink.send(Message::Pong(p)).await; }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                        }
                    }
                });
            }
        });
        Self {
            addr,
            tx,
            handshakes,
        }
    }

    fn url(&self) -> String {
        format!("wss://{}", self.addr)
    }

    fn send(&self, fb: &OpFlashblockPayload) {
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(Message::Text(serde_json::to_string(fb).unwrap().into()));
        }
    }

    fn handshakes(&self) -> usize {
        *self.handshakes.lock()
    }
}

/// A builder EL and a local EL on `https://` with certificates from a private CA, trusted
/// through `SSL_CERT_FILE` alone (no flag): engine-mux uses the builder's blocks, `/healthz`
/// is 200.
#[tokio::test]
async fn https_el_and_builder_work_end_to_end_when_ssl_cert_file_trusts_their_ca() {
    let ca = TestCa::new("https");
    set_ssl_cert_file(&ca.pem_file);
    let p = start(tls(&ca), tls(&ca), &[]).await;
    assert!(p.local.url().starts_with("https://") && p.builder.url().starts_with("https://"));
    p.builder_blocks(2).await;
    assert_eq!(p.healthz().await, 200);
}

/// A builder's `wss://` flashblocks stream with a certificate from a private CA trusted
/// through `SSL_CERT_FILE`: engine-mux connects and accepts the flashblock it sends.
#[tokio::test]
async fn wss_flashblocks_stream_is_received() {
    let ca = TestCa::new("wss");
    set_ssl_cert_file(&ca.pem_file);
    let source = WssSource::start(ca.acceptor()).await;
    let url = source.url();
    let p = start(
        MockOptions::default(),
        MockOptions::default(),
        &[
            "--flashblocks",
            "--flashblocks-builder-url",
            url.as_str(),
            "--flashblocks-port",
            "0",
        ],
    )
    .await;
    eventually(Duration::from_secs(3), "TLS stream connected", || async {
        source.handshakes() == 1
    })
    .await;
    p.op_node
        .call(
            "engine_forkchoiceUpdatedV3",
            json!([
                crate::harness::forkchoice(100),
                crate::harness::attributes(false)
            ]),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(2),
        "builder answered the FCU",
        || async { !p.builder.issued_ids().is_empty() },
    )
    .await;
    let id: PayloadId = serde_json::from_value(json!(p.builder.issued_ids()[0])).unwrap();
    let mut fb = OpFlashblockPayload {
        payload_id: id,
        index: 0,
        base: Some(OpFlashblockPayloadBase {
            parent_hash: B256::repeat_byte(0x11),
            block_number: 101,
            gas_limit: 30_000_000,
            timestamp: crate::mock_engine::now(),
            parent_beacon_block_root: B256::repeat_byte(0x55),
            ..Default::default()
        }),
        ..Default::default()
    };
    fb.diff.block_hash = B256::repeat_byte(0xf0);
    source.send(&fb);
    eventually(
        Duration::from_secs(2),
        "the flashblock accepted",
        || async { p.metric(r#"engine_mux_flashblocks_total{event="accepted"}"#) == 1.0 },
    )
    .await;
}

/// Upstreams whose certificate a CA signed that nothing trusts (`SSL_CERT_FILE` names another
/// CA): an HTTPS call fails with an error naming the URL and the certificate problem, and the
/// `wss://` stream never completes a handshake while engine-mux keeps retrying with backoff.
#[tokio::test]
async fn untrusted_certificate_is_a_clear_error_naming_the_url() {
    let trusted = TestCa::new("trusted");
    let untrusted = TestCa::new("untrusted");
    set_ssl_cert_file(&trusted.pem_file);
    let builder = MockEngine::start_with("builder", 0x04, 0xbb, tls(&untrusted)).await;
    let client = engine_client(&builder.url(), Some(builder.secret), Duration::from_secs(2));
    let err = client
        .call::<serde_json::Value>("eth_chainId", &(), client.timeout())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), "transport", "{text}");
    assert!(text.contains(&builder.url()), "names the URL: {text}");
    assert!(text.contains("UnknownIssuer"), "names the problem: {text}");
    assert!(text.contains("SSL_CERT_FILE"), "says what to fix: {text}");
    assert!(builder.calls().is_empty());

    let source = WssSource::start(untrusted.acceptor()).await;
    let url = source.url();
    let p = start(
        MockOptions::default(),
        MockOptions::default(),
        &[
            "--flashblocks",
            "--flashblocks-builder-url",
            url.as_str(),
            "--flashblocks-port",
            "0",
            "--flashblock-builder-ws-initial-reconnect-ms",
            "10",
            "--flashblock-builder-ws-max-reconnect-ms",
            "20",
        ],
    )
    .await;
    eventually(Duration::from_secs(3), "retried with backoff", || async {
        p.metric("engine_mux_flashblocks_reconnects_total") >= 3.0
    })
    .await;
    assert_eq!(source.handshakes(), 0);
    assert_eq!(p.metric("engine_mux_flashblocks_connected"), 0.0);
}
