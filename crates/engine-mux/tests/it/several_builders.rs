//! Several builders: every usable builder is asked, the best block by the policy
//! that is the block op-node asked for and VALID on the local EL is proposed, a failing or
//! slow builder costs only itself, and builders can be switched off at runtime.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    harness::{Setup, eventually, setup_with},
    mock_engine::{Fault, MockEngine},
};

/// The harness's --get-payload-deadline-ms (500) plus scheduling slack.
const DEADLINE_WITH_SLACK: Duration = Duration::from_millis(750);

/// Local EL, builder `b1` (the --builder-url one) and `b2`, `b3` as extra builders.
struct Three {
    s: Setup,
    b2: MockEngine,
    b3: MockEngine,
}

async fn three(extra: &[&str]) -> Three {
    let local = MockEngine::start("local", 0x03, 0xaa).await;
    let b1 = MockEngine::start("b1", 0x04, 0xb1).await;
    let b2 = MockEngine::start("b2", 0x05, 0xb2).await;
    let b3 = MockEngine::start("b3", 0x06, 0xb3).await;
    let spec = |name: &str, b: &MockEngine| {
        format!("name={name},url={},jwt-token={}", b.url(), b.secret_hex())
    };
    let (s2, s3) = (spec("b2", &b2), spec("b3", &b3));
    let mut argv = vec![
        "--builder-name",
        "b1",
        "--extra-builder",
        &s2,
        "--extra-builder",
        &s3,
    ];
    argv.extend_from_slice(extra);
    let s = setup_with(local, b1, &argv).await;
    Three { s, b2, b3 }
}

impl Three {
    fn b1(&self) -> &MockEngine {
        &self.s.builder
    }

