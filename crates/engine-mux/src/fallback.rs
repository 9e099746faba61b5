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
            | Self::AttributesMismatch => true,
            Self::NoBuilderPayload | Self::Policy | Self::SkippedUnhealthy => false,
        }
    }
}
