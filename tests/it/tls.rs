//! A `wss://` flashblocks stream whose certificate a private CA generated in the test signed,
//! trusted through flashblocks-rpc's configured roots alone (what `SSL_CERT_FILE` naming the
//! CA's file gives the binary): flashblocks-rpc connects and serves the pending block it
//! streams. The process environment is left alone, so this runs beside any other test.

use std::time::Duration;

use alloy_primitives::B256;
use futures::SinkExt;
use serde_json::json;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;

use e2e::{LoneEngine, call, client, eventually_some, flashblock, metric, rpc_config, transfer};
use engine_api::tls::TrustedRoots;
use test_utils::TestCa;

const DEADLINE: Duration = Duration::from_secs(5);

/// A `wss://localhost` server sending the frames the test pushes to the first connection.
async fn wss_server(acceptor: tokio_rustls::TlsAcceptor) -> (String, mpsc::Sender<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://localhost:{}", listener.local_addr().unwrap().port());
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(stream) = acceptor.accept(stream).await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(m) = rx.recv().await {
            if ws.send(m).await.is_err() {
                return;
            }
        }
    });
    (url, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_stream_trusted_through_the_configured_roots_serves_pending() {
    let ca = TestCa::new("flashblocks-rpc");
    let LoneEngine {
        engine,
        upstream: _,
        signers,
        chain_id,
        head_hash,
    } = LoneEngine::start().await;

    let (url, frames) = wss_server(ca.acceptor()).await;
    let mut config = rpc_config(&url, &engine.http_url(), &[]);
    config.tls_roots = TrustedRoots::ca_file(&ca.pem_file);
    let rpc = flashblocks_rpc::start(config).await.unwrap();
    let ours = client(&rpc.http_url(), None);
    let sent = transfer(&signers[0], chain_id, 0);
    let hash = B256::repeat_byte(0xa0);
    frames
        .send(flashblock(
            0xa,
            0,
            1,
            head_hash,
            0,
            std::slice::from_ref(&sent),
            hash,
        ))
        .await
        .unwrap();
    eventually_some(DEADLINE, "the streamed block served as pending", || async {
        let b = call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await;
        (b["hash"] == json!(hash)).then_some(())
    })
    .await;
    assert_eq!(
        metric(&rpc.metrics_text(), "flashblocks_rpc_stream_connected"),
        1.0
    );
    rpc.shutdown().await;
}
