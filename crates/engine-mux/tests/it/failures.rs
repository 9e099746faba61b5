//! Every way the builder can fail costs op-node nothing but the builder's block: the local
//! payload comes back within the deadline and the fallback reason is counted.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    harness::{Setup, setup},
    mock_engine::Fault,
};

/// Deadline configured by the harness (--get-payload-deadline-ms 500) plus scheduling slack.
const DEADLINE_WITH_SLACK: Duration = Duration::from_millis(700);

async fn one_block_falls_back(s: &Setup, reason: &str) {
    let id = s.fcu_build().await;
    let started = Instant::now();
    let envelope = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        envelope["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101)),
        "[{reason}] the local payload must be returned"
    );
    assert!(
        took < DEADLINE_WITH_SLACK,
        "[{reason}] getPayload took {took:?}"
    );
    assert_eq!(
        s.fallbacks(reason),
        1.0,
        "[{reason}] fallback metric\n{}",
        s.mux.metrics_text()
    );
    assert_eq!(s.blocks("local"), 1.0);
    assert_eq!(s.blocks("builder"), 0.0);
}

#[tokio::test]
async fn builder_down_falls_back_to_local() {
    // No probe may notice the outage first: the engine call itself must meet the closed port.
    let s = setup(&["--health-check-interval", "60"]).await;
    s.builder.down();
    one_block_falls_back(&s, "error").await;
}

#[tokio::test]
async fn builder_slower_than_its_timeout_falls_back_to_local() {
    let s = setup(&[]).await;
    s.builder.fault(
        "engine_getPayloadV3",
        Fault::Delay(Duration::from_millis(450)),
    );
    one_block_falls_back(&s, "timeout").await;
}

#[tokio::test]
async fn builder_error_answer_falls_back_to_local() {
    let s = setup(&[]).await;
    s.builder.fault(
        "engine_getPayloadV3",
        Fault::RpcError(-32603, "builder exploded"),
    );
    one_block_falls_back(&s, "error").await;
}

#[tokio::test]
async fn builder_garbage_json_falls_back_to_local() {
    let s = setup(&[]).await;
    s.builder.fault("engine_getPayloadV3", Fault::Garbage);
    one_block_falls_back(&s, "error").await;
}

#[tokio::test]
async fn builder_wrong_shape_falls_back_to_local() {
    let s = setup(&[]).await;
    s.builder.fault("engine_getPayloadV3", Fault::WrongShape);
    one_block_falls_back(&s, "error").await;
}

#[tokio::test]
async fn builder_syncing_falls_back_to_local() {
    let s = setup(&[]).await;
    s.builder
        .fault("engine_forkchoiceUpdatedV3", Fault::Status("SYNCING"));
    one_block_falls_back(&s, "syncing").await;
}

#[tokio::test]
async fn builder_invalid_forkchoice_falls_back_to_local() {
    let s = setup(&[]).await;
    s.builder
        .fault("engine_forkchoiceUpdatedV3", Fault::Status("INVALID"));
    one_block_falls_back(&s, "error").await;
}

#[tokio::test]
async fn payload_the_local_el_rejects_falls_back_to_local() {
    let s = setup(&[]).await;
    s.local.invalid_for(s.builder.block_hash(101));
    one_block_falls_back(&s, "invalid").await;
    let validated = s.local.calls_of("engine_newPayloadV3");
    assert_eq!(
        validated[0].params[0]["blockHash"],
        json!(s.builder.block_hash(101)),
        "it really was validated"
    );
}

#[tokio::test]
async fn gas_used_policy_prefers_a_fuller_local_block() {
    let s = setup(&["--block-selection-policy", "gas-used"]).await;
    s.local.set_gas_used(10_000_000);
    s.builder.set_gas_used(999_999);
    one_block_falls_back(&s, "policy").await;
    s.builder.set_gas_used(1_000_000);
    let hash = s.block("engine_getPayloadV3").await;
    // The first block was never imported, so the builder builds height 101 again.
    assert_eq!(
        hash,
        s.builder.block_hash(101).to_string(),
        "at exactly 10% the builder wins"
    );
}

#[tokio::test]
async fn hung_builder_costs_op_node_nothing() {
    let s = setup(&[]).await;
    for m in [
        "engine_forkchoiceUpdatedV3",
        "engine_getPayloadV3",
        "engine_newPayloadV3",
        "eth_getBlockByNumber",
    ] {
        s.builder.fault(m, Fault::Hang);
    }
    for block in 0..5u64 {
        let t = Instant::now();
        let id = s.fcu_build().await;
        let fcu = t.elapsed();
        let t = Instant::now();
        let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
        let get = t.elapsed();
        assert_eq!(
            env["executionPayload"]["blockHash"],
            json!(s.local.block_hash(101 + block))
        );
        let payload = env["executionPayload"].clone();
        let t = Instant::now();
        s.call(
            "engine_newPayloadV3",
            json!([payload, [], env["parentBeaconBlockRoot"]]),
        )
        .await
        .unwrap();
        let np = t.elapsed();
        // The mock answers in well under a millisecond: anything near the builder's 300 ms
        // timeout means the builder leaked onto op-node's path.
        assert!(
            fcu < Duration::from_millis(100),
            "block {block}: FCU took {fcu:?}"
        );
        assert!(
            np < Duration::from_millis(100),
            "block {block}: newPayload took {np:?}"
        );
        assert!(
            get < DEADLINE_WITH_SLACK,
            "block {block}: getPayload took {get:?}"
        );
        if block > 0 {
            assert!(
                get < Duration::from_millis(100),
                "block {block}: an unhealthy builder is skipped, got {get:?}"
            );
        }
    }
    assert_eq!(s.blocks("local"), 5.0);
    assert!(
        s.fallbacks("skipped_unhealthy") >= 4.0,
        "{}",
        s.mux.metrics_text()
    );
}
