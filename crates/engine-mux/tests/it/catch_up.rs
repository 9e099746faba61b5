//! Builder catch-up: a builder that missed blocks is replayed exactly those, in order.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Setup, eventually, setup};

/// Two blocks the builder follows, then `n` it misses while down (each proposed from the local
/// EL); returns the setup and the missed blocks' hashes, oldest first.
async fn builder_misses_blocks(n: usize) -> (Setup, Vec<String>) {
    let s = setup(&["--max-unsafe-interval", "30"]).await;
    for _ in 0..2 {
        s.block("engine_getPayloadV3").await;
    }
    eventually(
        Duration::from_secs(2),
        "builder followed the first two blocks",
        || async { s.builder.head().0 == 102 },
    )
    .await;
    s.builder.down();
    let mut missed = Vec::new();
    for _ in 0..n {
        missed.push(s.block("engine_getPayloadV3").await);
    }
    assert!(
        missed
            .iter()
            .enumerate()
            .all(|(i, h)| *h == s.local.block_hash(103 + i as u64).to_string()),
        "local blocks while the builder is down"
    );
    (s, missed)
}

#[tokio::test]
async fn builder_that_missed_twenty_blocks_is_replayed_them_in_order_and_builds_again() {
    let (s, missed) = builder_misses_blocks(20).await;
    s.builder.clear_calls();
    s.builder.up().await;
    eventually(
        Duration::from_secs(5),
        "catch-up replayed 20 blocks",
        || async { s.builder.calls_of("engine_newPayloadV3").len() >= 20 },
    )
    .await;
    eventually(
        Duration::from_secs(2),
        "catch-up finished with an FCU",
        || async { !s.builder.calls_of("engine_forkchoiceUpdatedV3").is_empty() },
    )
    .await;
    let replayed: Vec<String> = s
        .builder
        .calls_of("engine_newPayloadV3")
        .iter()
        .map(|c| c.params[0]["blockHash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replayed, missed, "exactly the missed blocks, in order");
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_catch_up_replayed_blocks_total{source="recent"}"#
        ),
        20.0
    );
    let fcu = &s.builder.calls_of("engine_forkchoiceUpdatedV3")[0];
    assert_eq!(
        fcu.params[0],
        crate::harness::forkchoice(122),
        "then the latest forkchoice"
    );
    assert_eq!(
        s.healthz().await,
        206,
        "synced again, but its last outcome was a failure"
    );
    let next = s.block("engine_getPayloadV3").await;
    assert_eq!(
        next,
        s.builder.block_hash(123).to_string(),
        "the builder builds the next block"
    );
    assert_eq!(s.healthz().await, 200, "its good block clears the 206");
}

#[tokio::test]
async fn catch_up_can_be_turned_off() {
    let s = setup(&["--no-builder-catch-up", "--max-unsafe-interval", "30"]).await;
    s.block("engine_getPayloadV3").await;
    s.builder.down();
    for _ in 0..3 {
        s.block("engine_getPayloadV3").await;
    }
    s.builder.clear_calls();
    s.builder.up().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        s.builder.calls_of("engine_newPayloadV3").is_empty(),
        "no replay when catch-up is off"
    );
}

/// 200 missed blocks with a 64-payload window: the 136 older ones come from the local EL
/// (`eth_getBlockByNumber(n, true)` turned into payloads), the rest from the window, all in
/// order, and the builder builds again right after.
#[tokio::test]
async fn builder_that_missed_two_hundred_blocks_is_replayed_from_the_local_el_and_the_window() {
    let (s, missed) = builder_misses_blocks(200).await;
    s.builder.clear_calls();
    s.local.clear_calls();
    s.builder.up().await;
    let synced = r#"engine_mux_catch_up_runs_total{outcome="synced"}"#;
    eventually(Duration::from_secs(15), "catch-up finished", || async {
        test_utils::metric(&s.mux.metrics_text(), synced) >= 1.0
    })
    .await;
    let replayed: Vec<String> = s
        .builder
        .calls_of("engine_newPayloadV3")
        .iter()
        .map(|c| c.params[0]["blockHash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replayed, missed, "exactly the missed blocks, in order");
    let fetched: Vec<Value> = s
        .local
        .calls_of("eth_getBlockByNumber")
        .into_iter()
        .filter(|c| c.params[1] == json!(true))
        .map(|c| c.params[0].clone())
        .collect();
    let expected: Vec<Value> = (103..103 + 136u64)
        .map(|n| json!(format!("{n:#x}")))
        .collect();
    assert_eq!(
        fetched, expected,
        "only the blocks older than the window, once each"
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_catch_up_replayed_blocks_total{source="local_el"}"#
        ),
        136.0
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_catch_up_replayed_blocks_total{source="recent"}"#
        ),
        64.0
    );
    let fcus = s.builder.calls_of("engine_forkchoiceUpdatedV3");
    assert_eq!(
        fcus[0].params[0],
        crate::harness::forkchoice(302),
        "then op-node's latest forkchoice"
    );
    // Builds again within two blocks of catch-up finishing.
    let mut built = Vec::new();
    for _ in 0..2 {
        built.push(s.block("engine_getPayloadV3").await);
    }
    assert!(
        built.contains(&s.builder.block_hash(303).to_string())
            || built.contains(&s.builder.block_hash(304).to_string()),
        "a builder block among {built:?}"
    );
}

