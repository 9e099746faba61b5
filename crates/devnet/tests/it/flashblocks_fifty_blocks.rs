//! Flashblocks end to end for 50 blocks: the builder streams, engine-mux re-publishes, and
//! every block the chain gets keeps what its flashblocks preconfirmed, in order (and is exactly
//! their assembly unless the builder's block includes a flashblock engine-mux had not received
//! when op-node asked).

use std::time::Duration;

use devnet::app::Devnet;

use crate::support::{
    FlashblocksSubscriber, assert_block_keeps_its_flashblocks, assert_in_order_without_duplicates,
    canonical_occurrences, flashblocks_config, flashblocks_of_block, missed, mux_metric, observe,
    preconfirmed_hashes,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_blocks_each_equal_to_its_flashblocks_and_no_preconfirmation_lost() {
    let devnet = Devnet::start(flashblocks_config())
        .await
        .expect("devnet starts");
    let out = devnet.mux.flashblocks_addr.expect("engine-mux publishes");
    let sub = FlashblocksSubscriber::connect(out).await;
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 53, Duration::from_secs(120), |_| {}).await;
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );

    let frames = sub.frames();
    let ids = sub.ids();
    assert_in_order_without_duplicates(&ids);
    let numbers: Vec<u64> = slots
        .iter()
        .filter_map(|o| o.proposed().map(|b| b.number))
        .collect();
    // The subscriber may have joined during the first block or two; the last block's stream
    // may still be in flight. Everything between is checked: at least 50 blocks.
    let first_full = numbers
        .iter()
        .copied()
        .find(|n| flashblocks_of_block(&frames, *n).is_some_and(|f| f[0].index == 0))
        .expect("a block with all its flashblocks");
    let last = numbers[numbers.len() - 1] - 1;
    assert!(
        first_full <= 3,
        "subscribed before block 3 (first full block {first_full})"
    );
    let checked: Vec<u64> = (first_full..=last).collect();
    assert!(checked.len() >= 50, "checked {} blocks", checked.len());
    let mut per_block = Vec::new();
    for &n in &checked {
        let fbs =
            flashblocks_of_block(&frames, n).unwrap_or_else(|| panic!("block {n} had flashblocks"));
        per_block.push(fbs.len());
        assert_block_keeps_its_flashblocks(&devnet, n, &fbs).await;
    }
    assert!(
        per_block.iter().all(|n| *n >= 2),
        "several flashblocks land in every block: {per_block:?}"
    );

    // Zero lost preconfirmations: every transaction any published flashblock carried (for a
    // block that is final by now) is in the chain exactly once.
    let published: Vec<_> = frames
        .iter()
        .filter(|f| f.metadata.block_number <= last)
        .cloned()
        .collect();
    let hashes = preconfirmed_hashes(&published);
    let user_txs = published
        .iter()
        .filter(|f| f.index > 0)
        .map(|f| f.diff.transactions.len())
        .sum::<usize>();
    assert!(
        user_txs >= 100,
        "the spammer's transactions were preconfirmed ({user_txs})"
    );
    let counts = canonical_occurrences(&devnet, &hashes);
    let lost: Vec<_> = hashes
        .iter()
        .zip(&counts)
        .filter(|(_, c)| **c != 1)
        .collect();
    assert!(
        lost.is_empty(),
        "preconfirmed but not in the chain exactly once: {lost:?}"
    );

    // `late` is left out: on a loaded machine a flashblock can reach engine-mux after op-node's
    // getPayload, and refusing it is right (it is never re-published; the checks above show
    // nothing published went missing).
    for reason in [
        "equivocation",
        "base",
        "malformed",
        "held_overflow",
        "too_many",
    ] {
        assert_eq!(
            mux_metric(
                &devnet,
                "engine_mux_flashblocks_rejected_total",
                &[("reason", reason)]
            ),
            0.0,
            "no flashblock rejected as {reason}"
        );
    }
    assert_eq!(
        mux_metric(&devnet, "engine_mux_flashblocks_missing_total", &[]),
        0.0
    );
    let blocks = mux_metric(&devnet, "engine_mux_flashblocks_blocks_total", &[]);
    assert!(
        blocks >= 50.0,
        "engine-mux proposed flashblocks-backed blocks ({blocks})"
    );
    devnet.stop().await;
}
