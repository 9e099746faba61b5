//! A builder's part in one block, as `debug_getBuilders`, `/healthz`'s JSON and the
//! `engine_mux_builder_blocks_total{outcome}` counter name it.

use crate::select::fallback::FallbackReason;

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
