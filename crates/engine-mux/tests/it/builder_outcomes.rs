//! What op-node gets, and what `/healthz` says, for every way a builder block can be wrong or
//! late: a VALID block that is not the block op-node asked for is refused, every builder
//! failure is health evidence until the next good builder block, and getPayload answers within
//! its deadline whichever side is slow.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    harness::{Setup, eventually, setup},
    mock_engine::Fault,
};

/// The harness's --get-payload-deadline-ms (500) plus scheduling slack.
const DEADLINE_WITH_SLACK: Duration = Duration::from_millis(700);

async fn healthy(s: &Setup) {
    eventually(Duration::from_secs(3), "healthz 200", || async {
        s.healthz().await == 200
    })
    .await;
}

/// One block where the builder's part fails with `reason`: the local block is proposed, the
/// reason counted, and `/healthz` is 206 right after getPayload answered.
async fn builder_fails_one_block(s: &Setup, reason: &str) {
    healthy(s).await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(
        hash,
        s.local.block_hash(101).to_string(),
        "[{reason}] local block"
    );
    assert_eq!(
        s.fallbacks(reason),
        1.0,
        "[{reason}]\n{}",
        s.mux.metrics_text()
    );
    assert_eq!(
        s.healthz().await,
        206,
        "[{reason}] builder failure is evidence"
    );
}

/// After a failure, the next good builder block (and nothing else) brings 200 back.
async fn next_good_block_clears(s: &Setup) {
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(
        hash,
        s.builder.block_hash(102).to_string(),
        "builder block\n{}",
        s.mux.metrics_text()
    );
    assert_eq!(
        s.healthz().await,
        200,
        "a good builder block clears the failure"
    );
}

/// A builder that builds on another parent (a VALID block, but not on op-node's head).
#[tokio::test]
async fn builder_block_on_another_parent_is_refused_as_attributes_mismatch() {
    let s = setup(&[]).await;
    s.builder
        .tamper_payloads(|p| p.payload_inner.payload_inner.parent_hash = Default::default());
    builder_fails_one_block(&s, "attributes_mismatch").await;
    assert!(
        s.local.calls_of("engine_newPayloadV3").len() == 1,
        "the mismatching block is never sent for validation, only op-node's own newPayload"
    );
}

/// A builder that leaves out the attributes' L1-info deposit (a VALID block op-node would reorg).
#[tokio::test]
async fn builder_block_without_the_forced_deposit_is_refused() {
    let s = setup(&[]).await;
    s.builder
        .tamper_payloads(|p| drop(p.payload_inner.payload_inner.transactions.remove(0)));
    builder_fails_one_block(&s, "attributes_mismatch").await;
}

/// A builder that stamps its own timestamp.
#[tokio::test]
async fn builder_block_at_another_timestamp_is_refused() {
    let s = setup(&[]).await;
    s.builder
        .tamper_payloads(|p| p.payload_inner.payload_inner.timestamp += 2);
    builder_fails_one_block(&s, "attributes_mismatch").await;
}

#[tokio::test]
async fn builder_fcu_error_is_206_until_the_next_good_builder_block() {
    let s = setup(&[]).await;
    s.builder.fault(
        "engine_forkchoiceUpdatedV3",
        Fault::RpcError(-38003, "Invalid payload attributes"),
    );
    builder_fails_one_block(&s, "error").await;
    s.builder.clear_fault("engine_forkchoiceUpdatedV3");
    next_good_block_clears(&s).await;
}

#[tokio::test]
async fn builder_fcu_invalid_is_206() {
    let s = setup(&[]).await;
    s.builder
        .fault("engine_forkchoiceUpdatedV3", Fault::Status("INVALID"));
    builder_fails_one_block(&s, "error").await;
    s.builder.clear_fault("engine_forkchoiceUpdatedV3");
    next_good_block_clears(&s).await;
}

#[tokio::test]
async fn builder_fcu_syncing_is_206() {
    let s = setup(&["--health-check-interval", "60"]).await;
    s.builder
        .fault("engine_forkchoiceUpdatedV3", Fault::Status("SYNCING"));
    builder_fails_one_block(&s, "syncing").await;
    s.builder.clear_fault("engine_forkchoiceUpdatedV3");
    next_good_block_clears(&s).await;
}

/// The builder's FCU answer comes after getPayload's deadline.
#[tokio::test]
async fn builder_fcu_answer_after_the_deadline_is_206() {
    let s = setup(&["--builder-timeout", "2000"]).await;
    s.builder.fault(
        "engine_forkchoiceUpdatedV3",
        Fault::Delay(Duration::from_millis(800)),
    );
    builder_fails_one_block(&s, "timeout").await;
}

#[tokio::test]
async fn builder_block_invalid_on_the_local_el_is_206() {
    let s = setup(&[]).await;
    s.local.invalid_for(s.builder.block_hash(101));
    builder_fails_one_block(&s, "invalid").await;
    next_good_block_clears(&s).await;
}

