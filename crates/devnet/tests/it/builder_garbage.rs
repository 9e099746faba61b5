//! `garbage`: the builder's Engine API answers with garbage (a non-JSON 200, a result of the
//! wrong shape, a truncated body, in turn). Switched on mid-block, after engine-mux re-published
//! some of the builder's flashblocks: that block still keeps them, the slots go on with local
//! blocks, the malformed answers are counted, and builder blocks come back once it is cleared.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};

use crate::support::{
    FlashblocksSubscriber, assert_block_keeps_its_flashblocks, canonical_occurrences, counters,
    flashblocks_config, flashblocks_of_block, missed, mux_metric, observe, preconfirmed_hashes,
    sealed_frames,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_answering_garbage_costs_no_slot_and_no_preconfirmation() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let malformed = [("outcome", "malformed")];
    let malformed_before = mux_metric(&devnet, "engine_mux_upstream_requests_total", &malformed);
    let (_, local_before, _) = counters(&devnet);

    // On right after flashblock 2 of a block reached subscribers: its getPayload gets garbage.
    // Blocks after head + 1 started after the subscriber connected (it has all their frames).
    let head = devnet.local.engine.head().number();
    let interrupted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let hit = sub
                .frames()
                .iter()
                .find(|f| f.index >= 2 && f.metadata.block_number > head + 1)
                .map(|f| f.metadata.block_number);
            if let Some(n) = hit {
                devnet.builder.engine.faults().set(Fault::Garbage, true);
                return n;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("a block with three flashblocks");
    let slots = observe(&devnet, &mut events, 8, Duration::from_secs(60), |_| {}).await;
    devnet.builder.engine.faults().clear();
    let (builder_mid, local_mid, _) = counters(&devnet);
    let after = observe(&devnet, &mut events, 8, Duration::from_secs(60), |_| {}).await;
    assert!(
        missed(&slots).is_empty() && missed(&after).is_empty(),
        "no missed slots: {:?} {:?}",
        missed(&slots),
        missed(&after)
    );

    let frames = sealed_frames(&sub, &after);
    let fbs = flashblocks_of_block(&frames, interrupted).expect("the interrupted block's frames");
    assert!(fbs.len() >= 3);
    assert_block_keeps_its_flashblocks(&devnet, interrupted, &fbs).await;
    let preconfirmed = preconfirmed_hashes(&frames);
    let occurrences = canonical_occurrences(&devnet, &preconfirmed);
    assert!(
        occurrences.iter().all(|n| *n == 1),
        "every preconfirmed transaction landed exactly once: {occurrences:?}"
    );

    let malformed_now = mux_metric(&devnet, "engine_mux_upstream_requests_total", &malformed);
    assert!(
        malformed_now >= malformed_before + 3.0,
        "non-JSON and truncated answers counted as malformed: {malformed_before} -> {malformed_now}"
    );
    assert!(
        local_mid >= local_before + 5.0,
        "local blocks while the builder answered garbage: {local_before} -> {local_mid}"
    );
    let (builder_end, _, _) = counters(&devnet);
    assert!(
        builder_end > builder_mid,
        "builder blocks resume once it answers properly: {builder_mid} -> {builder_end}"
    );
    devnet.stop().await;
}
