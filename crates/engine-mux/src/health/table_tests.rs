//! One test per row of docs/health.md's table (`/healthz` 200 / 206 / 503): the evidence each
//! builder outcome ([`record_verdict`]) leaves, and what clears it, read back through
//! [`status`].

use std::time::Duration;

use super::{
    HealthStatus, ProbeOutcome,
    evidence::{BuilderHealth, LOST_RACES_BLAMED, LocalHealth},
    status,
};
use crate::{
    builder::{BlockOutcome, outcome::record_verdict},
    select::{Verdict, fallback::FallbackReason},
};
use FallbackReason as R;

/// A local EL and one builder that both answered and are synced.
fn fine() -> (LocalHealth, BuilderHealth) {
    let (l, b) = (LocalHealth::default(), BuilderHealth::default());
    l.ok();
    b.probe(&ProbeOutcome::Synced);
    (l, b)
}

fn code(l: &LocalHealth, b: &BuilderHealth) -> u16 {
    status(l, [b]).code()
}

#[test]
fn both_answer_builder_synced_last_outcome_good_is_200() {
    let (l, b) = fine();
    assert_eq!(record_verdict(&b, Verdict::Chosen), None);
    assert_eq!(code(&l, &b), 200);
}

#[test]
fn builder_unreachable_or_out_of_sync_is_206_until_a_probe_finds_it_in_sync() {
    let (l, b) = fine();
    b.probe(&ProbeOutcome::Failed("connection refused".into()));
    assert_eq!(code(&l, &b), 206);
    b.probe(&ProbeOutcome::Synced);
    assert_eq!(code(&l, &b), 200);
    b.probe(&ProbeOutcome::Stale {
        age: Duration::from_secs(30),
    });
    assert_eq!(code(&l, &b), 206);
    b.probe(&ProbeOutcome::Synced);
    assert_eq!(code(&l, &b), 200);
}

#[test]
fn fcu_with_attributes_refused_is_206_until_its_next_good_block() {
    // The builder's error or INVALID answer to the FCU leaves it no build: `error` at
    // getPayload.
    let (l, b) = fine();
    assert_eq!(
        record_verdict(&b, Verdict::Failed(R::Error)),
        Some(BlockOutcome::Failed(R::Error))
    );
    assert_eq!(code(&l, &b), 206);
    record_verdict(&b, Verdict::NotTried);
    assert_eq!(
        code(&l, &b),
        206,
        "an offer in time does not clear a failure"
    );
    record_verdict(&b, Verdict::Chosen);
    assert_eq!(code(&l, &b), 200);
}

#[test]
fn late_or_syncing_is_206_until_its_next_offer_in_time() {
    for late in [R::Timeout, R::Syncing] {
        let (l, b) = fine();
        record_verdict(&b, Verdict::Failed(late));
        assert_eq!(code(&l, &b), 206, "{}", late.as_str());
        assert_eq!(
            record_verdict(&b, Verdict::NotTried),
            Some(BlockOutcome::NotChosen)
        );
        assert_eq!(
            code(&l, &b),
            200,
            "{}: on time again, even if not tried",
            late.as_str()
        );
        record_verdict(&b, Verdict::Failed(late));
        record_verdict(&b, Verdict::Chosen);
        assert_eq!(code(&l, &b), 200, "{}: or a good block", late.as_str());
    }
}

#[test]
fn invalid_or_not_the_block_asked_for_is_206_until_its_next_good_block() {
    for bad in [R::Invalid, R::AttributesMismatch] {
        let (l, b) = fine();
        record_verdict(&b, Verdict::Failed(bad));
        assert_eq!(code(&l, &b), 206, "{}", bad.as_str());
        record_verdict(&b, Verdict::NotTried);
        b.probe(&ProbeOutcome::Synced);
        assert_eq!(
            code(&l, &b),
            206,
            "{}: only a good block clears it",
            bad.as_str()
        );
        record_verdict(&b, Verdict::Chosen);
        assert_eq!(code(&l, &b), 200, "{}", bad.as_str());
    }
}

#[test]
fn transactions_refused_in_the_state_root_rebuild_are_206_until_its_next_good_block() {
    let (l, b) = fine();
    record_verdict(&b, Verdict::Failed(R::StateRootRebuildRefused));
    assert_eq!(code(&l, &b), 206);
    record_verdict(&b, Verdict::Chosen);
    assert_eq!(code(&l, &b), 200);
}

#[test]
fn outpaced_for_the_stated_number_of_blocks_fails_that_builder_only() {
    let (l, slow) = fine();
    let fast = BuilderHealth::default();
    fast.probe(&ProbeOutcome::Synced);
    for n in 1..=LOST_RACES_BLAMED {
        assert_eq!(
            record_verdict(&slow, Verdict::Failed(R::Outpaced)),
            Some(BlockOutcome::Failed(R::Outpaced))
        );
        record_verdict(&fast, Verdict::Chosen);
        assert_eq!(slow.failing(), n == LOST_RACES_BLAMED, "after {n} races");
    }
    assert_eq!(
        status(&l, [&slow, &fast]).code(),
        200,
        "/healthz: blocks still come from a builder"
    );
    assert_eq!(code(&l, &slow), 206, "every builder in use failing");
    // An answer within the grace, whatever its block was worth, clears it.
    record_verdict(&slow, Verdict::NotTried);
    assert!(!slow.failing());
}

#[test]
fn a_local_el_failure_is_503_until_a_later_good_call_or_probe() {
    let (l, b) = fine();
    l.failed();
    assert_eq!(status(&l, [&b]), HealthStatus::ServiceUnavailable);
    l.ok();
    assert_eq!(code(&l, &b), 200);
    l.probe(&ProbeOutcome::Stale {
        age: Duration::from_secs(30),
    });
    assert_eq!(code(&l, &b), 503);
    std::thread::sleep(Duration::from_millis(2));
    l.probe(&ProbeOutcome::Synced);
    assert_eq!(code(&l, &b), 200);
}

#[test]
fn the_local_el_failing_to_validate_or_rebuild_never_charges_the_builder() {
    // The local EL's own failure was recorded on its call (503 from there); the builder's
    // evidence is untouched, and so is its answer-in-time record.
    for local in [
        R::ValidationSyncing,
        R::ValidationError,
        R::ValidationTimeout,
        R::StateRootRebuildFailed,
    ] {
        let (l, b) = fine();
        record_verdict(&b, Verdict::Failed(local));
        assert_eq!(code(&l, &b), 200, "{}", local.as_str());
        l.failed();
        assert_eq!(code(&l, &b), 503, "{}", local.as_str());
    }
}

#[test]
fn a_validation_cut_short_by_get_payloads_budget_changes_nothing() {
    let (l, b) = fine();
    record_verdict(&b, Verdict::Failed(R::Timeout));
    assert_eq!(code(&l, &b), 206);
    // validation_timeout within the budget: no evidence either way, the lateness stands.
    record_verdict(&b, Verdict::Failed(R::ValidationTimeout));
    assert_eq!(code(&l, &b), 206);
    let (l, b) = fine();
    record_verdict(&b, Verdict::Failed(R::ValidationTimeout));
    assert_eq!(code(&l, &b), 200);
}
