//! `flashblocks_hostile`: the builder's stream interleaves frames engine-mux must refuse
//! (unparseable text, frames claimed by another payload, an index going backwards, a binary
//! frame that is not Brotli) with its real ones. engine-mux keeps the real ones, re-publishes
//! none of the bad ones, counts them, and no preconfirmation is lost.

use std::{collections::HashSet, time::Duration};

use devnet::{app::Devnet, engine::faults::Fault};

use crate::support::{
    FlashblocksSubscriber, assert_blocks_keep_their_flashblocks,
    assert_in_order_without_duplicates, canonical_occurrences, flashblocks_config, missed,
    mux_metric, observe, preconfirmed_hashes, sealed_frames,
};

fn rejected(devnet: &Devnet, reason: &str) -> f64 {
    mux_metric(
        devnet,
        "engine_mux_flashblocks_rejected_total",
        &[("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_frames_are_refused_and_counted_while_the_real_ones_are_kept() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let reasons = ["malformed", "equivocation", "duplicate", "late"];
    let before: Vec<f64> = reasons.iter().map(|r| rejected(&devnet, r)).collect();
    let paths_before = mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &[]);
    devnet
        .builder
        .engine
        .faults()
        .set(Fault::FlashblocksHostile, true);
    let slots = observe(&devnet, &mut events, 10, Duration::from_secs(60), |_| {}).await;
    devnet.builder.engine.faults().clear();
    // Two more blocks so the last preconfirmations land.
    let tail = observe(&devnet, &mut events, 2, Duration::from_secs(30), |_| {}).await;
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );

    // Every frame re-published parses (`frames` asserts it), is in order with no duplicates,
    // and is one the builder really built.
    let frames = sealed_frames(&sub, &tail);
    assert_in_order_without_duplicates(&sub.ids());
    let built: HashSet<_> = devnet
        .builder
        .engine
        .produced()
        .flashblocks()
        .into_iter()
        .collect();
    for f in &frames {
        assert!(
            built.contains(&(f.payload_id, f.index, f.diff.block_hash)),
            "engine-mux re-published a frame the builder never built: {} #{}",
            f.payload_id,
            f.index
        );
    }
    let kept = assert_blocks_keep_their_flashblocks(&devnet, &slots, &frames).await;
    assert!(
        kept >= 6,
        "the real flashblocks still reached subscribers for most blocks: {kept}"
    );
    let preconfirmed = preconfirmed_hashes(&frames);
    assert!(!preconfirmed.is_empty(), "pool transactions preconfirmed");
    let occurrences = canonical_occurrences(&devnet, &preconfirmed);
    assert!(
        occurrences.iter().all(|n| *n == 1),
        "every preconfirmed transaction landed exactly once: {occurrences:?}"
    );

    let after: Vec<f64> = reasons.iter().map(|r| rejected(&devnet, r)).collect();
    assert!(
        after[0] >= before[0] + 4.0,
        "unparseable text and non-Brotli binary frames counted as malformed: {before:?} -> {after:?}"
    );
    assert!(
        after[1] + after[2] > before[1] + before[2],
        "backwards indices counted as equivocation or duplicate: {before:?} -> {after:?}"
    );
    assert!(
        after[3] > before[3],
        "frames claimed by the previous, decided payload counted as late: {before:?} -> {after:?}"
    );
    assert!(
        mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &[])
            > paths_before + slots.len() as f64 / 2.0,
        "builder blocks kept being proposed from its real flashblocks"
    );
    devnet.stop().await;
}