/// A local EL that cannot supply a missing block (pruned): catch-up stops, says so once, and
/// does not retry until the builder's head moves.
#[tokio::test]
async fn block_the_local_el_cannot_supply_stops_catch_up_once_without_a_retry_storm() {
    let s = setup(&["--catch-up-depth", "4", "--max-unsafe-interval", "30"]).await;
    s.block("engine_getPayloadV3").await;
    s.builder.down();
    for _ in 0..10 {
        s.block("engine_getPayloadV3").await;
    }
    s.local.prune_below(108);
    s.builder.clear_calls();
    s.builder.up().await;
    let failed = r#"engine_mux_catch_up_runs_total{outcome="failed"}"#;
    eventually(Duration::from_secs(5), "catch-up gave up", || async {
        test_utils::metric(&s.mux.metrics_text(), failed) == 1.0
    })
    .await;
    // Several more probes find the builder just as far behind: no retry storm.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(test_utils::metric(&s.mux.metrics_text(), failed), 1.0);
    assert!(
        s.builder.calls_of("engine_newPayloadV3").is_empty(),
        "nothing replayed past a block it could not get"
    );
}

/// A builder further behind than one run can replay: each run stops at its budget, moves the
/// builder's head to what it replayed (safe/finalized left unset), and the next run continues
/// from there until every block is replayed, in order, exactly once.
#[tokio::test]
async fn catch_up_longer_than_its_budget_continues_over_several_runs() {
    let s = setup(&[
        "--catch-up-depth",
        "16",
        "--catch-up-budget-ms",
        "150",
        "--max-unsafe-interval",
        "30",
    ])
    .await;
    s.block("engine_getPayloadV3").await;
    s.builder.down();
    let mut missed = Vec::new();
    for _ in 0..60 {
        missed.push(s.block("engine_getPayloadV3").await);
    }
    s.builder.clear_calls();
    s.builder.fault(
        "engine_newPayloadV3",
        crate::mock_engine::Fault::Delay(Duration::from_millis(10)),
    );
    s.builder.up().await;
    let synced = r#"engine_mux_catch_up_runs_total{outcome="synced"}"#;
    eventually(
        Duration::from_secs(15),
        "caught up over several runs",
        || async { test_utils::metric(&s.mux.metrics_text(), synced) >= 1.0 },
    )
    .await;
    assert!(
        test_utils::metric(
            &s.mux.metrics_text(),
            r#"engine_mux_catch_up_runs_total{outcome="budget_exhausted"}"#
        ) >= 2.0,
        "more than one run was needed"
    );
    let replayed: Vec<String> = s
        .builder
        .calls_of("engine_newPayloadV3")
        .iter()
        .map(|c| c.params[0]["blockHash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replayed, missed, "every missed block once, in order");
    let fcus = s.builder.calls_of("engine_forkchoiceUpdatedV3");
    let zero = format!("0x{}", "00".repeat(32));
    assert!(fcus.len() >= 3, "one per run");
    assert_eq!(fcus[0].params[0]["safeBlockHash"], json!(zero));
    assert_ne!(fcus[0].params[0]["headBlockHash"], json!(zero));
    assert_eq!(
        fcus.last().unwrap().params[0],
        crate::harness::forkchoice(161),
        "the last run ends at op-node's forkchoice"
    );
}

/// engine-mux just started (no payload from op-node held yet) next to a builder 50 blocks
/// behind the local EL: catch-up replays them from the local EL up to its head.
#[tokio::test]
async fn builder_behind_at_startup_is_caught_up_from_the_local_el_alone() {
    let local = crate::mock_engine::MockEngine::start("local", 0x03, 0xaa).await;
    let builder = crate::mock_engine::MockEngine::start("builder", 0x04, 0xbb).await;
    local.set_head(150, crate::mock_engine::now());
    let mux = crate::harness::start_mux(&local, &builder, &["--max-unsafe-interval", "30"]).await;
    let synced = r#"engine_mux_catch_up_runs_total{outcome="synced"}"#;
    eventually(Duration::from_secs(5), "caught up", || async {
        test_utils::metric(&mux.metrics_text(), synced) >= 1.0
    })
    .await;
    let replayed: Vec<String> = builder
        .calls_of("engine_newPayloadV3")
        .iter()
        .map(|c| c.params[0]["blockHash"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (101..=150)
        .map(|n| local.block_hash(n).to_string())
        .collect();
    assert_eq!(replayed, expected);
    let fcu = &builder.calls_of("engine_forkchoiceUpdatedV3")[0];
    assert_eq!(
        fcu.params[0]["headBlockHash"],
        json!(local.block_hash(150)),
        "the builder's head moved to the local EL's"
    );
    assert_eq!(builder.head().0, 150);
    mux.shutdown().await;
}
