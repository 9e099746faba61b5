//! Builders changed while the chain runs: one disabled and re-enabled on engine-mux's debug
//! API (effective from the next FCU), one restarted from scratch (caught up while the others
//! keep building).

use std::{sync::atomic::Ordering, time::Duration};

use devnet::app::Devnet;
use serde_json::{Value, json};
use test_utils::eventually;

use crate::support::{
    chosen_per_slot, config, drain, missed_so_far, mux_debug, observe, proposed_at_next_slot,
    proposed_from, proposed_per_builder,
};

const CALL: Duration = Duration::from_secs(5);

fn last_job(devnet: &Devnet, n: usize) -> u64 {
    let b = devnet.builder_at(n).unwrap();
    b.engine.stats().last_job_number.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_a_builder_on_the_debug_api_takes_effect_on_the_next_fcu() {
    let mut cfg = config();
    cfg.builders = 2;
    // Priority with b1 building deposit-only blocks: whose block it is shows in the block.
    cfg.builder_faults = vec!["b1:empty@1..100000".parse().unwrap()];
    cfg.builder_policy = Some("priority".into());
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let debug = mux_debug(&devnet);
    let builders: Value = debug
        .call("debug_getBuilders", &json!([]), CALL)
        .await
        .unwrap();
    let names: Vec<&str> = builders
        .as_array()
        .expect("an array")
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b1", "b2"]);
    assert_eq!(
        builders[0]["url"].as_str().map(|u| u.trim_end_matches('/')),
        Some(devnet.builder.auth_url().as_str())
    );
    assert_eq!(builders[0]["enabled"], true);
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    assert!(
        proposed_from(&devnet, "b1") >= 1.0,
        "b1 builds while enabled"
    );

    let answer: Value = debug
        .call("debug_setBuilderEnabled", &json!(["b1", false]), CALL)
        .await
        .unwrap();
    assert_eq!(
        (answer["name"].clone(), answer["enabled"].clone()),
        (json!("b1"), json!(false))
    );
    // The FCU for the next block may already be on its way; the one after is not b1's.
    let head = devnet.local.engine.head().number();
    drain(&mut events);
    let start = proposed_per_builder(&devnet);
    let mut per_slot = Vec::new();
    let slots = observe(&devnet, &mut events, 6, Duration::from_secs(30), |_| {
        per_slot.push(proposed_per_builder(&devnet));
    })
    .await;
    assert!(
        last_job(&devnet, 1) <= head + 1,
        "b1 was asked for no block after {} (asked for {})",
        head + 1,
        last_job(&devnet, 1)
    );
    assert!(last_job(&devnet, 2) >= head + 6, "b2 keeps building");
    for (slot, chosen) in slots.iter().zip(chosen_per_slot(&start, &per_slot)) {
        let block = slot.proposed().expect("no missed slot");
        if block.number > head + 1 {
            assert_eq!(chosen, Some(2), "b2 while b1 is disabled: {slot:?}");
        }
    }
    let builders: Value = debug
        .call("debug_getBuilders", &json!([]), CALL)
        .await
        .unwrap();
    assert_eq!(builders[0]["enabled"], false);
    assert_eq!(builders[1]["enabled"], true);

    let unknown = debug
        .call::<Value>("debug_setBuilderEnabled", &json!(["b9", false]), CALL)
        .await
        .unwrap_err();
    match unknown {
        engine_api::UpstreamError::Rpc { error, .. } => assert_eq!(error.code(), -32602),
        other => panic!("unknown builder: {other}"),
    }

    debug
        .call::<Value>("debug_setBuilderEnabled", &json!(["b1", true]), CALL)
        .await
        .unwrap();
    let head = devnet.local.engine.head().number();
    eventually(
        Duration::from_secs(10),
        "b1 is asked to build again",
        || async { last_job(&devnet, 1) >= head + 2 },
    )
    .await;
    let b1_before = proposed_from(&devnet, "b1");
    eventually(Duration::from_secs(30), "b1's blocks again", || async {
        proposed_from(&devnet, "b1") > b1_before
    })
    .await;
    assert_eq!(missed_so_far(&devnet), 0, "no missed slots");
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_restarted_mid_run_is_caught_up_while_the_others_keep_building() {
    let mut cfg = config();
    cfg.builders = 3;
    let mut devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    observe(&devnet, &mut events, 8, Duration::from_secs(30), |_| {}).await;

    devnet.restart_builder(2).await.expect("b2 restarts");
    let b2 = devnet.builder_at(2).unwrap().engine.clone();
    assert_eq!(b2.head().number(), 0, "a fresh b2 at genesis");
    let start = proposed_at_next_slot(&devnet, &mut events).await;
    let mut per_slot = Vec::new();
    let mut caught_up_at = None;
    let slots = observe(&devnet, &mut events, 24, Duration::from_secs(60), |slot| {
        per_slot.push(proposed_per_builder(&devnet));
        if caught_up_at.is_none()
            && slot
                .proposed()
                .is_some_and(|b| b2.head().number() + 1 >= b.number)
            && b2.stats().built_payloads.load(Ordering::Relaxed) > 0
        {
            caught_up_at = slot.proposed().map(|b| b.number);
        }
    })
    .await;
    assert_eq!(missed_so_far(&devnet), 0, "no missed slots");
    for (slot, chosen) in slots.iter().zip(chosen_per_slot(&start, &per_slot)) {
        assert!(
            matches!(chosen, Some(1..=3)),
            "a builder's block every block while b2 catches up: {slot:?}"
        );
    }
    let at = caught_up_at.unwrap_or_else(|| {
        panic!(
            "b2 caught up and built again within 24 blocks (b2 head {}, built {})",
            b2.head().number(),
            b2.stats().built_payloads.load(Ordering::Relaxed)
        )
    });
    let last = slots.last().and_then(|s| s.proposed()).unwrap().number;
    assert!(at < last, "caught up at block {at}");
    assert!(
        b2.with_chain(|c| c.canonical_block(at).map(|b| b.hash))
            == devnet
                .local
                .engine
                .with_chain(|c| c.canonical_block(at).map(|b| b.hash)),
        "b2's chain is the sequencer's chain at block {at}"
    );
    devnet.stop().await;
}
