//! Builder catch-up against real engines: a builder that missed 200 blocks is replayed them,
//! the older ones fetched from the local engine (`eth_getBlockByNumber(n, true)` turned into
//! payloads) and re-executed by the builder, and it builds again right after.

use std::time::Duration;

use devnet::{
    app::Devnet,
    engine::faults::{Fault, FaultWindow},
};

use crate::support::{config, mux_metric, observe};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_that_missed_200_blocks_is_caught_up_from_the_local_engine_and_builds_again() {
    let mut cfg = config();
    cfg.block_time = Duration::from_millis(60);
    cfg.tx_rate = 40.0;
    cfg.builder_faults = vec![FaultWindow {
        fault: Fault::Down,
        from: 5,
        to: 205,
        builder: None,
    }];
    cfg.mux_args
        .extend(["--catch-up-depth".into(), "32".into()]);
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let synced = |d: &Devnet| {
        mux_metric(
            d,
            "engine_mux_catch_up_runs_total",
            &[("outcome", "synced")],
        )
    };
    let mut synced_after = Vec::new();
    // 75 slots (4.5 s) after the outage for the probe to see the builder behind and 200 blocks to
    // be replayed: 25 were too few when the suite runs on two busy cores.
    let slots = observe(&devnet, &mut events, 280, Duration::from_secs(150), |_| {
        synced_after.push(synced(&devnet));
    })
    .await;

    // The first slot after which the catch-up that followed the outage had finished.
    let done = synced_after
        .iter()
        .zip(&slots)
        .position(|(s, o)| *s >= 1.0 && o.proposed().is_some_and(|b| b.number >= 205))
        .expect("catch-up finished after the outage");
    let within = slots
        .get(done + 2)
        .expect("two more blocks observed after catch-up");
    assert!(
        within.builder_blocks > slots[done].builder_blocks,
        "a builder block within two blocks of catch-up finishing: {:?}",
        &slots[done..=done + 2]
    );
    let from_local_el = mux_metric(
        &devnet,
        "engine_mux_catch_up_replayed_blocks_total",
        &[("source", "local_el")],
    );
    let from_recent = mux_metric(
        &devnet,
        "engine_mux_catch_up_replayed_blocks_total",
        &[("source", "recent")],
    );
    assert!(
        from_local_el >= 150.0,
        "the blocks older than the 32-payload window came from the local engine: {from_local_el}"
    );
    assert!(
        from_recent >= 1.0,
        "the rest from the window: {from_recent}"
    );
    assert_eq!(
        mux_metric(
            &devnet,
            "engine_mux_catch_up_runs_total",
            &[("outcome", "failed")]
        ),
        0.0
    );
    devnet.stop().await;
}
