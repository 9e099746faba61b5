//! Validating the builder's block before op-node asks for it. The mocks' slots end
//! within a second of the FCU (attributes' timestamp now + 1 s), so a lead of 5 s starts the
//! early work as soon as the FCU is answered; the tests wait for it before asking, as op-node
//! waits for the slot. The mock builder answers getPayload for the same id again with the same
//! block, as op-geth does once a payload is resolved.

use std::time::Duration;

use alloy_primitives::B256;
use serde_json::json;

use crate::{
    harness::{Setup, client, eventually, setup},
    mock_engine::Fault,
};

const PREVALIDATE: [&str; 4] = [
    "--prevalidate-builder-payload",
    "true",
    "--prevalidate-lead-ms",
    "5000",
];

/// One block first: the early fetch asks with the getPayload version op-node last used.
async fn prevalidating() -> Setup {
    prevalidating_with(&[]).await
}

/// `--block-selection-policy gas-used` weighs the builder's block against the local one, so
/// getPayload cannot answer before the local EL does: the builder is asked again too, and a
/// block that changed since the early validation is seen.
const WEIGHED: [&str; 2] = ["--block-selection-policy", "gas-used"];

async fn prevalidating_with(extra: &[&str]) -> Setup {
    let args: Vec<&str> = PREVALIDATE.iter().chain(extra).copied().collect();
    let s = setup(&args).await;
    s.block("engine_getPayloadV3").await;
    // The builder imported op-node's block (mirrored newPayload): it builds on it next.
    eventually(Duration::from_secs(5), "builder at 101", || async {
        s.builder.head().0 == 101
    })
    .await;
    s.local.clear_calls();
    s.builder.clear_calls();
    s
}

fn early(s: &Setup, outcome: &str) -> f64 {
    test_utils::metric(
        &s.mux.metrics_text(),
        &format!("engine_mux_prevalidations_total{{builder=\"builder\",outcome=\"{outcome}\"}}"),
    )
}

fn served(s: &Setup, result: &str) -> f64 {
    test_utils::metric(
        &s.mux.metrics_text(),
        &format!("engine_mux_prevalidated_get_payloads_total{{result=\"{result}\"}}"),
    )
}

/// The local EL's newPayload calls, by block hash.
fn validated(s: &Setup) -> Vec<B256> {
    s.local
        .calls_of("engine_newPayloadV3")
        .iter()
        .map(|c| serde_json::from_value(c.params[0]["blockHash"].clone()).unwrap())
        .collect()
}

async fn wait_early(s: &Setup, outcome: &str) {
    eventually(Duration::from_secs(5), "early validation", || async {
        early(s, outcome) >= 1.0
    })
    .await;
}

#[tokio::test]
async fn prevalidated_block_is_served_without_a_second_local_new_payload() {
    let s = prevalidating().await;
    let id = s.fcu_build().await;
    wait_early(&s, "valid").await;
    let block = s.builder.block_hash(102);
    assert_eq!(
        validated(&s),
        vec![block],
        "validated once, before op-node asked"
    );

    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(env["executionPayload"]["blockHash"], json!(block));
    assert_eq!(
        validated(&s),
        vec![block],
        "op-node's getPayload did not validate it again"
    );
    assert_eq!(served(&s, "served"), 1.0);
    assert_eq!(s.blocks("builder"), 2.0);
}

/// Decided before op-node asked (one builder, its block validated VALID, a valid builder block
/// always wins): op-node is answered without a round trip, the builder is not asked again (its
/// build ended when its block was fetched early), and the local EL still gets op-node's
/// getPayload so it stops building its own block.
#[tokio::test]
async fn prevalidated_block_is_answered_without_asking_anyone_again() {
    let s = prevalidating().await;
    let id = s.fcu_build().await;
    wait_early(&s, "valid").await;
    let block = s.builder.block_hash(102);
    assert_eq!(
        s.builder.calls_of("engine_getPayloadV3").len(),
        1,
        "early fetch"
    );

    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(env["executionPayload"]["blockHash"], json!(block));
    assert_eq!(
        s.builder.calls_of("engine_getPayloadV3").len(),
        1,
        "the builder is not asked again"
    );
    eventually(Duration::from_secs(5), "local getPayload", || async {
        s.local.calls_of("engine_getPayloadV3").len() == 1
    })
    .await;
    assert_eq!(validated(&s), vec![block]);
    assert_eq!(served(&s, "served"), 1.0);
}

/// A builder that hands out another block after its early fetch (op-geth and reth-based builders
/// do not) is seen where getPayload asks again: under a policy that weighs the local block.
#[tokio::test]
async fn block_changed_after_prevalidation_is_validated_again() {
    let s = prevalidating_with(&WEIGHED).await;
    let id = s.fcu_build().await;
    wait_early(&s, "valid").await;
    let early_block = s.builder.block_hash(102);
    // The builder hands out another block for the same payload id (still the block op-node
    // asked for: only its contents, hence its hash, changed).
    s.builder.tamper_payloads(|p| {
        p.payload_inner.payload_inner.block_hash = B256::repeat_byte(0x77);
        p.payload_inner.payload_inner.gas_used += 21_000;
    });

    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    let changed = B256::repeat_byte(0x77);
    assert_eq!(env["executionPayload"]["blockHash"], json!(changed));
    assert_eq!(
        validated(&s),
        vec![early_block, changed],
        "the changed block was validated before it was proposed"
    );
    assert_eq!(served(&s, "changed"), 1.0);
    assert_eq!(served(&s, "served"), 0.0);
}

