//! A builder that leaves the state root to the sequencer (rollup-boost's external state root):
//! with `--external-state-root` the local engine rebuilds its blocks from their transactions and
//! they are proposed; without it they are refused as INVALID and the local block is used.

use std::{sync::atomic::Ordering, time::Duration};

use alloy_primitives::B256;
use devnet::{
    app::Devnet,
    engine::faults::{Fault, FaultWindow},
};

use crate::support::{config, local_block, missed, mux_metric, observe};

const WINDOW: FaultWindow = FaultWindow {
    fault: Fault::ZeroStateRoot,
    from: 3,
    to: 9,
    builder: None,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_external_state_root_the_zero_root_builders_blocks_are_rebuilt_and_proposed() {
    let mut cfg = config();
    cfg.mux_args.push("--external-state-root".into());
    cfg.builder_faults = vec![WINDOW];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 11, Duration::from_secs(60), |_| {}).await;
    assert!(missed(&slots).is_empty(), "{:?}", missed(&slots));

    let mut rebuilt = 0;
    for block in slots.iter().filter_map(|o| o.proposed()) {
        if !WINDOW.covers(block.number) {
            continue;
        }
        // The block the builder built (its transactions, its real state root) is the block
        // proposed: the local engine rebuilt exactly it from the zero-root payload.
        let Some(built) = devnet.builder.engine.built_block(&block.hash) else {
            continue;
        };
        rebuilt += 1;
        let local = local_block(&devnet, block.number).await;
        assert_eq!(local["hash"], serde_json::json!(block.hash), "canonical");
        assert_eq!(
            local["stateRoot"],
            serde_json::json!(built.header.state_root),
            "block {}: the local engine's own state root",
            block.number
        );
        assert_ne!(built.header.state_root, B256::ZERO);
        let txs: Vec<B256> = serde_json::from_value(local["transactions"].clone()).unwrap();
        let builder_txs: Vec<B256> = built.transactions.iter().map(|t| t.tx_hash()).collect();
        assert_eq!(
            txs, builder_txs,
            "block {}: the builder's transactions",
            block.number
        );
        assert!(
            txs.len() > 1,
            "the builder's pool transactions, not only the deposit"
        );
    }
    assert!(
        rebuilt >= 4,
        "the builder's zero-root blocks were proposed: {rebuilt} of the window's 6\n{}",
        devnet.mux.metrics_text()
    );
    let stats = devnet.local.engine.stats();
    assert_eq!(
        stats.invalid_payloads.load(Ordering::Relaxed),
        0,
        "no zero-root block was ever validated"
    );
    assert_eq!(
        mux_metric(
            &devnet,
            "engine_mux_fallbacks_total",
            &[("reason", "invalid")]
        ),
        0.0
    );
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_external_state_root_zero_root_builder_blocks_are_invalid_and_local_is_used() {
    let mut cfg = config();
    cfg.builder_faults = vec![WINDOW];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 11, Duration::from_secs(60), |_| {}).await;
    assert!(missed(&slots).is_empty(), "{:?}", missed(&slots));

    let stats = devnet.local.engine.stats();
    assert!(stats.invalid_payloads.load(Ordering::Relaxed) >= 1);
    let reason = stats.last_invalid_reason().expect("an INVALID reason");
    assert!(reason.starts_with("state root mismatch"), "{reason}");
    assert!(
        mux_metric(
            &devnet,
            "engine_mux_fallbacks_total",
            &[("reason", "invalid")]
        ) >= 1.0
    );
    let last = slots.last().unwrap();
    assert!(
        last.local_blocks >= 3.0,
        "the local block is used while the builder's roots are zero: {last:?}"
    );
    let head = local_block(&devnet, devnet.local.engine.head().number()).await;
    assert_ne!(head["stateRoot"], serde_json::json!(B256::ZERO));
    devnet.stop().await;
}

/// With flashblocks too: the zero-root block (and what its flashblocks assemble to) is rebuilt,
/// and every preconfirmed transaction is in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_flashblocks_the_rebuilt_block_keeps_every_preconfirmed_transaction() {
    let mut cfg = crate::support::flashblocks_config();
    cfg.mux_args.push("--external-state-root".into());
    cfg.builder_faults = vec![WINDOW];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let sub =
        crate::support::FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.unwrap()).await;
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 11, Duration::from_secs(60), |_| {}).await;
    assert!(missed(&slots).is_empty(), "{:?}", missed(&slots));
    assert_eq!(
        devnet
            .local
            .engine
            .stats()
            .invalid_payloads
            .load(Ordering::Relaxed),
        0
    );
    let mut rebuilt = 0;
    for block in slots.iter().filter_map(|o| o.proposed()) {
        if WINDOW.covers(block.number) && devnet.builder.engine.built_block(&block.hash).is_some() {
            rebuilt += 1;
        }
    }
    assert!(rebuilt >= 4, "{rebuilt}\n{}", devnet.mux.metrics_text());
    // The payload still streaming when the run stopped is not in the chain yet.
    let mut frames = sub.frames();
    let in_flight = frames.last().map(|f| f.payload_id);
    frames.retain(|f| Some(f.payload_id) != in_flight);
    assert!(!frames.is_empty());
    let canonical = crate::support::canonical_occurrences(
        &devnet,
        &crate::support::preconfirmed_hashes(&frames),
    );
    assert!(
        canonical.iter().all(|n| *n == 1),
        "every preconfirmed transaction is in the chain once: {canonical:?}"
    );
    devnet.stop().await;
}
