//! Flashblocks across the Isthmus transition: before it (engine V3, no withdrawals root in the
//! payload) the block engine-mux assembles from flashblocks when the builder dies mid-block is
//! valid too, and every block on both sides is exactly its flashblocks.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};
use test_utils::eventually;

use crate::support::{
    FlashblocksSubscriber, assert_block_is_its_flashblocks, flashblocks_config,
    flashblocks_of_block, missed, mux_metric, observe,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pre_isthmus_block_assembled_from_flashblocks_then_v4_blocks() {
    let mut cfg = flashblocks_config();
    // Timestamps advance 1 s per block, so Isthmus activates at block 8.
    cfg.isthmus_offset = Some(8);
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 2, Duration::from_secs(30), |_| {}).await;
    let preserved = [("path", "preserved")];
    let preserved_before = mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &preserved);
    let faults = devnet.builder.engine.faults().clone();
    faults.set(Fault::DownAfterFlashblock(2), true);
    eventually(
        Duration::from_secs(20),
        "the builder dies after a flashblock 2",
        || {
            let tripped = faults.tripped().is_some();
            async move { tripped }
        },
    )
    .await;
    let (killed_id, _) = faults.tripped().expect("tripped");
    observe(&devnet, &mut events, 1, Duration::from_secs(30), |_| {}).await;
    faults.set(Fault::DownAfterFlashblock(2), false);
    let slots = observe(&devnet, &mut events, 12, Duration::from_secs(60), |_| {}).await;
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );

    let frames = sub.frames();
    let killed: Vec<_> = frames
        .iter()
        .filter(|f| f.payload_id == killed_id)
        .cloned()
        .collect();
    let number = killed[0].metadata.block_number;
    let timestamp = killed[0].base.as_ref().expect("base").timestamp;
    assert!(
        !devnet.spec.is_isthmus(timestamp),
        "block {number} is pre-Isthmus (V3)"
    );
    assert_eq!(killed.len(), 3, "flashblocks 0-2 of block {number}");
    assert_block_is_its_flashblocks(&devnet, number, &killed).await;
    assert_eq!(
        mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &preserved),
        preserved_before + 1.0,
        "the V3 block was assembled from flashblocks"
    );

    // Builder blocks again on both sides of the fork, each exactly its flashblocks.
    let blocks: Vec<_> = slots.iter().filter_map(|o| o.proposed()).collect();
    assert!(blocks.iter().any(|b| b.v4), "V4 blocks after Isthmus");
    let mut checked = (0, 0);
    for b in &blocks {
        let Some(fbs) = flashblocks_of_block(&frames, b.number) else {
            continue; // a local block while the builder came back
        };
        if fbs[0].index != 0 || b.number == blocks[blocks.len() - 1].number {
            continue;
        }
        assert_block_is_its_flashblocks(&devnet, b.number, &fbs).await;
        if b.v4 {
            checked.1 += 1;
        } else {
            checked.0 += 1;
        }
    }
    assert!(
        checked.1 >= 3,
        "V4 blocks checked against their flashblocks: {checked:?}"
    );
    devnet.stop().await;
}
