//! Execution modes, switched at runtime through the debug server.

use std::time::Duration;

use engine_api::{Upstream, UpstreamConfig, upstream::DEFAULT_MAX_RESPONSE_BYTES};
use serde_json::{Value, json};

use crate::harness::{Setup, eventually, setup};

fn debug_client(s: &Setup) -> Upstream {
    Upstream::new(UpstreamConfig {
        name: "debug",
        url: format!("http://{}", s.mux.debug_addr).parse().unwrap(),
        secret: None,
        timeout: Duration::from_secs(2),
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
    })
}

pub async fn set_mode(s: &Setup, mode: &str) -> Value {
    let c = debug_client(s);
    c.call(
        "debug_setExecutionMode",
        &json!([{"execution_mode": mode}]),
        c.timeout(),
    )
    .await
    .unwrap()
}

async fn get_mode(s: &Setup) -> Value {
    let c = debug_client(s);
    c.call("debug_getExecutionMode", &json!([]), c.timeout())
        .await
        .unwrap()
}

#[tokio::test]
async fn dry_run_exercises_the_builder_but_proposes_local() {
    let s = setup(&["--execution-mode", "dry-run"]).await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.local.block_hash(101).to_string());
    assert_eq!(
        s.builder.calls_of("engine_getPayloadV3").len(),
        1,
        "builder still asked"
    );
    assert_eq!(
        s.local.calls_of("engine_newPayloadV3")[0].params[0]["blockHash"],
        json!(s.builder.block_hash(101)),
        "and validated"
    );
    assert_eq!(s.blocks("builder"), 0.0);
}

#[tokio::test]
async fn disabled_sends_the_builder_no_engine_calls() {
    let s = setup(&["--execution-mode", "disabled"]).await;
    for _ in 0..3 {
        s.block("engine_getPayloadV3").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        s.builder.engine_calls().is_empty(),
        "{:?}",
        s.builder.engine_calls()
    );
    assert_eq!(s.blocks("local"), 3.0);
    assert_eq!(
        s.fallbacks("no_builder_payload"),
        0.0,
        "disabled is not a fallback"
    );
}

#[tokio::test]
async fn mode_switches_take_effect_on_the_next_call() {
    let s = setup(&[]).await;
    assert_eq!(get_mode(&s).await, json!({"execution_mode": "enabled"}));
    assert_eq!(
        s.block("engine_getPayloadV3").await,
        s.builder.block_hash(101).to_string()
    );

    assert_eq!(
        set_mode(&s, "dry_run").await,
        json!({"execution_mode": "dry_run"})
    );
    assert_eq!(get_mode(&s).await, json!({"execution_mode": "dry_run"}));
    assert_eq!(
        s.block("engine_getPayloadV3").await,
        s.local.block_hash(102).to_string()
    );

    set_mode(&s, "disabled").await;
    s.builder.clear_calls();
    assert_eq!(
        s.block("engine_getPayloadV3").await,
        s.local.block_hash(103).to_string()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.builder.engine_calls().is_empty());

    set_mode(&s, "enabled").await;
    // The builder missed block 103 while disabled; catch-up or the next FCU brings it along.
    eventually(Duration::from_secs(3), "builder blocks again", || async {
        s.block("engine_getPayloadV3").await.starts_with("0xbbbb")
    })
    .await;
    let c = debug_client(&s);
    let bad = c
        .call::<Value>(
            "debug_setExecutionMode",
            &json!([{"execution_mode": "turbo"}]),
            c.timeout(),
        )
        .await;
    assert!(bad.is_err(), "unknown modes are refused");
    assert_eq!(get_mode(&s).await, json!({"execution_mode": "enabled"}));
}
