//! engine-mux bug (reported, not fixed here: crates/engine-mux is not this crate's):
//! flashblocks the builder sends for a payload after engine-mux already proposed that payload's
//! block are still accepted and re-published, although the proposed block does not contain
//! them — preconfirmations users are shown that never land.
//!
//! Here the builder answers getPayload late (`slow`), so engine-mux proposes the block assembled
//! from the flashblocks it held (`preserved`) while the builder keeps streaming that payload.
//! Observed: "engine-mux published flashblocks [0, .., 10] for block 5; those [7, 8, 9, 10] are
//! not in it".
//! Fix direction: getPayload seals the build in the flashblocks store; later frames for a
//! sealed build are rejected (and counted), not re-published.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};
use test_utils::{eventually, eventually_every};

use crate::support::{
    FlashblocksSubscriber, flashblocks_config, local_block, mux_metric, observe,
    preconfirmed_hashes,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flashblocks_after_the_block_was_proposed_are_not_republished() {
    let mut cfg = flashblocks_config();
    // A getPayload budget shorter than the builder's stream of one payload (two slots).
    cfg.mux_args
        .extend(["--get-payload-deadline-ms".into(), "300".into()]);
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let sub =
        FlashblocksSubscriber::connect(devnet.mux.flashblocks_addr.expect("publishing")).await;
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 4, Duration::from_secs(30), |_| {}).await;
    let preserved = [("path", "preserved")];
    let preserved_before = mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &preserved);

    // Right after flashblock 1 of a block (the builder's FCU was answered), the builder turns
    // slow: its getPayload answer comes after engine-mux's deadline, its stream goes on.
    let seen = sub.len();
    let mut slowed = None;
    eventually_every(
        Duration::from_secs(10),
        "flashblock 1 of a new block",
        Duration::from_millis(2),
        || {
            slowed = sub.ids()[seen..].iter().find(|(_, i)| *i == 1).copied();
            let found = slowed.is_some();
            async move { found }
        },
    )
    .await;
    let faults = devnet.builder.engine.faults().clone();
    faults.set(Fault::Slow(1_500), true);
    eventually(
        Duration::from_secs(20),
        "engine-mux proposes its flashblocks",
        || async {
            mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &preserved)
                > preserved_before
        },
    )
    .await;
    let (slowed_id, _) = slowed.expect("found");
    // Let the builder's stream for that payload run out, then bring the builder back.
    observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    faults.clear();
    observe(&devnet, &mut events, 2, Duration::from_secs(30), |_| {}).await;

    let published: Vec<_> = sub
        .frames()
        .into_iter()
        .filter(|f| f.payload_id == slowed_id)
        .collect();
    // A preconfirmation is a promise about block N: the transaction is in block N (a later
    // block picking it up from the mempool does not keep the promise).
    let number = published[0].metadata.block_number;
    let block = local_block(&devnet, number).await;
    let in_block: Vec<String> = block["transactions"]
        .as_array()
        .expect("hashes")
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_owned())
        .collect();
    let broken: Vec<u64> = published
        .iter()
        .filter(|f| {
            preconfirmed_hashes(std::slice::from_ref(*f))
                .iter()
                .any(|h| !in_block.contains(&h.to_string()))
        })
        .map(|f| f.index)
        .collect();
    assert!(
        broken.is_empty(),
        "engine-mux published flashblocks {:?} for block {number}; those {broken:?} are not in it",
        published.iter().map(|f| f.index).collect::<Vec<_>>()
    );
    devnet.stop().await;
}
