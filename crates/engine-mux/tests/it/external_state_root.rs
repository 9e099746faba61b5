//! `--external-state-root`: a builder that leaves the state root to the sequencer's EL (zero)
//! gets its block rebuilt by the local EL, under a payload id of its own; a retry, an evicted
//! payload or a failed rebuild proposes the local block, never the unverified builder block.

use std::time::Duration;

use alloy_primitives::B256;
use serde_json::{Value, json};

use crate::harness::{Setup, attributes, eventually, forkchoice, setup};

fn zero_state_root(s: &Setup) {
    s.builder
        .tamper_payloads(|p| p.payload_inner.payload_inner.state_root = B256::ZERO);
}

async fn healthy(s: &Setup) {
    eventually(Duration::from_secs(3), "healthz 200", || async {
        s.healthz().await == 200
    })
    .await;
}

/// The builder's getPayload answer for block 101, as the builder mock serves it.
fn builder_transactions(s: &Setup) -> Value {
    let fcu = &s.builder.calls_of("engine_forkchoiceUpdatedV3")[0];
    let forced = fcu.params[1]["transactions"].as_array().unwrap().clone();
    // The builder mock's block: the attributes' transactions, then its 100 pool transactions.
    let pool: Vec<Value> = (0..100)
        .map(|i| json!(format!("0x{}", "02".repeat(120 + i % 7))))
        .collect();
    Value::Array(forced.into_iter().chain(pool).collect())
}

#[tokio::test]
async fn zero_state_root_builder_block_is_rebuilt_by_the_local_el_and_proposed() {
    let s = setup(&["--external-state-root"]).await;
    zero_state_root(&s);
    healthy(&s).await;
    let id = s.fcu_build().await;
    let envelope = s
        .call("engine_getPayloadV3", json!([id.clone()]))
        .await
        .unwrap();
    let payload = &envelope["executionPayload"];
    assert_eq!(
        payload["blockHash"],
        json!(s.local.no_pool_block_hash(101)),
        "the local EL's rebuild is proposed\n{}",
        s.mux.metrics_text()
    );
    assert_eq!(
        payload["stateRoot"],
        json!(B256::repeat_byte(0x33)),
        "with the local EL's state root"
    );
    let builder_txs = builder_transactions(&s);
    assert_eq!(
        payload["transactions"], builder_txs,
        "the builder's transactions"
    );
    assert_eq!(s.blocks("builder"), 1.0, "counted as the builder's block");
    assert_eq!(s.fallbacks("invalid"), 0.0);

    // The rebuild: op-node's attributes with the builder's transactions and noTxPool, on
    // op-node's forkchoice state, under a new payload id; op-node's payload stays intact.
    let fcus = s.local.calls_of("engine_forkchoiceUpdatedV3");
    assert_eq!(fcus.len(), 2, "op-node's FCU and the rebuild");
    let (original, rebuild) = (&fcus[0].params, &fcus[1].params);
    assert_eq!(rebuild[0], original[0], "same forkchoice state");
    assert_eq!(rebuild[1]["noTxPool"], true);
    assert_eq!(rebuild[1]["transactions"], builder_txs);
    for field in [
        "timestamp",
        "prevRandao",
        "suggestedFeeRecipient",
        "parentBeaconBlockRoot",
        "gasLimit",
        "eip1559Params",
    ] {
        assert_eq!(rebuild[1][field], original[1][field], "{field}");
    }
    let issued = s.local.issued_ids();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0], id, "op-node's id is the first one");
    let asked: Vec<Value> = s
        .local
        .calls_of("engine_getPayloadV3")
        .iter()
        .map(|c| c.params[0].clone())
        .collect();
    assert!(
        asked.contains(&json!(issued[0])) && asked.contains(&json!(issued[1])),
        "getPayload for op-node's id and for the rebuild's: {asked:?}"
    );
    assert!(
        s.local.calls_of("engine_newPayloadV3").is_empty(),
        "the zero-root builder block is never sent for validation"
    );
    assert_eq!(s.healthz().await, 200);
}

