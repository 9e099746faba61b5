//! Validating the builder's block before op-node asks (`--prevalidate-builder-payload`), on
//! real engines: the early validation happens on the devnet's local engine, op-node's
//! getPayload is then answered without a second validation, every slot gets a block, and a
//! builder block the local engine finds INVALID early is never proposed.

use std::time::Duration;

use devnet::{
    app::Devnet,
    engine::faults::{Fault, FaultWindow},
};

use crate::support::{config, missed, mux_metric, observe};

/// The devnet with validation before op-node asks, timed like op-node.
fn prevalidating() -> devnet::app::DevnetConfig {
    let mut cfg = config();
    // Whole seconds: the driver then seals like op-node, at the attributes' timestamp (the
    // early work is timed from it; sub-second test slots are not tied to timestamps).
    cfg.block_time = Duration::from_secs(1);
    // op-node's sealing margin (op-node/rollup/sequencing: `sealingDuration`, 50 ms): the
    // driver asks 50 ms before the slot ends, after the early work (150 ms before) began.
    cfg.get_payload_lead = Some(Duration::from_millis(50));
    cfg.mux_args.extend(
        [
            "--prevalidate-builder-payload",
            "true",
            "--prevalidate-lead-ms",
            "150",
        ]
        .map(String::from),
    );
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_blocks_validated_before_op_node_asks_are_served_and_invalid_ones_refused() {
    let mut cfg = prevalidating();
    cfg.builder_faults = vec![FaultWindow {
        fault: Fault::Invalid,
        // Blocks 6 and 7 (the window's end is exclusive).
        from: 6,
        to: 8,
        builder: None,
    }];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 10, Duration::from_secs(60), |_| {}).await;
    assert!(missed(&slots).is_empty(), "{:?}", missed(&slots));

    let served = mux_metric(
        &devnet,
        "engine_mux_prevalidated_get_payloads_total",
        &[("result", "served")],
    );
    let rejected = mux_metric(
        &devnet,
        "engine_mux_prevalidated_get_payloads_total",
        &[("result", "rejected")],
    );
    assert!(
        served >= 4.0,
        "most builder blocks were validated before op-node asked: {served}\n{}",
        devnet.mux.metrics_text()
    );
    assert!(
        rejected >= 2.0,
        "both blocks of the INVALID window were caught early: {rejected}\n{}",
        devnet.mux.metrics_text()
    );
    let invalid_proposed = slots
        .iter()
        .filter_map(|s| s.proposed())
        .any(|b| (6..8).contains(&b.number) && devnet.builder.engine.produced().has_block(&b.hash));
    let seen: Vec<_> = slots
        .iter()
        .filter_map(|s| s.proposed())
        .map(|b| {
            (
                b.number,
                devnet.builder.engine.produced().has_block(&b.hash),
                devnet.local.engine.produced().has_block(&b.hash),
            )
        })
        .collect();
    assert!(
        !invalid_proposed,
        "no block of the INVALID window came from the builder: {seen:?}\n{}",
        devnet.mux.metrics_text()
    );
    devnet.stop().await;
}

/// A hostile builder: asked again at getPayload (`gas-used` weighs the local block, so the
/// builder is asked again), it answers its block with the last transaction dropped under the
/// hash that was validated before op-node asked. Those bytes were never validated: engine-mux
/// validates them, the local engine (which recomputes every payload's hash, as op-geth and reth
/// do) refuses them, and op-node gets the local block. Every slot gets a block that the local
/// engine accepts from op-node (the driver's newPayload: tampered bytes proposed would be
/// INVALID there, a missed slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_contents_under_an_early_validated_hash_are_never_proposed() {
    let mut cfg = prevalidating();
    cfg.mux_args
        .extend(["--block-selection-policy", "gas-used"].map(String::from));
    cfg.builder_faults = vec![FaultWindow {
        fault: Fault::SameHashOtherTxs,
        from: 3,
        to: 1_000_000,
        builder: None,
    }];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 10, Duration::from_secs(60), |_| {}).await;
    assert!(missed(&slots).is_empty(), "{:?}", missed(&slots));
    let changed = mux_metric(
        &devnet,
        "engine_mux_prevalidated_get_payloads_total",
        &[("result", "changed")],
    );
    let refused = mux_metric(
        &devnet,
        "engine_mux_fallbacks_total",
        &[("reason", "invalid")],
    );
    assert!(
        changed >= 1.0 && refused >= changed,
        "tampered answers were validated again and refused: changed {changed}, invalid {refused}\n{}",
        devnet.mux.metrics_text()
    );
    devnet.stop().await;
}
