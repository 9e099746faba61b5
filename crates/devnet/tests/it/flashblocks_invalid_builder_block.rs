//! Flashblocks end to end: the flashblocks are proposed "when valid"; only when they cannot form a
//! valid block does it fall back to the builder's payload, then to the local block.
//!
//! Here the builder's `invalid` fault corrupts only the payload its getPayload serves (state
//! root, header hash recomputed); its flashblocks stay honest, so they assemble to a block the
//! local EL accepts: engine-mux tries the builder's block, then the block the flashblocks
//! assemble to (engine-mux `builder/payload.rs`, `with_flashblocks`), and proposes the latter.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};

use crate::support::{
    FlashblocksSubscriber, assert_block_is_its_flashblocks, flashblocks_config,
    flashblocks_of_block, missed, observe,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_builder_block_is_replaced_by_its_valid_flashblocks() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 4, Duration::from_secs(30), |_| {}).await;
    devnet.builder.engine.faults().set(Fault::Invalid, true);
    let slots = observe(&devnet, &mut events, 5, Duration::from_secs(30), |_| {}).await;
    devnet.builder.engine.faults().clear();
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );

    let frames = sub.frames();
    // Every block proposed after the fault went on (its getPayload was answered invalid) with
    // flashblocks published for it is exactly those flashblocks.
    let mut checked = 0;
    for n in slots
        .iter()
        .filter_map(|o| o.proposed().map(|b| b.number))
        .skip(1)
    {
        let Some(fbs) = flashblocks_of_block(&frames, n) else {
            continue;
        };
        assert_block_is_its_flashblocks(&devnet, n, &fbs).await;
        checked += 1;
    }
    assert!(
        checked >= 1,
        "a block with flashblocks while the builder served invalid payloads"
    );
    devnet.stop().await;
}
