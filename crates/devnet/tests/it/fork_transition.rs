use std::time::Duration;

use devnet::app::Devnet;

use crate::support::{config, missed, observe};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v3_to_v4_transition_blocks_continue_across_isthmus() {
    let mut cfg = config();
    // Timestamps advance 1 s per block, so Isthmus activates at block 6.
    cfg.isthmus_offset = Some(6);
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 12, Duration::from_secs(60), |_| {}).await;

    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );
    let blocks: Vec<_> = slots.iter().filter_map(|o| o.proposed()).collect();
    assert!(
        blocks.iter().any(|b| !b.v4),
        "some V3 blocks before Isthmus"
    );
    assert!(blocks.iter().any(|b| b.v4), "V4 blocks after Isthmus");
    for b in &blocks {
        assert_eq!(
            b.v4,
            devnet.spec.is_isthmus(b.timestamp),
            "block {} version",
            b.number
        );
    }
    let last = slots.last().unwrap();
    assert!(
        last.builder_blocks >= 10.0,
        "builder keeps building across the fork: {last:?}"
    );
    let head = devnet.local.engine.head();
    assert_eq!(head.hash, blocks.last().unwrap().hash);
    assert!(
        head.header.requests_hash.is_some(),
        "Isthmus header fields after the fork"
    );
    let first = devnet
        .local
        .engine
        .with_chain(|c| c.canonical_block(1))
        .unwrap();
    assert!(
        first.header.requests_hash.is_none(),
        "pre-Isthmus header at block 1"
    );
    devnet.stop().await;
}
