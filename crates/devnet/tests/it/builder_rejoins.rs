//! A builder that was down rejoins within two blocks of coming back, with one builder and with
//! three, at rollup-boost's default 60 s `--health-check-interval`: with several builders the
//! others keep `/healthz` at 200, so only the probe of a skipped builder at the next block it
//! is skipped for brings it back (otherwise it waited for the next periodic probe, up to a
//! minute). Prints the time from the end of the outage to its first proposed block again
//! (docs/benchmarks.md).

use std::time::{Duration, Instant};

use devnet::{app::Devnet, node::DriverEvent};

use crate::support::{config, missed_so_far, observe, proposed_per_builder};

/// b1 is down from block `DOWN_FROM` and up again for block `UP_AT`.
const DOWN_FROM: u64 = 8;
const UP_AT: u64 = 20;

/// Runs the outage with `builders` builders (b1 preferred under `priority`) and returns the
/// number of b1's first proposed block at or after `UP_AT` and the time from the proposal of
/// block `UP_AT - 1` (the outage's end: b1 listens again right after it) to that block's
/// proposal.
async fn first_b1_block_after_the_outage(builders: usize) -> (u64, Duration) {
    let mut cfg = config();
    cfg.builders = builders;
    cfg.builder_policy = Some("priority".into());
    cfg.mux_args = vec!["--health-check-interval".into(), "60".into()];
    cfg.builder_faults = vec![
        format!("b1:down@{DOWN_FROM}..{UP_AT}")
            .parse()
            .expect("fault window"),
    ];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let mut before = proposed_per_builder(&devnet);
    let mut back_at = None;
    let mut rejoined = None;
    let slots = observe(
        &devnet,
        &mut events,
        UP_AT as usize + 12,
        Duration::from_secs(60),
        |slot| {
            let now = proposed_per_builder(&devnet);
            let b1_proposed = now[0] > before[0];
            before = now;
            let DriverEvent::Proposed(b) = &slot.event else {
                return;
            };
            if b.number == UP_AT - 1 {
                back_at = Some(Instant::now());
            }
            if b.number >= UP_AT && b1_proposed && rejoined.is_none() {
                rejoined = Some((b.number, Instant::now()));
            }
        },
    )
    .await;
    assert_eq!(missed_so_far(&devnet), 0, "no missed slots");
    let down: Vec<_> = slots
        .iter()
        .filter_map(|s| s.proposed())
        .filter(|b| (DOWN_FROM + 2..UP_AT).contains(&b.number))
        .collect();
    assert!(!down.is_empty(), "the outage was observed");
    devnet.stop().await;
    let (number, at) = rejoined.unwrap_or_else(|| {
        panic!("b1 never proposed a block again after the outage ({builders} builders)")
    });
    let back_at = back_at.expect("block before the outage's end observed");
    (number, at.saturating_duration_since(back_at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_builder_that_was_down_builds_again_within_two_blocks() {
    let (number, took) = first_b1_block_after_the_outage(1).await;
    println!(
        "rejoin, 1 builder: b1's first block again is {number} (up at {UP_AT}), {took:?} after the outage ended"
    );
    assert!(
        number <= UP_AT + 2,
        "b1 proposed again at block {number}, up at {UP_AT}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_three_builders_that_was_down_builds_again_within_two_blocks() {
    let (number, took) = first_b1_block_after_the_outage(3).await;
    println!(
        "rejoin, 3 builders: b1's first block again is {number} (up at {UP_AT}), {took:?} after the outage ended"
    );
    assert!(
        number <= UP_AT + 2,
        "b1 proposed again at block {number}, up at {UP_AT}"
    );
}
