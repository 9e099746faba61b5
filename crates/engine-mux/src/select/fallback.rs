//! Why getPayload proposed the local block although the builder was asked: one reason per
//! outcome, each a metric label and a line in docs/health.md's table.

use engine_api::UpstreamError;

/// Why getPayload returned the local block although the builder was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackReason {
    /// The builder did not answer within its deadline.
    Timeout,
    /// The builder answered with an error or garbage, or validation itself failed.
    Error,
    /// The local EL judged the builder's block INVALID.
    Invalid,
    /// The builder answered its FCU with attributes `SYNCING` (it is behind).
    Syncing,
    /// The builder's block is not the block op-node asked for (parent, timestamp, attributes).
    AttributesMismatch,
    /// No builder build was started for this payload id.
    NoBuilderPayload,
    /// The selection policy preferred the local block.
    Policy,
    /// The builder was unhealthy and not asked.
    SkippedUnhealthy,
    /// With several builders: its block had not come in by `--builder-grace-ms` after another
    /// builder's (not a failure; only the deadline makes a builder late for good).
    Outpaced,
    /// `--external-state-root`: the local EL failed while rebuilding the builder's
    /// zero-state-root block (its FCU or getPayload timed out, failed or answered garbage).
    StateRootRebuildFailed,
    /// `--external-state-root`: the local EL refused the builder's transactions (its FCU
    /// answered a spec error, as op-geth does for a forced transaction that fails, or the
    /// rebuilt block left some out).
    StateRootRebuildRefused,
    /// The local EL did not answer newPayload for the builder's block in time.
    ValidationTimeout,
    /// The local EL failed newPayload for the builder's block (transport, HTTP error, garbage,
    /// an internal error).
    ValidationError,
    /// The local EL answered newPayload for the builder's block, which builds on op-node's own
    /// head, `SYNCING` or `ACCEPTED`: the local EL cannot validate on its own head.
    ValidationSyncing,
    /// `--external-state-root`: a second getPayload for a payload whose builder block needs a
    /// rebuild (the block is rebuilt once; a retry gets the local block).
    StateRootRetry,
}

impl FallbackReason {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Invalid => "invalid",
            Self::Syncing => "syncing",
            Self::AttributesMismatch => "attributes_mismatch",
            Self::NoBuilderPayload => "no_builder_payload",
            Self::Policy => "policy",
            Self::SkippedUnhealthy => "skipped_unhealthy",
            Self::Outpaced => "outpaced",
            Self::StateRootRebuildFailed => "state_root_rebuild_failed",
            Self::StateRootRebuildRefused => "state_root_rebuild_refused",
            Self::ValidationTimeout => "validation_timeout",
            Self::ValidationError => "validation_error",
            Self::ValidationSyncing => "validation_syncing",
            Self::StateRootRetry => "state_root_retry",
        }
    }

    /// The reason an upstream error stands for.
    pub fn from_upstream(e: &UpstreamError) -> Self {
        match e {
            UpstreamError::Timeout { .. } => Self::Timeout,
            _ => Self::Error,
        }
    }

    /// The side this outcome is evidence against. The builder is charged with what its own
    /// answers caused (`/healthz` 206 until its next good block); the local EL with what it
    /// failed while validating or rebuilding (recorded as a failed local call where it
    /// happened, see [`crate::local::LocalEl::validate`]). Not asking the builder, preferring
    /// the local block, or a builder slower than another is no evidence against anyone (a
    /// builder that loses every race is charged after [`crate::health::evidence::LOST_RACES_BLAMED`]).
    pub fn blame(self) -> Blame {
        match self {
            Self::Timeout
            | Self::Error
            | Self::Invalid
            | Self::Syncing
            | Self::AttributesMismatch
            | Self::StateRootRebuildRefused => Blame::Builder,
            Self::StateRootRebuildFailed
            | Self::ValidationTimeout
            | Self::ValidationError
            | Self::ValidationSyncing => Blame::LocalEl,
            Self::NoBuilderPayload
            | Self::Policy
            | Self::SkippedUnhealthy
            | Self::Outpaced
            | Self::StateRootRetry => Blame::Nobody,
        }
    }
}

/// Which side a getPayload outcome is evidence against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The builder: its answer, or its block, failed.
    Builder,
    /// The local EL: it failed validating or rebuilding the builder's block.
    LocalEl,
    /// Neither side failed.
    Nobody,
}

#[cfg(test)]
mod tests {
    use super::{Blame, FallbackReason as R};

    /// One row per reason, as docs/health.md's table has it.
    #[test]
    fn each_reason_blames_the_side_that_caused_it() {
        let rows = [
            (R::Timeout, Blame::Builder),
            (R::Error, Blame::Builder),
            (R::Invalid, Blame::Builder),
            (R::Syncing, Blame::Builder),
            (R::AttributesMismatch, Blame::Builder),
            (R::StateRootRebuildRefused, Blame::Builder),
            (R::StateRootRebuildFailed, Blame::LocalEl),
            (R::ValidationTimeout, Blame::LocalEl),
            (R::ValidationError, Blame::LocalEl),
            (R::ValidationSyncing, Blame::LocalEl),
            (R::NoBuilderPayload, Blame::Nobody),
            (R::Policy, Blame::Nobody),
            (R::SkippedUnhealthy, Blame::Nobody),
            (R::Outpaced, Blame::Nobody),
            (R::StateRootRetry, Blame::Nobody),
        ];
        for (reason, blame) in rows {
            assert_eq!(reason.blame(), blame, "{}", reason.as_str());
        }
    }
}
