//! Test harness: two mock engines, an engine-mux between them, and an op-node stand-in.

use std::time::Duration;

use clap::Parser;
use engine_api::{Upstream, UpstreamError};
use engine_mux::{Args, Config, RunningMux};
use serde_json::{Value, json};

use crate::mock_engine::MockEngine;

pub struct Setup {
    pub local: MockEngine,
    pub builder: MockEngine,
    pub mux: RunningMux,
    /// op-node: signs with the local EL's secret, as it does in production.
    pub op_node: Upstream,
    head_number: std::sync::atomic::AtomicU64,
}

/// Starts mocks (local ids 0x03.., builder ids 0x04..) and engine-mux with `extra` flags.
pub async fn setup(extra: &[&str]) -> Setup {
    let local = MockEngine::start("local", 0x03, 0xaa).await;
    let builder = MockEngine::start("builder", 0x04, 0xbb).await;
    setup_with(local, builder, extra).await
}

/// [`setup`] over mocks the test started (more builders go in `extra` as --extra-builder).
pub async fn setup_with(local: MockEngine, builder: MockEngine, extra: &[&str]) -> Setup {
    let mux = start_mux(&local, &builder, extra).await;
    let op_node = client(&mux, Some(local.secret), Duration::from_secs(5));
    // The first probe runs at startup; let it land so tests start from known evidence.
    eventually(Duration::from_secs(3), "first probe", || async {
        mux.state()
            .metrics
            .render()
            .contains("engine_mux_probes_total")
    })
    .await;
    Setup {
        local,
        builder,
        mux,
        op_node,
        head_number: 100.into(),
    }
}

pub async fn start_mux(local: &MockEngine, builder: &MockEngine, extra: &[&str]) -> RunningMux {
    start_mux_configured(local, builder, extra, |_| {}).await
}

/// [`start_mux`] with `edit` applied to the parsed configuration (what no flag sets, such as
/// the trusted TLS roots).
pub async fn start_mux_configured(
    local: &MockEngine,
    builder: &MockEngine,
    extra: &[&str],
    edit: impl FnOnce(&mut Config),
) -> RunningMux {
    let (lurl, burl, lsec, bsec) = (
        local.url(),
        builder.url(),
        local.secret_hex(),
        builder.secret_hex(),
    );
    let mut argv = vec![
        "engine-mux",
        "--l2-url",
        &lurl,
        "--l2-jwt-token",
        &lsec,
        "--builder-url",
        &burl,
        "--builder-jwt-token",
        &bsec,
    ];
    // Test defaults, each overridable by `extra`.
    let defaults = [
        ("--rpc-port", "0"),
        ("--debug-server-port", "0"),
        ("--builder-timeout", "300"),
        ("--l2-timeout", "2000"),
        ("--get-payload-deadline-ms", "500"),
        ("--health-check-interval", "1"),
        ("--max-unsafe-interval", "5"),
        // Off unless a test is about it: the mocks' slots end within a second of the FCU, so
        // early work could otherwise race a test's own getPayload.
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            argv.extend([flag, value]);
        }
    }
    argv.extend_from_slice(extra);
    let mut config = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap();
    edit(&mut config);
    engine_mux::start(config).await.unwrap()
}

pub fn client(
    mux: &RunningMux,
    secret: Option<engine_api::JwtSecret>,
    timeout: Duration,
) -> Upstream {
    crate::mock_engine::engine_client(&format!("http://{}", mux.rpc_addr), secret, timeout)
}

pub use crate::mock_engine::{attributes, forkchoice};

impl Setup {
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, UpstreamError> {
        self.op_node
            .call(method, &params, self.op_node.timeout())
            .await
    }

    /// FCU with attributes on the current head; returns the payload id op-node sees.
    pub async fn fcu_build(&self) -> String {
        let head = self.head_number.load(std::sync::atomic::Ordering::Relaxed);
        let res = self
            .call(
                "engine_forkchoiceUpdatedV3",
                json!([forkchoice(head), attributes(false)]),
            )
            .await
            .unwrap();
        res["payloadId"]
            .as_str()
            .expect("local EL returned a payload id")
            .to_string()
    }

    /// One full block as op-node drives it: FCU+attrs, getPayload, newPayload, FCU to it.
    /// Returns the proposed block hash.
    pub async fn block(&self, version: &'static str) -> String {
        let id = self.fcu_build().await;
        let envelope = self.call(version, json!([id])).await.unwrap();
        let payload = envelope["executionPayload"].clone();
        let hash = payload["blockHash"].as_str().unwrap().to_string();
        let np = if version == "engine_getPayloadV3" {
            "engine_newPayloadV3"
        } else {
            "engine_newPayloadV4"
        };
        let params = if version == "engine_getPayloadV3" {
            json!([payload, [], envelope["parentBeaconBlockRoot"]])
        } else {
            json!([payload, [], envelope["parentBeaconBlockRoot"], []])
        };
        let status = self.call(np, params).await.unwrap();
        assert_eq!(status["status"], "VALID");
        let head = self
            .head_number
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.call(
            "engine_forkchoiceUpdatedV3",
            json!([forkchoice(head), null]),
        )
        .await
        .unwrap();
        hash
    }

    pub fn fallbacks(&self, reason: &str) -> f64 {
        test_utils::metric(
            &self.mux.metrics_text(),
            &format!("engine_mux_fallbacks_total{{reason=\"{reason}\"}}"),
        )
    }

    pub fn blocks(&self, source: &str) -> f64 {
        test_utils::metric(
            &self.mux.metrics_text(),
            &format!("engine_mux_blocks_proposed_total{{source=\"{source}\"}}"),
        )
    }

    pub async fn healthz(&self) -> u16 {
        http_get(self.mux.rpc_addr, "/healthz").await
    }
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap()
}

/// Every scenario waits with the workspace's one poll-with-a-deadline.
pub use test_utils::eventually;
