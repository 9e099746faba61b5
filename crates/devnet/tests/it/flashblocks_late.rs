//! `flashblocks_late=MS`: every flashblock of the builder is held back, so the last ones of
//! each block reach engine-mux after op-node's getPayload. engine-mux refuses those as late
//! (never re-publishing what is not in the block it proposed), keeps the rest, and every
//! preconfirmation lands in its block.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};

use crate::support::{
    FlashblocksSubscriber, assert_blocks_keep_their_flashblocks,
    assert_in_order_without_duplicates, canonical_occurrences, flashblocks_config, missed,
    mux_metric, observe, preconfirmed_hashes, sealed_frames,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_flashblocks_after_get_payload_are_refused_and_no_preconfirmation_is_lost() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let late = [("reason", "late")];
    let late_before = mux_metric(&devnet, "engine_mux_flashblocks_rejected_total", &late);
    // 250 ms slots, getPayload 200 ms after the FCU: flashblocks built from 80 ms on arrive
    // after it.
    devnet
        .builder
        .engine
        .faults()
        .set(Fault::FlashblocksLate(120), true);
    let slots = observe(&devnet, &mut events, 10, Duration::from_secs(60), |_| {}).await;
    devnet.builder.engine.faults().clear();
    let tail = observe(&devnet, &mut events, 2, Duration::from_secs(30), |_| {}).await;
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );

    let frames = sealed_frames(&sub, &tail);
    assert_in_order_without_duplicates(&sub.ids());
    let kept = assert_blocks_keep_their_flashblocks(&devnet, &slots, &frames).await;
    assert!(
        kept >= 6,
        "late flashblocks still reached subscribers before their block for most blocks: {kept}"
    );
    let preconfirmed = preconfirmed_hashes(&frames);
    let occurrences = canonical_occurrences(&devnet, &preconfirmed);
    assert!(
        occurrences.iter().all(|n| *n == 1),
        "every preconfirmed transaction landed exactly once: {occurrences:?}"
    );
    let late_now = mux_metric(&devnet, "engine_mux_flashblocks_rejected_total", &late);
    assert!(
        late_now >= late_before + 5.0,
        "flashblocks arriving after the block was decided counted as late: {late_before} -> {late_now}"
    );
    devnet.stop().await;
}
