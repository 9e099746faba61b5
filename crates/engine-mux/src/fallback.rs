//! Why getPayload proposed the local block although the builder was asked: one reason per
//! outcome, each a metric label and a line in the README's health table.

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
    /// The builder (or the local EL validating its block) was syncing.
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
    /// `--external-state-root`: the local EL could not rebuild the builder's zero-state-root
    /// block from its transactions (FCU or getPayload failed, timed out, or dropped some).
    StateRootRebuildFailed,
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

    /// Whether this outcome is evidence that the builder is failing (`/healthz` 206 until its
    /// next good block). Not asking the builder, or preferring the local block, says nothing bad.
    pub fn blames_builder(self) -> bool {
        match self {
            Self::Timeout
            | Self::Error
            | Self::Invalid
            | Self::Syncing
            | Self::AttributesMismatch
            | Self::StateRootRebuildFailed => true,
            Self::NoBuilderPayload
            | Self::Policy
            | Self::SkippedUnhealthy
            | Self::Outpaced
            | Self::StateRootRetry => false,
        }
    }
}
