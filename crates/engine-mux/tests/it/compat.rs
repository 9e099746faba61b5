//! rollup-boost compatibility seen from outside: the dashboard metric names on /metrics.

use std::time::Duration;

use engine_api::{Upstream, UpstreamConfig, upstream::DEFAULT_MAX_RESPONSE_BYTES};
use engine_mux::sample;
use serde_json::json;

use crate::{
    harness::{Setup, eventually, setup},
    mock_engine::Fault,
};

/// GET /metrics from the metrics server, as Prometheus scrapes it.
async fn scrape(s: &Setup) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.mux.metrics_addr.expect("--metrics is on");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

async fn set_mode(s: &Setup, mode: &str) {
    let c = Upstream::new(UpstreamConfig {
        name: "debug",
        url: format!("http://{}", s.mux.debug_addr).parse().unwrap(),
        secret: None,
        timeout: Duration::from_secs(2),
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
    });
    let _: serde_json::Value = c
        .call(
            "debug_setExecutionMode",
            &json!([{"execution_mode": mode}]),
            c.timeout(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn rollup_boost_dashboard_metrics_are_scraped_with_its_names_and_labels() {
    let s = setup(&["--metrics", "--metrics-port", "0"]).await;
    let builders = r#"rollup_boost_rpc_blocks_created{source="builder"}"#;
    let locals = r#"rollup_boost_rpc_blocks_created{source="l2"}"#;
    let mode = "rollup_boost_rollup_boost_execution_mode";
    assert_eq!(
        sample(&scrape(&s).await, mode),
        Some(3.0),
        "enabled at start"
    );

    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.builder.block_hash(101).to_string());
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32603, "boom"));
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.local.block_hash(102).to_string());
    let text = scrape(&s).await;
    assert_eq!(sample(&text, builders), Some(1.0), "{text}");
    assert_eq!(sample(&text, locals), Some(1.0), "{text}");

    set_mode(&s, "dry_run").await;
    assert_eq!(sample(&scrape(&s).await, mode), Some(2.0));
    set_mode(&s, "disabled").await;
    assert_eq!(sample(&scrape(&s).await, mode), Some(1.0));
    s.block("engine_getPayloadV3").await;
    eventually(
        Duration::from_secs(2),
        "the disabled-mode block counted",
        || async { sample(&scrape(&s).await, locals) == Some(2.0) },
    )
    .await;
    assert_eq!(sample(&scrape(&s).await, builders), Some(1.0));
}
