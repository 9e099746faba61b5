use std::time::Duration;

use devnet::{
    app::Devnet,
    engine::faults::{Fault, FaultWindow},
};

use crate::support::{config, missed, observe};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_down_blocks_10_to_20_no_missed_blocks_and_recovery() {
    let mut cfg = config();
    cfg.builder_faults = vec![FaultWindow {
        fault: Fault::Down,
        from: 10,
        to: 20,
        builder: None,
    }];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 34, Duration::from_secs(90), |_| {}).await;

    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );
    let by_number = |n: u64| {
        slots
            .iter()
            .find(|o| o.proposed().is_some_and(|b| b.number == n))
            .unwrap_or_else(|| panic!("block {n} observed"))
    };
    let during: Vec<u16> = (12..20).map(|n| by_number(n).health).collect();
    assert!(during.contains(&206), "206 during the outage: {during:?}");
    assert!(
        during.iter().all(|h| *h != 503),
        "local fine during the outage: {during:?}"
    );
    let after: Vec<u16> = (26..=34).map(|n| by_number(n).health).collect();
    assert_eq!(
        after.last(),
        Some(&200),
        "back to 200 after the outage: {after:?}"
    );
    let builder_at_20 = by_number(20).builder_blocks;
    let last = slots.last().unwrap();
    assert!(
        last.builder_blocks > builder_at_20,
        "builder blocks again after the outage: {last:?}"
    );
    assert!(
        by_number(19).local_blocks >= 5.0,
        "local blocks during the outage"
    );
    assert_eq!(
        devnet.local.engine.head().hash,
        last.proposed().unwrap().hash
    );
    devnet.stop().await;
}
