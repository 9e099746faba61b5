//! A high-availability set (two sequencer stacks, op-conductor's stand-in switching the leader):
//! the leader dies after a random flashblock of a block, the follower becomes leader and builds
//! that height again. With engine-mux following its peer's flashblocks every preconfirmed
//! transaction survives, in the same block height and order; without, they are lost.

use std::time::Duration;

use devnet::app::ha::{HaConfig, HaRun, Schedule, run_ha};

fn config(count: usize, carry_over: bool) -> HaConfig {
    HaConfig {
        block_time: Duration::from_millis(250),
        flashblocks_interval: Duration::from_millis(50),
        tx_rate: 20.0,
        schedule: Schedule::Random {
            count,
            seed: 13,
            max_index: 3,
        },
        carry_over,
        print: true,
        ..HaConfig::default()
    }
}

fn preconfirmed(run: &HaRun) -> usize {
    run.failovers.iter().map(|f| f.preconfirmed.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_failovers_lose_no_preconfirmed_transaction() {
    let run = run_ha(config(20, true))
        .await
        .expect("the HA run completes");
    assert_eq!(run.failovers.len(), 20);
    assert!(
        preconfirmed(&run) >= 20,
        "steady load: the interrupted blocks preconfirmed transactions ({})",
        preconfirmed(&run)
    );
    for f in &run.failovers {
        assert_eq!(
            &f.new_block[..f.preconfirmed.len().min(f.new_block.len())],
            &f.preconfirmed[..],
            "block {}: the new leader's block starts (after its deposits) with the dead leader's preconfirmed transactions, in order",
            f.block
        );
        assert!(f.lost.is_empty(), "block {}: lost {:?}", f.block, f.lost);
    }
    assert!(
        run.missing.is_empty(),
        "every transaction of a published flashblock is in the canonical chain; missing {} of {}",
        run.missing.len(),
        run.published.len()
    );
    assert!(run.published.len() > preconfirmed(&run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_peer_streams_failovers_lose_the_preconfirmed_transactions() {
    let run = run_ha(config(4, false))
        .await
        .expect("the HA run completes");
    let lost: usize = run.failovers.iter().map(|f| f.lost.len()).sum();
    assert!(preconfirmed(&run) > 0, "there was something to lose");
    assert_eq!(
        lost,
        preconfirmed(&run),
        "without --flashblocks-peer-url every preconfirmed transaction of an interrupted block is gone"
    );
    for f in &run.failovers {
        assert!(
            f.preconfirmed.iter().all(|h| !f.new_block.contains(h)),
            "block {}: nothing carried",
            f.block
        );
    }
    assert_eq!(
        run.missing.len(),
        lost,
        "and missing from the chain for good"
    );
}
