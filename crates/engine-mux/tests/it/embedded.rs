//! engine-mux embedded: the typed Engine API of `RunningMux::engine()` takes the same decisions
//! as op-node's requests on the RPC port. One script (a healthy block, a builder block the local
//! EL finds INVALID, a good builder block again, a builder that misses the deadline) runs on two
//! fresh instances over identical mocks, one driven over HTTP the way op-node drives it and one
//! through the handle; every block's source, the fallback counts and `/healthz` must agree.

use std::time::Duration;

use alloy_rpc_types_engine::{ExecutionPayloadV3, ForkchoiceState};
use op_alloy_rpc_types_engine::OpPayloadAttributes;
use serde_json::json;

use crate::{
    harness::{Setup, attributes, forkchoice, setup_with},
    mock_engine::{Fault, MockEngine},
};

async fn fresh() -> Setup {
    let local = MockEngine::start("local", 0x03, 0xaa).await;
    let builder = MockEngine::start("builder", 0x04, 0xbb).await;
    setup_with(local, builder, &[]).await
}

/// What one block of the script did to a setup: before block `n`.
fn arrange(s: &Setup, n: u64) {
    match n {
        102 => s.local.invalid_for(s.builder.block_hash(102)),
        104 => s.builder.fault(
            "engine_getPayloadV3",
            Fault::Delay(Duration::from_millis(750)),
        ),
        _ => {}
    }
}

fn source(s: &Setup, hash: &str, n: u64) -> &'static str {
    if s.builder.block_hash(n).to_string() == hash {
        "builder"
    } else if s.local.block_hash(n).to_string() == hash {
        "local"
    } else {
        "unknown"
    }
}

/// One block through the typed handle, as op-node's engine driver would call it in process.
async fn embedded_block(s: &Setup, head: u64) -> String {
    let engine = s.mux.engine();
    let state: ForkchoiceState = serde_json::from_value(forkchoice(head)).unwrap();
    let attrs: OpPayloadAttributes = serde_json::from_value(attributes(false)).unwrap();
    let fcu = engine
        .fork_choice_updated_v3(state, Some(attrs))
        .await
        .expect("FCU answered");
    let id = fcu.payload_id.expect("a payload id");
    let envelope = engine
        .get_payload_v3(id)
        .await
        .expect("getPayload answered");
    let payload: ExecutionPayloadV3 = envelope.execution_payload.clone();
    let hash = payload.payload_inner.payload_inner.block_hash.to_string();
    let status = engine
        .new_payload_v3(payload, vec![], envelope.parent_beacon_block_root)
        .await
        .expect("newPayload answered");
    assert!(status.status.is_valid(), "{status:?}");
    let next: ForkchoiceState = serde_json::from_value(forkchoice(head + 1)).unwrap();
    engine
        .fork_choice_updated_v3(next, None)
        .await
        .expect("FCU answered");
    hash
}

#[tokio::test]
async fn the_typed_handle_takes_the_same_decisions_as_the_rpc_port() {
    let (http, embedded) = (fresh().await, fresh().await);
    let mut trace = (Vec::new(), Vec::new());
    for n in 101..=104 {
        arrange(&http, n);
        let hash = http.block("engine_getPayloadV3").await;
        trace
            .0
            .push((source(&http, &hash, n), http.healthz().await));

        arrange(&embedded, n);
        let hash = embedded_block(&embedded, n - 1).await;
        trace
            .1
            .push((source(&embedded, &hash, n), embedded.healthz().await));
    }
    assert_eq!(
        trace.0,
        vec![
            ("builder", 200),
            ("local", 206),
            ("builder", 200),
            ("local", 206)
        ],
        "the script's expected decisions over HTTP"
    );
    assert_eq!(trace.0, trace.1, "embedded decided otherwise");
    for reason in ["invalid", "timeout"] {
        assert_eq!(
            http.fallbacks(reason),
            embedded.fallbacks(reason),
            "{reason}"
        );
        assert_eq!(embedded.fallbacks(reason), 1.0, "{reason}");
    }
    // A JSON-RPC error comes back as the error op-node would get.
    let err = embedded
        .mux
        .engine()
        .call("engine_getPayloadV3", json!(["0x00"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("engine_getPayloadV3"), "{err}");
}

/// What an operator reaches over HTTP is on the handle too: health as `/healthz` answers it,
/// the debug API's builder switch (a disabled builder is asked for no block; an unknown name is
/// an error), the execution mode with its gauge, getPayloadV5 routed like V4, and the metrics.
#[tokio::test]
async fn the_handle_carries_health_the_debug_controls_and_the_metrics() {
    let s = fresh().await;
    let engine = s.mux.engine();
    assert_eq!(engine.health().code(), s.healthz().await);
    assert_eq!(engine.health_report().health, engine.health());

    let builders = engine.builders();
    assert_eq!(builders.len(), 1);
    assert!(builders[0].enabled);
    assert!(matches!(
        engine.set_builder_enabled("nobody", false),
        Err(engine_mux::embed::EmbedError::NoSuchBuilder { .. })
    ));
    let off = engine.set_builder_enabled("builder", false).unwrap();
    assert!(!off.enabled);
    assert!(!engine.builders()[0].enabled);
    s.builder.clear_calls();
    let hash = embedded_block(&s, 100).await;
    assert_eq!(source(&s, &hash, 101), "local");
    let builds = s
        .builder
        .calls_of("engine_forkchoiceUpdatedV3")
        .into_iter()
        .filter(|c| !c.params[1].is_null())
        .count();
    assert_eq!(builds, 0, "a disabled builder was asked for a block");
    engine.set_builder_enabled("builder", true).unwrap();

    engine.set_execution_mode("dry_run".parse().unwrap());
    assert_eq!(engine.execution_mode().as_str(), "dry_run");
    // The mode's gauge moved as the debug API moves it, in the handle's metrics.
    let text = engine.metrics_text();
    assert!(
        text.lines()
            .any(|l| l == "engine_mux_execution_mode{mode=\"dry_run\"} 1"),
        "no dry_run gauge"
    );

    // getPayloadV5 reaches the local EL as engine_getPayloadV5 (an unknown id: its error).
    let err = engine
        .get_payload_v5(engine_api::PayloadId::new([9; 8]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("engine_getPayloadV5"), "{err}");
    assert!(!s.local.calls_of("engine_getPayloadV5").is_empty());
}
