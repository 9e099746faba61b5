//! Block selection across builders on real engines. Under `gas-used` the fullest valid block
//! wins; under `priority` the first healthy builder wins even with less gas, the second takes
//! over while the first is down, and the first is back once it returns.
//!
//! The builders differ in gas with the `empty` fault (a builder that builds with the deposit
//! only, ignoring its pool): a block with pool transactions cannot be an empty builder's.

use std::time::Duration;

use devnet::{app::Devnet, engine::faults::Fault};
use test_utils::eventually;

use crate::support::{
    chosen_per_slot, config, missed, missed_so_far, observe, proposed_at_next_slot, proposed_from,
    proposed_per_builder,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gas_used_policy_proposes_the_builder_block_with_the_most_gas() {
    let mut cfg = config();
    cfg.builders = 3;
    cfg.builder_faults = ["b1:empty@1..100000", "b3:empty@1..100000"]
        .iter()
        .map(|w| w.parse().unwrap())
        .collect();
    cfg.builder_policy = Some("gas-used".into());
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 2, Duration::from_secs(30), |_| {}).await;

    let start = proposed_per_builder(&devnet);
    let mut per_slot = Vec::new();
    let slots = observe(&devnet, &mut events, 16, Duration::from_secs(60), |_| {
        per_slot.push(proposed_per_builder(&devnet));
    })
    .await;
    assert!(missed(&slots).is_empty(), "{:?}", missed(&slots));
    let chosen = chosen_per_slot(&start, &per_slot);
    let b2 = devnet.builder_at(2).unwrap();
    let mut with_pool_txs = 0;
    for (slot, chosen) in slots.iter().zip(&chosen) {
        let block = slot.proposed().unwrap();
        assert_ne!(*chosen, None, "one source per block: {slot:?}");
        if block.tx_count > 1 {
            // The empty builders' blocks hold the deposit only: b2's block had more gas.
            with_pool_txs += 1;
            assert_eq!(
                *chosen,
                Some(2),
                "block {} with {} txs is b2's",
                block.number,
                block.tx_count
            );
            assert!(b2.engine.produced().has_block(&block.hash));
        }
    }
    assert!(
        with_pool_txs >= 8,
        "the spammer filled most blocks ({with_pool_txs} of {})",
        slots.len()
    );
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_policy_picks_the_first_healthy_builder_moves_to_the_second_and_back() {
    let mut cfg = config();
    cfg.builders = 2;
    // b1 (first by priority) builds deposit-only blocks, b2 full ones: under gas-used b2
    // would win every block with pool transactions.
    cfg.builder_faults = vec!["b1:empty@1..100000".parse().unwrap()];
    cfg.builder_policy = Some("priority".into());
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 2, Duration::from_secs(30), |_| {}).await;

    // 1. b1 healthy: b1's block every block, although b2's has more gas.
    let start = proposed_per_builder(&devnet);
    let mut per_slot = Vec::new();
    let slots = observe(&devnet, &mut events, 8, Duration::from_secs(30), |_| {
        per_slot.push(proposed_per_builder(&devnet));
    })
    .await;
    for (slot, chosen) in slots.iter().zip(chosen_per_slot(&start, &per_slot)) {
        let block = slot.proposed().expect("no missed slot");
        assert_eq!(chosen, Some(1), "b1 first: {slot:?}");
        assert_eq!(block.tx_count, 1, "b1's deposit-only block: {slot:?}");
    }
    let b2 = devnet.builder_at(2).unwrap();
    assert!(
        b2.engine
            .stats()
            .built_payloads
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4,
        "b2 was asked to build meanwhile"
    );

    // 2. b1 down: b2 takes over, and no slot is missed.
    let b1_faults = devnet.builder_at(1).unwrap().engine.faults().clone();
    b1_faults.set(Fault::Down, true);
    let b2_before = proposed_from(&devnet, "b2");
    let slots_down = observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    assert!(
        proposed_from(&devnet, "b2") > b2_before,
        "b2 took over within 3 blocks of b1 going down: {slots_down:?}"
    );
    let start = proposed_per_builder(&devnet);
    let mut per_slot = Vec::new();
    let slots = observe(&devnet, &mut events, 5, Duration::from_secs(30), |_| {
        per_slot.push(proposed_per_builder(&devnet));
    })
    .await;
    for (slot, chosen) in slots.iter().zip(chosen_per_slot(&start, &per_slot)) {
        let block = slot.proposed().expect("no missed slot");
        assert_eq!(chosen, Some(2), "b2 while b1 is down: {slot:?}");
        assert!(b2.engine.produced().has_block(&block.hash));
    }

    // 3. b1 back: b1's blocks again.
    b1_faults.set(Fault::Down, false);
    let b1_before = proposed_from(&devnet, "b1");
    eventually(Duration::from_secs(30), "b1 builds again", || async {
        proposed_from(&devnet, "b1") > b1_before
    })
    .await;
    let start = proposed_at_next_slot(&devnet, &mut events).await;
    let mut per_slot = Vec::new();
    let slots = observe(&devnet, &mut events, 4, Duration::from_secs(30), |_| {
        per_slot.push(proposed_per_builder(&devnet));
    })
    .await;
    for (slot, chosen) in slots.iter().zip(chosen_per_slot(&start, &per_slot)) {
        assert_eq!(chosen, Some(1), "b1 again once it returned: {slot:?}");
    }
    assert_eq!(
        missed_so_far(&devnet),
        0,
        "no slot missed while the builders changed"
    );
    devnet.stop().await;
}
