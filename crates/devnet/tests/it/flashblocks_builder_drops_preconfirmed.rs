//! The builder's getPayload block leaves out transactions its flashblocks preconfirmed (a valid
//! block, attribute transactions only): engine-mux proposes the block assembled from the
//! flashblocks instead, so what users were shown lands.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};

use crate::support::{
    FlashblocksSubscriber, assert_block_is_its_flashblocks, flashblocks_config,
    flashblocks_of_block, missed, mux_metric, observe,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_block_dropping_preconfirmations_is_replaced_by_its_flashblocks() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    let assembled = [("path", "assembled")];
    let assembled_before = mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &assembled);
    devnet
        .builder
        .engine
        .faults()
        .set(Fault::DropPreconfirmed, true);
    let slots = observe(&devnet, &mut events, 6, Duration::from_secs(30), |_| {}).await;
    devnet.builder.engine.faults().clear();
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );

    let frames = sub.frames();
    let mut with_user_txs = 0;
    // The first slot may have been decided before the fault went on; the last one's stream may
    // still be in flight.
    let numbers: Vec<u64> = slots
        .iter()
        .filter_map(|o| o.proposed().map(|b| b.number))
        .collect();
    for &n in &numbers[1..numbers.len() - 1] {
        let fbs =
            flashblocks_of_block(&frames, n).unwrap_or_else(|| panic!("block {n} had flashblocks"));
        assert_block_is_its_flashblocks(&devnet, n, &fbs).await;
        if fbs.iter().skip(1).any(|f| !f.diff.transactions.is_empty()) {
            with_user_txs += 1;
        }
    }
    assert!(
        with_user_txs >= 3,
        "blocks whose flashblocks preconfirmed pool transactions: {with_user_txs}"
    );
    let now = mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &assembled);
    assert!(
        now >= assembled_before + with_user_txs as f64,
        "engine-mux assembled those blocks from flashblocks ({assembled_before} -> {now})"
    );
    devnet.stop().await;
}
