//! Health for op-conductor: 200 / 206 / 503 derived from timestamped evidence (engine call
//! outcomes, block outcomes and upstream probes), not from a last-write-wins cell. The local
//! EL and each builder own their evidence; [`status`] combines them. The probe that gathers
//! evidence and the HTTP endpoints live here too.

pub mod endpoints;
pub mod probe;

use std::sync::Arc;

pub use crate::evidence::{BuilderHealth, LocalHealth, ProbeOutcome};
use crate::{builders::Builders, execution_mode::ModeCell, local::LocalEl, metrics::Metrics};

/// The answer `/healthz` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// Local EL fine, and a builder blocks can come from is fine (or no builder is in use).
    Healthy,
    /// Local EL fine, but every enabled builder is out of sync or failing: blocks fall back to
    /// the local EL.
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

/// What health is gathered from: the local EL, the builders, whether builders are in use.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// The local EL.
    pub local: Arc<LocalEl>,
    /// The builders.
    pub builders: Arc<Builders>,
    /// The execution mode (`disabled`: builders do not count).
    pub mode: Arc<ModeCell>,
    /// Where probe outcomes and the health gauge go.
    pub metrics: Arc<Metrics>,
}

impl Upstreams {
    /// What `/healthz` answers now.
    pub fn status(&self) -> HealthStatus {
        let in_use = self.mode.get().talks_to_builder();
        status(
            self.local.health(),
            self.builders
                .iter()
                .filter(|b| in_use && b.enabled())
                .map(|b| b.health()),
        )
    }
}

/// `/healthz` from the local EL's evidence and the evidence of the builders in use (enabled,
/// and the mode talks to builders): 503 when the local EL fails; 206 when builders are in use
/// and every one of them is failing, so blocks fall back to the local EL; 200 otherwise.
pub fn status<'a>(
    local: &LocalHealth,
    builders: impl IntoIterator<Item = &'a BuilderHealth>,
) -> HealthStatus {
    if local.failing() {
        return HealthStatus::ServiceUnavailable;
    }
    let mut any = false;
    let mut all_failing = true;
    for b in builders {
        any = true;
        all_failing &= b.failing();
    }
    if any && all_failing {
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
        let two = BuilderHealth::default();
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
        assert_eq!(
            status(&l, [&b, &two]).code(),
            200,
            "one good builder of two: blocks still come from a builder"
        );
        two.outcome(false);
        assert_eq!(status(&l, [&b, &two]).code(), 206, "every builder failing");
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
