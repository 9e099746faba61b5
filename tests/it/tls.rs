//! A `wss://` flashblocks stream whose certificate a private CA generated in the test signed,
//! trusted through `SSL_CERT_FILE` alone: flashblocks-rpc connects and serves the pending block
//! it streams. The test sets `SSL_CERT_FILE` before any runtime thread exists; that is sound
//! only because nextest runs every test in a process of its own.

use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use devnet::chain::accounts::{raw_transaction, sign_transfer};
use futures::SinkExt;
use serde_json::json;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;

use e2e::{LoneEngine, call, client, flashblock, metric, start_rpc, wait_for};
use test_utils::{TestCa, set_ssl_cert_file};

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

#[test]
fn wss_stream_trusted_through_ssl_cert_file_serves_pending() {
    let ca = TestCa::new("flashblocks-rpc");
    // Before the runtime below starts any thread.
    set_ssl_cert_file(&ca.pem_file);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let LoneEngine {
                engine,
                upstream: _,
                signers,
                chain_id,
                head_hash,
            } = LoneEngine::start().await;

            let (url, frames) = wss_server(ca.acceptor()).await;
            let rpc = start_rpc(&url, &engine.http_url(), &[]).await;
            let ours = client(&rpc.http_url(), None);
            let tx = sign_transfer(
                &signers[0],
                chain_id,
                0,
                Address::repeat_byte(7),
                U256::from(1),
                2_000_000_000,
                1_000_000,
            )
            .unwrap();
            let sent = (raw_transaction(&tx), tx.tx_hash());
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
            wait_for("the streamed block served as pending", DEADLINE, || async {
                let b = call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await;
                (b["hash"] == json!(hash)).then_some(())
            })
            .await;
            assert_eq!(metric(&rpc, "flashblocks_rpc_stream_connected", &[]), 1.0);
            rpc.shutdown().await;
        });
}
