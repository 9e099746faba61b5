//! Health for op-conductor: 200 / 206 / 503 derived from timestamped evidence (engine call
//! outcomes, block outcomes and upstream probes), not from a last-write-wins cell. The local
//! EL and each builder own their evidence; [`status`] combines them. The probe that gathers
//! evidence and the HTTP endpoints live here too.

pub mod endpoints;
pub mod probe;

use std::sync::Arc;

pub use crate::evidence::{BuilderHealth, LocalHealth, ProbeOutcome};
use crate::{builder::Builder, execution_mode::ModeCell, local::LocalEl, metrics::Metrics};

/// The answer `/healthz` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// Local EL and builder fine.
    Healthy,
    /// Local EL fine, builder out of sync or failing.
    PartialContent,
    /// Local EL failing or stale.
    ServiceUnavailable,
}

impl HealthStatus {
    /// The HTTP status code op-conductor reads.
    pub fn code(self) -> u16 {
        match self {
            Self::Healthy => 200,
            Self::PartialContent => 206,
            Self::ServiceUnavailable => 503,
        }
    }
}

/// What health is gathered from: the local EL, the builder, whether the builder is in use.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// The local EL.
    pub local: Arc<LocalEl>,
    /// The builder.
    pub builder: Arc<Builder>,
    /// The execution mode (`disabled`: the builder does not count).
    pub mode: Arc<ModeCell>,
    /// Where probe outcomes and the health gauge go.
    pub metrics: Arc<Metrics>,
}

impl Upstreams {
    /// What `/healthz` answers now.
    pub fn status(&self) -> HealthStatus {
        let builder = self
            .mode
            .get()
            .talks_to_builder()
            .then(|| self.builder.health());
        status(self.local.health(), builder)
    }
}

/// `/healthz` from the local EL's evidence and, when the builder is in use, the builder's.
pub fn status(local: &LocalHealth, builder: Option<&BuilderHealth>) -> HealthStatus {
    if local.failing() {
        HealthStatus::ServiceUnavailable
    } else if builder.is_some_and(BuilderHealth::failing) {
        HealthStatus::PartialContent
    } else {
        HealthStatus::Healthy
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn table_from_the_issue() {
        let (l, b) = (LocalHealth::default(), BuilderHealth::default());
        let st = |with_builder: bool| status(&l, with_builder.then_some(&b)).code();
        assert_eq!(st(true), 200, "no evidence yet");
        l.ok();
        b.probe(&ProbeOutcome::Synced);
        assert_eq!(st(true), 200);
        b.outcome(false);
        assert_eq!(st(true), 206, "builder failed its last block");
        assert!(
            b.usable(),
            "a failed block alone does not stop calling the builder"
        );
        b.probe(&ProbeOutcome::Synced);
        b.ok();
        assert_eq!(st(true), 206, "only a good block clears a failed one");
        b.outcome(true);
        assert_eq!(st(true), 200);
        b.probe(&ProbeOutcome::Stale {
            age: Duration::from_secs(10),
        });
        assert_eq!(st(true), 206);
        assert!(!b.usable());
        assert_eq!(st(false), 200, "builder ignored when not in use");
        l.failed();
        assert_eq!(st(true), 503);
        std::thread::sleep(Duration::from_millis(2));
        l.probe(&ProbeOutcome::Synced);
        assert_eq!(st(false), 200, "a later good probe clears a failed call");
        l.failed();
        l.ok();
        assert_eq!(st(false), 200, "and so does a later good call");
        l.probe(&ProbeOutcome::Stale {
            age: Duration::from_secs(30),
        });
        assert_eq!(st(false), 503, "stale local head is unavailable");
    }
}
