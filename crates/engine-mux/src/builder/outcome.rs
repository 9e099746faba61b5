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
