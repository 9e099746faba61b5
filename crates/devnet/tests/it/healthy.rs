use std::time::Duration;

use devnet::app::Devnet;

use crate::support::{canonical_occurrences, config, missed, observe};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthy_devnet_builds_every_block_with_the_builder() {
    let devnet = Devnet::start(config()).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 25, Duration::from_secs(60), |_| {}).await;
    // Stop the spammer, then give the chain a few slots to include what is still pooled.
    let spammer = devnet.spammer.as_ref().expect("spammer runs");
    spammer.pause();
    let tail = observe(&devnet, &mut events, 5, Duration::from_secs(30), |_| {}).await;
    let all: Vec<_> = slots.iter().chain(&tail).collect();

    assert!(
        missed(&slots).is_empty() && missed(&tail).is_empty(),
        "no missed slots"
    );
    let last = all.last().unwrap();
    assert_eq!(
        last.builder_blocks, 30.0,
        "every block came from the builder: {last:?}"
    );
    assert_eq!(last.local_blocks, 0.0);
    let head = last.proposed().unwrap();
    assert_eq!(
        devnet.local.engine.head().hash,
        head.hash,
        "local head equals the driver's"
    );
    assert_eq!(
        devnet.builder.engine.head().hash,
        head.hash,
        "builder followed the chain"
    );

    let sent = spammer.stats.sent_hashes();
    assert!(sent.len() >= 50, "spammer sent {} txs", sent.len());
    let counts = canonical_occurrences(&devnet, &sent);
    let wrong: Vec<_> = sent.iter().zip(&counts).filter(|(_, c)| **c != 1).collect();
    assert!(wrong.is_empty(), "txs not included exactly once: {wrong:?}");
    assert!(
        all.iter()
            .filter_map(|o| o.proposed())
            .any(|b| b.tx_count > 1)
    );
    devnet.stop().await;
}
