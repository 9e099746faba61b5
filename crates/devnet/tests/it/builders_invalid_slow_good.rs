//! Three builders, one serving blocks with a wrong state root (INVALID on re-execution), one
//! slower than the getPayload deadline, one good: every block is the good one's, and the
//! driver (op-node) has its getPayload answer within the deadline.

use std::time::Duration;

use devnet::app::Devnet;

use crate::support::{
    chosen_per_slot, config, missed, observe, proposed_from, proposed_per_builder,
};

/// engine-mux's overall getPayload budget in this scenario.
const DEADLINE: Duration = Duration::from_millis(400);
/// What the driver's clock may add to engine-mux's deadline on a loaded 2-core machine
/// (scheduling, the local build, JSON encoding). The slow builder answers only after
/// `SLOW_MS`, so a getPayload that waited for it exceeds `DEADLINE + GRACE` by far.
const GRACE: Duration = Duration::from_millis(200);
const SLOW_MS: u64 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_builders_invalid_slow_and_good_the_good_ones_block_every_block_within_the_deadline()
{
    let mut cfg = config();
    cfg.builders = 3;
    cfg.builder_faults = [
        "b1:invalid@1..100000",
        &format!("b2:slow={SLOW_MS}@1..100000"),
    ]
    .iter()
    .map(|w| w.parse().unwrap())
    .collect();
    cfg.mux_args.extend([
        format!("--get-payload-deadline-ms={}", DEADLINE.as_millis()),
        "--builder-timeout=300".into(),
    ]);
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    // Two blocks for the fault schedule to be in place from the start.
    observe(&devnet, &mut events, 2, Duration::from_secs(30), |_| {}).await;

    let start = proposed_per_builder(&devnet);
    let mut per_slot = Vec::new();
    let slots = observe(&devnet, &mut events, 14, Duration::from_secs(60), |_| {
        per_slot.push(proposed_per_builder(&devnet));
    })
    .await;
    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );
    let chosen = chosen_per_slot(&start, &per_slot);
    let b3 = devnet.builder_at(3).unwrap();
    for (slot, chosen) in slots.iter().zip(&chosen) {
        let block = slot.proposed().expect("no missed slots");
        assert_eq!(
            *chosen,
            Some(3),
            "block {} is b3's (engine-mux's per-builder counters): {slot:?}",
            block.number
        );
        assert!(
            b3.engine.produced().has_block(&block.hash),
            "block {} ({}) is a block b3 served",
            block.number,
            block.hash
        );
        assert!(
            block.get_payload_latency < DEADLINE + GRACE,
            "block {}: getPayload answered after {:?}, deadline {DEADLINE:?}",
            block.number,
            block.get_payload_latency
        );
    }
    // The faults bit: b1 did serve blocks (they were refused), b2 was too slow to count.
    let b1 = devnet.builder_at(1).unwrap();
    assert!(
        b1.engine
            .stats()
            .built_payloads
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "b1 built blocks"
    );
    assert_eq!(proposed_from(&devnet, "b1"), 0.0, "b1's INVALID blocks");
    assert_eq!(proposed_from(&devnet, "b2"), 0.0, "b2's late blocks");
    devnet.stop().await;
}