    /// The builder whose block `hash` is at height `n`, or `local`.
    fn who(&self, hash: &str, n: u64) -> &'static str {
        for (name, b) in [("b1", self.b1()), ("b2", &self.b2), ("b3", &self.b3)] {
            if b.block_hash(n).to_string() == hash {
                return name;
            }
        }
        if self.s.local.block_hash(n).to_string() == hash {
            return "local";
        }
        "unknown"
    }

    fn outcomes(&self, builder: &str, outcome: &str) -> f64 {
        test_utils::metric(
            &self.s.mux.metrics_text(),
            &format!(
                r#"engine_mux_builder_blocks_total{{outcome="{outcome}",builder="{builder}"}}"#
            ),
        )
    }

    /// Drives blocks after height `head`, 200 ms apart, until one is `builder`'s (at most 10 s:
    /// a builder that was skipped is probed, caught up and asked again within a few blocks).
    async fn until_built_by(&self, builder: &str, head: u64) {
        let (mut n, started) = (head, Instant::now());
        loop {
            n += 1;
            let hash = self.s.block("engine_getPayloadV3").await;
            if self.who(&hash, n) == builder {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{builder} never built again"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Local newPayload calls (engine-mux's validations and op-node's imports) for `hash`.
    fn validations_of(&self, hash: alloy_primitives::B256) -> usize {
        let hash = hash.to_string();
        self.s
            .local
            .calls_of("engine_newPayloadV3")
            .iter()
            .filter(|c| c.params[0]["blockHash"] == hash)
            .count()
    }

    async fn debug(&self, method: &'static str, params: Value) -> Result<Value, String> {
        let client = crate::mock_engine::engine_client(
            &format!("http://{}", self.s.mux.debug_addr),
            None,
            Duration::from_secs(5),
        );
        client
            .call::<Value>(method, &params, client.timeout())
            .await
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn invalid_and_slow_builders_cost_nothing_the_good_one_builds_every_block() {
    let t = three(&[]).await;
    // b1 would win on gas but the local EL finds its blocks INVALID; b2 never answers within
    // the deadline; b3 is good.
    t.b1().set_gas_used(3_000_000);
    t.b2.set_gas_used(2_000_000);
    t.b3.set_gas_used(1_000_000);
    for n in 101..=106 {
        t.s.local.invalid_for(t.b1().block_hash(n));
    }
    t.b2.fault("engine_getPayloadV3", Fault::Delay(Duration::from_secs(3)));
    for n in 101..=105 {
        let started = Instant::now();
        let hash = t.s.block("engine_getPayloadV3").await;
        let took = started.elapsed();
        assert_eq!(
            t.who(&hash, n),
            "b3",
            "block {n}\n{}",
            t.s.mux.metrics_text()
        );
        assert!(
            took < DEADLINE_WITH_SLACK * 2,
            "block {n}: the whole block (4 calls) took {took:?}"
        );
    }
    assert_eq!(t.outcomes("b3", "proposed"), 5.0);
    assert_eq!(t.outcomes("b1", "invalid"), 5.0);
    assert_eq!(
        t.outcomes("b2", "outpaced"),
        5.0,
        "cut off by the grace after b3's block, not by the deadline"
    );
    assert_eq!(
        t.s.healthz().await,
        200,
        "blocks still come from a builder: 200 although two of three fail"
    );
}

#[tokio::test]
async fn most_gas_wins_and_only_the_winner_is_validated() {
    let t = three(&[]).await;
    t.b1().set_gas_used(1_000_000);
    t.b2.set_gas_used(3_000_000);
    t.b3.set_gas_used(2_000_000);
    for n in 101..=103 {
        let hash = t.s.block("engine_getPayloadV3").await;
        assert_eq!(t.who(&hash, n), "b2", "block {n}");
        assert_eq!(
            t.validations_of(t.b1().block_hash(n)) + t.validations_of(t.b3.block_hash(n)),
            0,
            "one validation when the best block is good"
        );
    }
    assert_eq!(t.outcomes("b2", "proposed"), 3.0);
    assert_eq!(t.outcomes("b1", "not_chosen"), 3.0);
    assert_eq!(t.outcomes("b3", "not_chosen"), 3.0);
}

#[tokio::test]
async fn priority_prefers_the_first_healthy_builder_and_returns_to_it() {
    let t = three(&["--builder-policy", "priority"]).await;
    // Gas would say b3; priority says b1.
    t.b3.set_gas_used(5_000_000);
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(t.who(&hash, 101), "b1");
    // The primary's block was validated once (op-node's own newPayload of it is the second
    // call), and no backup block was validated for nothing.
    assert_eq!(t.validations_of(t.b1().block_hash(101)), 2);
    assert_eq!(
        t.validations_of(t.b2.block_hash(101)) + t.validations_of(t.b3.block_hash(101)),
        0
    );

    t.b1().down();
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(t.who(&hash, 102), "b2", "primary down: the backup builds");
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(t.who(&hash, 103), "b2");

    t.b1().up().await;
    // Back to the primary once a probe finds it reachable and catch-up brought it level.
    let mut n = 103;
    let started = Instant::now();
    loop {
        n += 1;
        let hash = t.s.block("engine_getPayloadV3").await;
        let who = t.who(&hash, n);
        assert!(matches!(who, "b1" | "b2"), "block {n} from {who}");
        if who == "b1" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the primary never built again\n{}",
            t.s.mux.metrics_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_builder_disabled_on_the_debug_api_is_not_asked_to_build_from_the_next_fcu() {
    let t = three(&["--builder-policy", "priority"]).await;
    let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b1", "b2", "b3"]);
    assert_eq!(listed[0]["enabled"], true);
    assert_eq!(listed[0]["url"], format!("{}/", t.b1().url()));

    let answer = t
        .debug("debug_setBuilderEnabled", json!(["b1", false]))
        .await
        .unwrap();
    assert_eq!(answer["enabled"], false);
    t.b1().clear_calls();
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(t.who(&hash, 101), "b2");
    assert!(
        t.b1()
            .calls_of("engine_forkchoiceUpdatedV3")
            .iter()
            .all(|c| c.params[1].is_null()),
        "a disabled builder is not asked to build"
    );
    assert_eq!(t.outcomes("b1", "proposed"), 0.0);

    let err = t
        .debug("debug_setBuilderEnabled", json!(["nope", true]))
        .await
        .unwrap_err();
    assert!(err.contains("-32602") && err.contains("nope"), "{err}");

    t.debug("debug_setBuilderEnabled", json!(["b1", true]))
        .await
        .unwrap();
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(t.who(&hash, 102), "b1", "enabled again on the next FCU");
    let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
    assert_eq!(listed[0]["last_outcome"], "proposed");
    assert_eq!(listed[1]["last_outcome"], "not_chosen");
}

#[tokio::test]
async fn a_restarted_builder_is_caught_up_while_the_others_keep_building() {
    let t = three(&[]).await;
    t.b3.set_gas_used(3_000_000);
    t.b2.set_gas_used(2_000_000);
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(t.who(&hash, 101), "b3");
    t.b3.down();
    for n in 102..=106 {
        let hash = t.s.block("engine_getPayloadV3").await;
        assert_eq!(t.who(&hash, n), "b2", "block {n}: the others keep building");
    }
    t.b3.clear_calls();
    t.b3.up().await;
    eventually(
        Duration::from_secs(10),
        "the restarted builder is replayed the blocks it missed",
        || async {
            t.b3.calls_of("engine_newPayloadV3")
                .iter()
                .any(|c| c.params[0]["blockHash"] == t.b2.block_hash(106).to_string())
        },
    )
    .await;
    t.until_built_by("b3", 106).await;
}

#[tokio::test]
async fn under_priority_a_primary_whose_block_failed_is_tried_first_again() {
    let t = three(&["--builder-policy", "priority"]).await;
    t.s.local.invalid_for(t.b1().block_hash(101));
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(
        t.who(&hash, 101),
        "b2",
        "the primary's INVALID block falls through"
    );
    assert_eq!(t.outcomes("b1", "invalid"), 1.0);
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(
        t.who(&hash, 102),
        "b1",
        "one bad block does not demote the primary for good: its next good block wins"
    );
}

/// `--prevalidate-builder-payload` with three builders: every builder's block is fetched before
/// op-node asks, the best by gas (b2's) is the one validated, and op-node's getPayload is
/// answered with it without asking any builder again; the others are counted as not chosen.
#[tokio::test]
async fn pre_validated_best_block_is_answered_without_asking_any_builder_again() {
    // A generous builder timeout: the early fetch must not time out on a loaded machine (it
    // would leave nothing validated early, which is not what this test is about).
    let t = three(&[
        "--prevalidate-builder-payload",
        "true",
        "--prevalidate-lead-ms",
        "5000",
        "--builder-timeout",
        "2000",
    ])
    .await;
    t.b1().set_gas_used(1_000_000);
    t.b2.set_gas_used(3_000_000);
    t.b3.set_gas_used(2_000_000);
    // The first block tells engine-mux which getPayload version op-node uses.
    t.s.block("engine_getPayloadV3").await;
    let builders = [t.b1(), &t.b2, &t.b3];
    for b in builders {
        b.clear_calls();
    }
    let id = t.s.fcu_build().await;
    eventually(
        Duration::from_secs(5),
        "b2's block validated early",
        || async {
            test_utils::metric(
                &t.s.mux.metrics_text(),
                r#"engine_mux_prevalidations_total{builder="b2",outcome="valid"}"#,
            ) >= 1.0
        },
    )
    .await;
    let env = t.s.call("engine_getPayloadV3", json!([id])).await.unwrap();
    let hash = env["executionPayload"]["blockHash"].as_str().unwrap();
    assert_eq!(t.who(hash, 102), "b2");
    for b in builders {
        assert_eq!(
            b.calls_of("engine_getPayloadV3").len(),
            1,
            "each builder handed its block out once, before op-node asked"
        );
    }
    assert_eq!(
        t.validations_of(t.b1().block_hash(102)) + t.validations_of(t.b3.block_hash(102)),
        0,
        "only the best block is validated"
    );
    assert_eq!(t.outcomes("b2", "proposed"), 2.0);
    assert_eq!(t.outcomes("b3", "not_chosen"), 2.0);
}

/// A builder whose block always comes in after the grace never builds a block: after
/// `LOST_RACES_BLAMED` blocks in a row it is failing (as `debug_getBuilders` shows), and an
/// answer in time clears that.
#[tokio::test]
async fn a_builder_that_loses_every_race_is_failing_after_the_stated_number_of_blocks() {
    let t = three(&["--health-check-interval", "60"]).await;
    t.b3.fault(
        "engine_getPayloadV3",
        Fault::Delay(Duration::from_millis(250)),
    );
    let b3 = |listed: &Value| listed[2].clone();
    for n in 0..engine_mux::LOST_RACES_BLAMED {
        let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
        assert_eq!(
            (b3(&listed)["healthy"].clone(), b3(&listed)["state"].clone()),
            (json!(true), json!("healthy")),
            "after {n} lost races"
        );
        t.s.block("engine_getPayloadV3").await;
    }
    assert_eq!(
        t.outcomes("b3", "outpaced"),
        f64::from(engine_mux::LOST_RACES_BLAMED)
    );
    let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
    assert_eq!(
        (b3(&listed)["healthy"].clone(), b3(&listed)["state"].clone()),
        (json!(false), json!("failing")),
        "{listed}"
    );
    assert_eq!(t.s.healthz().await, 200, "b1 and b2 still build");
    t.b3.clear_fault("engine_getPayloadV3");
    t.s.block("engine_getPayloadV3").await;
    let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
    assert_eq!(b3(&listed)["healthy"], true, "in time again: {listed}");
}

/// Every builder misses getPayload's deadline once (206: each timed out); the next block all
/// answer in time and only b1's block is tried (`priority`): b2 and b3 are back although their
/// blocks were never validated, because what failed them was lateness, not a block. (Without
/// this, while one builder's flashblocks decide every block the others stay failing for good,
/// and that builder's next fault alone turns `/healthz` 206.)
#[tokio::test]
async fn builders_that_only_missed_a_deadline_are_back_with_their_next_offer_in_time() {
    let t = three(&[
        "--health-check-interval",
        "60",
        "--builder-policy",
        "priority",
    ])
    .await;
    let slow = Fault::Delay(DEADLINE_WITH_SLACK);
    for b in [t.b1(), &t.b2, &t.b3] {
        b.fault("engine_getPayloadV3", slow.clone());
    }
    let hash = t.s.block("engine_getPayloadV3").await;
    assert_eq!(t.who(&hash, 101), "local");
    assert_eq!(t.outcomes("b2", "timeout"), 1.0);
    assert_eq!(t.s.healthz().await, 206, "every builder timed out");
    for b in [t.b1(), &t.b2, &t.b3] {
        b.clear_fault("engine_getPayloadV3");
    }
    // The timed-out calls made them unreachable: skipped, probed, asked again (a block or two).
    t.until_built_by("b1", 101).await;
    assert!(t.outcomes("b2", "not_chosen") >= 1.0, "b2 offered, untried");
    let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
    for i in [1, 2] {
        assert_eq!(listed[i]["state"], "healthy", "{listed}");
    }
    assert_eq!(t.s.healthz().await, 200);
}

/// With several builders the others keep `/healthz` at 200, so the periodic probe stays at
/// --health-check-interval (60 s here, rollup-boost's default): a builder that went down is
/// probed again at the next block it is skipped for, caught up, and asked to build at the block
/// after, not a minute later.
#[tokio::test]
async fn a_skipped_builder_rejoins_within_two_blocks_of_coming_back() {
    let t = three(&[
        "--health-check-interval",
        "60",
        "--builder-policy",
        "priority",
    ])
    .await;
    t.b2.down();
    for _ in 0..3 {
        t.s.block("engine_getPayloadV3").await;
    }
    let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
    assert_eq!(listed[1]["state"], "skipped", "{listed}");
    let skipped_since = listed[1]["since_unix_ms"].as_u64().unwrap();
    assert!(skipped_since > 0);
    assert_eq!(t.outcomes("b2", "skipped_unhealthy"), 2.0, "b2 was skipped");

    // Down until a probe after its failure saw it down too: from then on only the periodic
    // probe (a minute away) would look at it again.
    eventually(Duration::from_secs(2), "a probe saw b2 down", || async {
        t.s.mux.metrics_text().lines().any(|l| {
            l.starts_with("engine_mux_probes_total")
                && l.contains(r#"builder="b2""#)
                && l.contains(r#"outcome="failed""#)
        })
    })
    .await;
    t.b2.up().await;
    t.b2.clear_calls();
    // The next block it is skipped for wakes a probe of it (the periodic one is a minute
    // away); it is back in well under a block time (op-node's blocks are 1-2 s apart)...
    t.s.block("engine_getPayloadV3").await;
    // Usable again: no longer `skipped` (still `failing` until its next good block: its
    // failed FCU when it went down was a failed block).
    eventually(Duration::from_millis(1500), "b2 usable again", || async {
        t.debug("debug_getBuilders", json!([])).await.unwrap()[1]["state"] != "skipped"
    })
    .await;
    // ...and asked to build the block after.
    t.s.block("engine_getPayloadV3").await;
    assert!(
        t.b2.calls_of("engine_forkchoiceUpdatedV3")
            .iter()
            .any(|c| !c.params[1].is_null()),
        "b2 asked to build again"
    );
    let listed = t.debug("debug_getBuilders", json!([])).await.unwrap();
    assert_ne!(listed[1]["state"], "skipped", "{listed}");
    assert!(listed[1]["since_unix_ms"].as_u64().unwrap() > skipped_since);
    assert_eq!(listed[1]["behind"], 0, "{listed}");
    assert!(listed[1]["head"].is_u64(), "{listed}");
}