/// A builder that rejects op-node's own block (mirrored newPayload) has diverged.
#[tokio::test]
async fn builder_rejecting_op_nodes_block_is_206() {
    let s = setup(&[]).await;
    healthy(&s).await;
    s.builder
        .fault("engine_newPayloadV3", Fault::Status("INVALID"));
    s.block("engine_getPayloadV3").await;
    eventually(Duration::from_secs(2), "mirrored INVALID seen", || async {
        s.healthz().await == 206
    })
    .await;
}

/// The local EL is slower than the deadline on getPayload; the builder's block is VALID in
/// time (newPayload stays fast), so op-node gets it within the deadline.
#[tokio::test]
async fn slow_local_getpayload_answers_with_the_builder_block_within_the_deadline() {
    let s = setup(&[]).await;
    s.local.fault(
        "engine_getPayloadV3",
        Fault::Delay(Duration::from_millis(1500)),
    );
    let id = s.fcu_build().await;
    let started = Instant::now();
    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert!(
        started.elapsed() < DEADLINE_WITH_SLACK,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.builder.block_hash(101))
    );
}

/// Both sides slower than the deadline: op-node gets an error within the deadline, not a hang.
#[tokio::test]
async fn slow_local_and_slow_builder_answer_an_error_within_the_deadline() {
    let s = setup(&["--builder-timeout", "2000"]).await;
    s.local.fault(
        "engine_getPayloadV3",
        Fault::Delay(Duration::from_millis(1500)),
    );
    s.builder.fault(
        "engine_getPayloadV3",
        Fault::Delay(Duration::from_millis(1500)),
    );
    let id = s.fcu_build().await;
    let started = Instant::now();
    let res = s.call("engine_getPayloadV3", json!([id])).await;
    assert!(
        started.elapsed() < DEADLINE_WITH_SLACK,
        "{:?}",
        started.elapsed()
    );
    assert!(res.is_err(), "no block is VALID by the deadline: {res:?}");
}

/// One block whose builder block the local EL fails to validate, with `/healthz` read right
/// after getPayload: the reason is counted, the builder is not charged, the local EL is when
/// `local_charged`. The builder's getPayload answers 100 ms late so the validation is the last
/// local call (the local EL's own getPayload answer, good evidence, lands before it).
async fn local_el_fails_validating(s: &Setup, reason: &str, local_charged: bool) {
    healthy(s).await;
    s.builder.fault(
        "engine_getPayloadV3",
        Fault::Delay(Duration::from_millis(100)),
    );
    let id = s.fcu_build().await;
    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101)),
        "[{reason}] local block"
    );
    assert_eq!(
        s.fallbacks(reason),
        1.0,
        "[{reason}]\n{}",
        s.mux.metrics_text()
    );
    assert_eq!(
        s.healthz().await,
        if local_charged { 503 } else { 200 },
        "[{reason}] the local EL's failure is its own, never the builder's 206"
    );
    assert!(
        !s.mux.state().builders.first().health().failing(),
        "[{reason}] the builder is not charged"
    );
}

/// op-geth and reth answer newPayload `SYNCING` when they cannot execute on the block's parent;
/// the builder's block builds on op-node's head, so a local EL answering that is the sick one.
#[tokio::test]
async fn local_el_syncing_while_validating_the_builders_block_is_charged_to_the_local_el() {
    let s = setup(&["--health-check-interval", "60"]).await;
    s.local
        .fault("engine_newPayloadV3", Fault::Status("SYNCING"));
    local_el_fails_validating(&s, "validation_syncing", true).await;
}

#[tokio::test]
async fn local_el_answering_garbage_while_validating_is_charged_to_the_local_el() {
    let s = setup(&["--health-check-interval", "60"]).await;
    s.local.fault("engine_newPayloadV3", Fault::Garbage);
    local_el_fails_validating(&s, "validation_error", true).await;
}

/// The local EL had its whole --l2-timeout (200 ms, inside the 900 ms budget) and did not
/// answer newPayload.
#[tokio::test]
async fn local_el_timing_out_while_validating_is_charged_to_the_local_el() {
    let s = setup(&[
        "--health-check-interval",
        "60",
        "--l2-timeout",
        "200",
        "--get-payload-deadline-ms",
        "900",
    ])
    .await;
    s.local.fault(
        "engine_newPayloadV3",
        Fault::Delay(Duration::from_millis(600)),
    );
    local_el_fails_validating(&s, "validation_timeout", true).await;
}

/// The getPayload budget (500 ms) ran out before the local EL's --l2-timeout (2 s): neither
/// side is charged.
#[tokio::test]
async fn validation_cut_short_by_the_get_payload_budget_charges_neither_side() {
    let s = setup(&["--health-check-interval", "60"]).await;
    s.local
        .fault("engine_newPayloadV3", Fault::Delay(Duration::from_secs(1)));
    local_el_fails_validating(&s, "validation_timeout", false).await;
}
