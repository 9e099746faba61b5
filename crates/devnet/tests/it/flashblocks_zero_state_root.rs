//! Flashblocks end to end: a builder whose flashblocks and final block both carry a zero state
//! root (the devnet builder's `zero_state_root` fault; a real op-rbuilder with
//! `disable_state_root` streams such flashblocks legitimately, and a broken one could seal
//! them). Neither the builder's block nor the block its flashblocks assemble to is VALID on the
//! local EL, yet their transactions were shown to users: engine-mux has the local EL build
//! op-node's block from exactly those transactions, so every preconfirmation lands in its own
//! block, in order, and the slot is not missed.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};

use crate::support::{
    FlashblocksSubscriber, block_tx_hashes, flashblocks_config, flashblocks_of_block, local_block,
    missed, mux_metric, observe, preconfirmed_strings,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_state_root_flashblocks_are_rebuilt_by_the_local_el_and_land_in_their_block() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    devnet
        .builder
        .engine
        .faults()
        .set(Fault::ZeroStateRoot, true);
    let slots = observe(&devnet, &mut events, 5, Duration::from_secs(30), |_| {}).await;
    devnet.builder.engine.faults().clear();
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );

    let frames = sub.frames();
    let mut checked = 0;
    // The first slot may have been decided before the fault went on.
    for n in slots
        .iter()
        .filter_map(|o| o.proposed().map(|b| b.number))
        .skip(1)
    {
        let Some(fbs) = flashblocks_of_block(&frames, n) else {
            continue;
        };
        if fbs.iter().any(|f| !f.diff.state_root.is_zero()) {
            continue;
        }
        let block = local_block(&devnet, n).await;
        let field = |k: &str| block[k].as_str().unwrap_or_default().to_owned();
        assert_ne!(
            field("stateRoot"),
            alloy_primitives::B256::ZERO.to_string(),
            "block {n}: the local EL computed its state root"
        );
        assert_ne!(
            field("hash"),
            fbs[fbs.len() - 1].diff.block_hash.to_string(),
            "block {n}: not the builder's zero-root block"
        );
        let (in_block, preconfirmed) = (block_tx_hashes(&block), preconfirmed_strings(&fbs));
        assert_eq!(
            in_block, preconfirmed,
            "block {n}: exactly the preconfirmed transactions, in order"
        );
        checked += 1;
    }
    assert!(
        checked >= 1,
        "a block with zero-root flashblocks while the fault was on"
    );
    assert!(
        mux_metric(
            &devnet,
            "engine_mux_flashblocks_blocks_total",
            &[("path", "rebuilt")]
        ) >= checked as f64
    );
    assert_eq!(
        mux_metric(
            &devnet,
            "engine_mux_flashblocks_blocks_total",
            &[("path", "lost")]
        ),
        0.0,
        "no preconfirmation lost"
    );
    devnet.stop().await;
}
