//! Upstreams behind TLS with a private CA generated per test: `https://` engines and a `wss://`
//! flashblocks stream work when the configuration's trusted roots hold the CA, and an untrusted
//! certificate is a clear error naming the URL. The CA reaches engine-mux through its `Config`,
//! never the process environment, so these tests run side by side in one process; the one test
//! of `SSL_CERT_FILE` itself sets it on a child engine-mux process only.

use std::{process::Stdio, time::Duration};

use alloy_primitives::B256;
use alloy_rpc_types_engine::PayloadId;
use engine_api::{
    Upstream, UpstreamConfig, tls::TrustedRoots, upstream::DEFAULT_MAX_RESPONSE_BYTES,
};
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};
use serde_json::json;

use crate::{
    flashblocks::FlashblocksSource,
    harness::eventually,
    mock_engine::{MockEngine, MockOptions},
    peers::{TestCa, start_configured},
};

fn tls(ca: &TestCa) -> MockOptions {
    MockOptions {
        tls: Some(ca.acceptor()),
        ..Default::default()
    }
}

/// Trust exactly `ca` (what `SSL_CERT_FILE` naming its PEM file gives the binary).
fn trusting(ca: &TestCa) -> impl FnOnce(&mut engine_mux::Config) {
    let roots = TrustedRoots::ca_file(&ca.pem_file);
    move |config| config.tls_roots = roots
}

/// A builder EL and a local EL on `https://` with certificates from a private CA, trusted
/// through the configured roots alone (no flag): engine-mux uses the builder's blocks,
/// `/healthz` is 200.
#[tokio::test]
async fn https_el_and_builder_work_end_to_end_when_the_roots_trust_their_ca() {
    let ca = TestCa::new("https");
    let p = start_configured(tls(&ca), tls(&ca), &[], trusting(&ca)).await;
    assert!(p.local.url().starts_with("https://") && p.builder.url().starts_with("https://"));
    p.builder_blocks(2).await;
    assert_eq!(p.healthz().await, 200);
}

/// A builder's `wss://` flashblocks stream with a certificate from a private CA trusted
/// through the configured roots: engine-mux connects and accepts the flashblock it sends.
#[tokio::test]
async fn wss_flashblocks_stream_is_received() {
    let ca = TestCa::new("wss");
    let source = FlashblocksSource::start_with(Some(ca.acceptor())).await;
    let url = source.url();
    let p = start_configured(
        MockOptions::default(),
        MockOptions::default(),
        &[
            "--flashblocks",
            "--flashblocks-builder-url",
            url.as_str(),
            "--flashblocks-port",
            "0",
        ],
        trusting(&ca),
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
        || async {
            test_utils::metric(
                &p.mux.metrics_text(),
                r#"engine_mux_flashblocks_total{event="accepted"}"#,
            ) == 1.0
        },
    )
    .await;
}

/// Upstreams whose certificate a CA signed that nothing trusts (the roots hold another CA):
/// an HTTPS call fails with an error naming the URL and the certificate problem, and the
/// `wss://` stream never completes a handshake while engine-mux keeps retrying with backoff.
#[tokio::test]
async fn untrusted_certificate_is_a_clear_error_naming_the_url() {
    let trusted = TestCa::new("trusted");
    let untrusted = TestCa::new("untrusted");
    let builder = MockEngine::start_with("builder", 0x04, 0xbb, tls(&untrusted)).await;
    let client = Upstream::with_roots(
        UpstreamConfig {
            name: "op-node",
            url: builder.url().parse().unwrap(),
            secret: Some(builder.secret),
            timeout: Duration::from_secs(2),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        },
        &TrustedRoots::ca_file(&trusted.pem_file),
    );
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
    let p = start_configured(
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
        trusting(&trusted),
    )
    .await;
    eventually(Duration::from_secs(3), "retried with backoff", || async {
        test_utils::metric(
            &p.mux.metrics_text(),
            "engine_mux_flashblocks_reconnects_total",
        ) >= 3.0
    })
    .await;
    assert_eq!(source.connections(), 0);
    assert_eq!(
        test_utils::metric(&p.mux.metrics_text(), "engine_mux_flashblocks_connected"),
        0.0
    );
}

/// The binary reads `SSL_CERT_FILE` as operators set it (no flag): an engine-mux process whose
/// local EL is on `https://` with a private CA's certificate proxies op-node's `eth_chainId` to
/// it when `SSL_CERT_FILE` names that CA, and cannot when the variable is unset. The variable is
/// set on the child process only.
#[tokio::test]
async fn binary_trusts_the_ca_ssl_cert_file_names() {
    let ca = TestCa::new("binary");
    let local = MockEngine::start_with("local", 0x03, 0xaa, tls(&ca)).await;
    let builder = MockEngine::start_with("builder", 0x04, 0xbb, tls(&ca)).await;
    let trusted = proxied_chain_id(&local, &builder, Some(&ca.pem_file)).await;
    assert!(trusted.is_ok(), "{trusted:?}");
    let untrusted = proxied_chain_id(&local, &builder, None).await;
    assert!(
        untrusted.is_err(),
        "no trusted root for the CA: {untrusted:?}"
    );
}

/// op-node's `eth_chainId` through an engine-mux process in front of `local` and `builder`,
/// started with `SSL_CERT_FILE` set to `ssl_cert_file` (unset when `None`) on it alone.
async fn proxied_chain_id(
    local: &MockEngine,
    builder: &MockEngine,
    ssl_cert_file: Option<&std::path::Path>,
) -> Result<serde_json::Value, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_engine-mux"));
    cmd.args([
        "--l2-url",
        &local.url(),
        "--l2-jwt-token",
        &local.secret_hex(),
    ])
    .args(["--builder-url", &builder.url()])
    .args(["--builder-jwt-token", &builder.secret_hex()])
    .args(["--rpc-port", &port.to_string(), "--debug-server-port", "0"])
    .env_remove("SSL_CERT_FILE")
    .env_remove("SSL_CERT_DIR")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if let Some(path) = ssl_cert_file {
        cmd.env("SSL_CERT_FILE", path);
    }
    let _child = cmd.spawn().expect("the engine-mux binary starts");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(10), "engine-mux listening", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    // op-node's side is plain HTTP: no roots needed.
    let op_node = Upstream::with_roots(
        UpstreamConfig {
            name: "op-node",
            url: format!("http://{addr}").parse().unwrap(),
            secret: Some(local.secret),
            timeout: Duration::from_secs(5),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        },
        &TrustedRoots::system(),
    );
    op_node
        .call::<serde_json::Value>("eth_chainId", &(), op_node.timeout())
        .await
        .map_err(|e| e.to_string())
}
