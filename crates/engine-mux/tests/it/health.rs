//! The health contract op-conductor reads: 200 / 206 / 503, and an unhealthy builder is
//! skipped until a probe finds it synced again.

use std::time::Duration;

use crate::{
    harness::{eventually, setup},
    mock_engine::{Fault, now},
};

#[tokio::test]
async fn healthy_pair_is_200_and_local_failure_is_503() {
    let s = setup(&[]).await;
    eventually(Duration::from_secs(3), "initial probe → 200", || async {
        s.healthz().await == 200
    })
    .await;
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 200);
    s.local.down();
    assert!(
        s.call(
            "engine_forkchoiceUpdatedV3",
            serde_json::json!([crate::harness::forkchoice(1), null])
        )
        .await
        .is_err()
    );
    assert_eq!(s.healthz().await, 503);
    assert_eq!(
        crate::harness::http_get(s.mux.rpc_addr, "/readyz").await,
        503
    );
    assert_eq!(
        crate::harness::http_get(s.mux.rpc_addr, "/livez").await,
        200
    );
    s.local.up().await;
    eventually(
        Duration::from_secs(5),
        "local back → probe clears 503",
        || async { s.healthz().await == 200 },
    )
    .await;
}

#[tokio::test]
async fn stale_local_head_is_503() {
    let s = setup(&[]).await;
    s.local.set_head(100, now() - 60);
    eventually(Duration::from_secs(3), "stale local head → 503", || async {
        s.healthz().await == 503
    })
    .await;
}

#[tokio::test]
async fn out_of_sync_builder_is_206_skipped_and_used_again_when_synced() {
    let s = setup(&[]).await;
    s.builder.set_head(100, now() - 60);
    eventually(Duration::from_secs(3), "stale builder → 206", || async {
        s.healthz().await == 206
    })
    .await;
    s.builder.clear_calls();
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.local.block_hash(101).to_string());
    assert_eq!(s.fallbacks("skipped_unhealthy"), 1.0);
    assert!(
        s.builder.engine_calls().is_empty(),
        "a skipped builder gets no engine calls: {:?}",
        s.builder.engine_calls()
    );

    s.builder.set_head(101, now());
    // Fast re-probe: back within about a second, not a whole --health-check-interval.
    eventually(Duration::from_secs(2), "synced builder → 200", || async {
        s.healthz().await == 200
    })
    .await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(
        hash,
        s.builder.block_hash(102).to_string(),
        "builder blocks again"
    );
}

#[tokio::test]
async fn builder_failing_get_payload_is_206_until_it_delivers() {
    // A long probe interval so only the payload outcomes decide (no probe lands in between).
    let s = setup(&["--health-check-interval", "60"]).await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32000, "no payload"));
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 206);
    s.builder.clear_fault("engine_getPayloadV3");
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.builder.block_hash(102).to_string());
    assert_eq!(s.healthz().await, 200);
}

#[tokio::test]
async fn a_spec_error_from_the_local_el_is_not_an_outage() {
    let s = setup(&["--health-check-interval", "60"]).await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    let err = s
        .call(
            "engine_getPayloadV3",
            serde_json::json!(["0x0300000000000bad"]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("-38001"), "{err}");
    assert_eq!(
        s.healthz().await,
        200,
        "unknown payload is the EL answering correctly"
    );
    s.local.fault(
        "engine_newPayloadV3",
        Fault::RpcError(-32603, "database corrupted"),
    );
    let _ = s.call("engine_newPayloadV3", serde_json::json!([{"blockHash": format!("0x{}", "00".repeat(32))}, [], format!("0x{}", "00".repeat(32))])).await;
    assert_eq!(s.healthz().await, 503, "an internal error is");
}
