//! A builder's part in one block, as `debug_getBuilders`, `/healthz`'s JSON and the
//! `engine_mux_builder_blocks_total{outcome}` counter name it.

use crate::{
    health::evidence::BuilderHealth,
    select::{
        Verdict,
        fallback::{Blame, FallbackReason},
    },
};

/// What became of a builder's offer for one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Not asked for a block yet.
    None,
    /// Its block went to op-node.
    Proposed,
    /// Its block was VALID and would have been proposed, but the mode is `dry_run`.
    DryRun,
    /// Its block was VALID but the selection policy preferred the local block.
    Policy,
    /// It offered, but another builder's block was chosen first.
    NotChosen,
    /// Its offer failed, for this reason.
    Failed(FallbackReason),
}

impl BlockOutcome {
    /// The label (a fallback reason's own name for a failure).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Proposed => "proposed",
            Self::DryRun => "dry_run",
            Self::Policy => "policy",
            Self::NotChosen => "not_chosen",
            Self::Failed(reason) => reason.as_str(),
        }
    }
}

/// Records a builder's verdict for one block as health evidence against the side that caused it
/// (only a good block clears a bad one; the local EL's failures were recorded on its own calls),
/// and returns the outcome it counts as. The chosen builder's outcome is `None` here: it is
/// known once its block's fate is (proposed, dry run, or lost to the local block).
pub(crate) fn record_verdict(health: &BuilderHealth, verdict: Verdict) -> Option<BlockOutcome> {
    match verdict {
        Verdict::Chosen => {
            health.outcome(true);
            None
        }
        Verdict::Failed(FallbackReason::Outpaced) => {
            health.lost_race();
            Some(BlockOutcome::Failed(FallbackReason::Outpaced))
        }
        Verdict::Failed(reason) => {
            match reason {
                FallbackReason::Timeout | FallbackReason::Syncing => health.late_outcome(),
                r if r.blame() == Blame::Builder => health.outcome(false),
                _ => {}
            }
            // It answered (whatever its block was worth): no race lost.
            if !matches!(
                reason,
                FallbackReason::Timeout
                    | FallbackReason::SkippedUnhealthy
                    | FallbackReason::NoBuilderPayload
            ) {
                health.answered_in_time();
            }
            Some(BlockOutcome::Failed(reason))
        }
        Verdict::NotTried => {
            health.offered_in_time();
            Some(BlockOutcome::NotChosen)
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of docs/health.md's table (`/healthz` 200 / 206 / 503): the
    //! evidence each outcome leaves, and what clears it, read back through `health::status`.

    use std::time::Duration;

    use super::*;
    use crate::health::{
        HealthStatus, ProbeOutcome,
        evidence::{LOST_RACES_BLAMED, LocalHealth},
        status,
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
}
