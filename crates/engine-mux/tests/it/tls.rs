//! Upstreams behind TLS with a private CA generated per test: `https://` engines and a `wss://`
//! flashblocks stream work when `SSL_CERT_FILE` trusts the CA, and an untrusted certificate is
//! a clear error naming the URL. Each test sets `SSL_CERT_FILE` first thing; that is sound
//! only because nextest runs every test in a process of its own.

use std::time::Duration;

use alloy_primitives::B256;
use alloy_rpc_types_engine::PayloadId;
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};
use serde_json::json;

use crate::{
    flashblocks::FlashblocksSource,
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
    let source = FlashblocksSource::start_with(Some(ca.acceptor())).await;
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
        source.connections() == 1
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
    source.text(&fb);
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

    let source = FlashblocksSource::start_with(Some(untrusted.acceptor())).await;
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
    assert_eq!(source.connections(), 0);
    assert_eq!(p.metric("engine_mux_flashblocks_connected"), 0.0);
}