#[tokio::test]
async fn changed_block_that_is_invalid_falls_back_to_the_local_block() {
    let s = prevalidating_with(&WEIGHED).await;
    let id = s.fcu_build().await;
    wait_early(&s, "valid").await;
    s.builder
        .tamper_payloads(|p| p.payload_inner.payload_inner.block_hash = B256::repeat_byte(0x78));
    s.local.invalid_for(B256::repeat_byte(0x78));

    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.local.block_hash(102)),
        "a VALID early verdict never covers another block"
    );
    assert_eq!(s.fallbacks("invalid"), 1.0);
}

/// A hostile builder: asked again at getPayload, it answers other contents (one transaction
/// more) under the block hash it was validated with early. A hash is only a claim: those bytes
/// were never validated, so they are validated now, and the local EL (which, like op-geth and
/// reth, recomputes the hash from the payload) refuses them: op-node gets the local block,
/// never bytes nobody validated.
#[tokio::test]
async fn other_contents_under_the_early_validated_hash_are_validated_again() {
    let s = prevalidating_with(&WEIGHED).await;
    s.local.check_block_hashes();
    let id = s.fcu_build().await;
    wait_early(&s, "valid").await;
    let early_block = s.builder.block_hash(102);
    s.builder.tamper_payloads(|p| {
        let v1 = &mut p.payload_inner.payload_inner;
        v1.transactions.push(vec![0x02; 99].into());
        v1.gas_used += 21_000;
    });

    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.local.block_hash(102)),
        "the tampered bytes were not proposed"
    );
    assert_eq!(
        validated(&s),
        vec![early_block, early_block],
        "the answer under the same hash was validated again"
    );
    assert_eq!(served(&s, "changed"), 1.0);
    assert_eq!(served(&s, "served"), 0.0);
    assert_eq!(s.fallbacks("invalid"), 1.0);
}

#[tokio::test]
async fn prevalidated_invalid_block_falls_back_without_validating_it_again() {
    let s = prevalidating().await;
    let block = s.builder.block_hash(102);
    s.local.invalid_for(block);
    let id = s.fcu_build().await;
    wait_early(&s, "invalid").await;

    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    assert_eq!(
        env["executionPayload"]["blockHash"],
        json!(s.local.block_hash(102)),
        "the local block is proposed"
    );
    assert_eq!(
        validated(&s),
        vec![block],
        "INVALID once is INVALID: not asked again"
    );
    assert_eq!(s.fallbacks("invalid"), 1.0);
    assert_eq!(served(&s, "rejected"), 1.0);
    assert_eq!(s.blocks("local"), 1.0);
}

/// op-rbuilder (and every reth-based builder) forgets a payload once getPayload resolved it:
/// asked again, it answers -38001. The block fetched early is then the builder's block.
#[tokio::test]
async fn builder_that_forgets_a_resolved_payload_still_gets_its_early_block_proposed() {
    let s = prevalidating().await;
    let id = s.fcu_build().await;
    wait_early(&s, "valid").await;
    s.builder.fault(
        "engine_getPayloadV3",
        Fault::RpcError(-38001, "Unknown payload"),
    );

    let env = s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    let block = s.builder.block_hash(102);
    assert_eq!(env["executionPayload"]["blockHash"], json!(block));
    assert_eq!(validated(&s), vec![block]);
    assert_eq!(served(&s, "served"), 1.0);
}

/// A builder whose getPayload hangs: the early fetch hangs with it, and still FCU and
/// newPayload pass straight through and getPayload answers the local block by its deadline.
/// op-node's client gives up after 1 s, well under the builder's 3 s timeout: any of its calls
/// waiting on the hung builder would fail.
#[tokio::test]
async fn hung_builder_delays_nothing_while_its_block_is_fetched_early() {
    let s = setup(&[
        PREVALIDATE[0],
        PREVALIDATE[1],
        PREVALIDATE[2],
        PREVALIDATE[3],
        "--builder-timeout",
        "3000",
        // Keep asking it, so every block's early fetch hangs.
        "--ignore-unhealthy-builders",
        "false",
    ])
    .await;
    s.block("engine_getPayloadV3").await;
    s.builder.fault("engine_getPayloadV3", Fault::Hang);
    let op_node = client(&s.mux, Some(s.local.secret), Duration::from_secs(1));
    let call = |method: &'static str, params: serde_json::Value| {
        let op_node = op_node.clone();
        async move {
            op_node
                .call::<serde_json::Value>(method, &params, op_node.timeout())
                .await
        }
    };
    for n in 0..3u64 {
        s.builder.clear_calls();
        let fcu = call(
            "engine_forkchoiceUpdatedV3",
            json!([
                crate::harness::forkchoice(101 + n),
                crate::harness::attributes(false)
            ]),
        )
        .await
        .expect("FCU answered while the builder hangs");
        // The early fetch is hanging in the builder now.
        eventually(Duration::from_secs(5), "early fetch sent", || async {
            !s.builder.calls_of("engine_getPayloadV3").is_empty()
        })
        .await;
        call(
            "engine_forkchoiceUpdatedV3",
            json!([crate::harness::forkchoice(101 + n), null]),
        )
        .await
        .expect("FCU without attributes answered while the early fetch hangs");
        let env = call("engine_getPayloadV3", json!([fcu["payloadId"]]))
            .await
            .expect("getPayload answered within its deadline");
        assert_eq!(
            env["executionPayload"]["blockHash"],
            json!(s.local.block_hash(102 + n))
        );
        let status = call(
            "engine_newPayloadV3",
            json!([env["executionPayload"], [], env["parentBeaconBlockRoot"]]),
        )
        .await
        .expect("newPayload answered while the early fetch hangs");
        assert_eq!(status["status"], "VALID");
    }
    assert_eq!(s.blocks("local"), 3.0);
    assert_eq!(early(&s, "valid"), 0.0);
}