#[tokio::test]
async fn without_the_flag_a_zero_state_root_builder_block_is_refused_as_invalid() {
    let s = setup(&[]).await;
    zero_state_root(&s);
    healthy(&s).await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.local.block_hash(101).to_string(), "local block");
    assert_eq!(s.fallbacks("invalid"), 1.0, "{}", s.mux.metrics_text());
    assert_eq!(
        s.local.calls_of("engine_forkchoiceUpdatedV3").len(),
        2,
        "no rebuild: op-node's two FCUs only"
    );
}

#[tokio::test]
async fn a_retried_get_payload_falls_back_to_the_local_block() {
    let s = setup(&["--external-state-root"]).await;
    zero_state_root(&s);
    healthy(&s).await;
    let id = s.fcu_build().await;
    let first = s
        .call("engine_getPayloadV3", json!([id.clone()]))
        .await
        .unwrap();
    assert_eq!(
        first["executionPayload"]["blockHash"],
        json!(s.local.no_pool_block_hash(101))
    );
    let second = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(
        second["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101)),
        "a retry gets the local block, never the unverified builder block"
    );
    assert_eq!(s.fallbacks("state_root_retry"), 1.0);
    assert_eq!(
        s.local.calls_of("engine_forkchoiceUpdatedV3").len(),
        2,
        "rebuilt once"
    );
    assert_eq!(
        s.healthz().await,
        200,
        "a retry says nothing about the builder"
    );
}

#[tokio::test]
async fn an_evicted_payload_falls_back_to_the_local_block() {
    let s = setup(&["--external-state-root", "--payload-id-cache-size", "1"]).await;
    zero_state_root(&s);
    healthy(&s).await;
    let evicted = s.fcu_build().await;
    // A second build on the same head pushes the first out of the one-entry map.
    let mut attrs = attributes(false);
    attrs["gasLimit"] = json!("0x1c9c381");
    s.call(
        "engine_forkchoiceUpdatedV3",
        json!([forkchoice(100), attrs]),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(2), "second id mapped", || async {
        s.builder.calls_of("engine_forkchoiceUpdatedV3").len() == 2
    })
    .await;
    let res = s
        .call("engine_getPayloadV3", json!([evicted]))
        .await
        .unwrap();
    assert_eq!(
        res["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101))
    );
    assert_eq!(s.fallbacks("no_builder_payload"), 1.0);
    assert_eq!(s.local.calls_of("engine_forkchoiceUpdatedV3").len(), 2);
}

/// op-geth answers the rebuild's FCU `-38003` when a forced transaction fails: the builder's
/// transactions are refused, and that is the builder's fault.
#[tokio::test]
async fn a_rebuild_refusing_the_builders_transactions_falls_back_and_blames_the_builder() {
    let s = setup(&["--external-state-root"]).await;
    zero_state_root(&s);
    s.local.reject_no_tx_pool();
    healthy(&s).await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.local.block_hash(101).to_string(), "local block");
    assert_eq!(
        s.fallbacks("state_root_rebuild_refused"),
        1.0,
        "{}",
        s.mux.metrics_text()
    );
    assert_eq!(s.healthz().await, 206);
}

/// The local EL fails the rebuild itself (an internal error on its FCU, not a spec error about
/// the builder's transactions): charged to the local EL, not the builder.
#[tokio::test]
async fn a_rebuild_the_local_el_fails_is_charged_to_the_local_el() {
    let s = setup(&["--external-state-root", "--health-check-interval", "60"]).await;
    zero_state_root(&s);
    healthy(&s).await;
    // The builder answers 100 ms late, so the rebuild is the local EL's last call.
    s.builder.fault(
        "engine_getPayloadV3",
        crate::mock_engine::Fault::Delay(Duration::from_millis(100)),
    );
    let id = s.fcu_build().await;
    s.local.fault(
        "engine_forkchoiceUpdatedV3",
        crate::mock_engine::Fault::RpcError(-32603, "internal error"),
    );
    let res = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(
        res["executionPayload"]["blockHash"],
        json!(s.local.block_hash(101))
    );
    assert_eq!(
        s.fallbacks("state_root_rebuild_failed"),
        1.0,
        "{}",
        s.mux.metrics_text()
    );
    assert_eq!(s.healthz().await, 503, "the local EL failed");
    assert!(
        !s.mux.state().builders.first().health().failing(),
        "the builder is not charged"
    );
}
