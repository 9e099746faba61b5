//! Health for op-conductor: 200 / 206 / 503 derived from timestamped evidence (engine call
//! outcomes, block outcomes and upstream probes), not from a last-write-wins cell. The local
//! EL and each builder own their evidence; [`status`] combines them. The probe that gathers
//! evidence and the HTTP endpoints live here too.

pub(crate) mod endpoints;
pub(crate) mod evidence;
pub(crate) mod probe;
pub(crate) mod report;
mod tolerance;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub(crate) use self::evidence::{BuilderHealth, LocalHealth, ProbeOutcome};
pub use self::tolerance::Tolerance;
use crate::{builder::set::Builders, execution_mode::ModeCell, local::LocalEl, metrics::Metrics};

/// The answer `/healthz` gives. The variant names are the strings op-conductor's JSON health
/// client (`--rollup-boost.next-enabled`) reads in `rollup_boost_health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The builders' verdict as their evidence gives it now, with the instant it took hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuildersVerdict {
    /// No builder is in use (none enabled, or the mode does not talk to builders).
    NotInUse,
    /// Every builder in use is failing, the last of them since `since`.
    AllFailing {
        /// When the last of them started failing.
        since: Instant,
    },
    /// At least one builder in use is fine, the first of them since `since`.
    SomeFine {
        /// When the earliest of those still fine turned fine.
        since: Instant,
    },
}

/// Whether `/healthz` shows the builders as failing (206), with the [`Tolerance`] applied:
/// the one piece of state health keeps besides the evidence. It changes only when the
/// evidence has said otherwise for the whole tolerance, so a failure (or a recovery) shorter
/// than that never shows.
#[derive(Debug, Default)]
pub(crate) struct Debounce {
    tolerance: Tolerance,
    degraded: Mutex<bool>,
}

/// A change the tolerance is holding back: what the evidence says and how long until it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    /// `true`: the builders are failing but 206 is not shown yet; `false`: they are fine
    /// again but 206 is still shown.
    pub degrading: bool,
    /// How long until the change shows, if the evidence holds.
    pub remaining: Duration,
}

impl Debounce {
    /// A debounce with `tolerance`, starting from "not degraded".
    pub(crate) fn new(tolerance: Tolerance) -> Self {
        Self {
            tolerance,
            degraded: Mutex::new(false),
        }
    }

    /// The tolerance it applies.
    pub(crate) fn tolerance(&self) -> Tolerance {
        self.tolerance
    }

    /// Whether the builders show as failing at `now`, given their verdict; and the change
    /// held back, if any. Evaluated whenever health is asked for (op-conductor's polls, the
    /// probe): a recovery and a relapse both between two asks read as one failure, which
    /// errs towards keeping 206.
    pub(crate) fn apply(&self, verdict: BuildersVerdict, now: Instant) -> (bool, Option<Pending>) {
        let mut degraded = self.degraded.lock();
        let (turn, since, after) = match verdict {
            BuildersVerdict::NotInUse => {
                // No builder counts, so none is to blame: nothing to hold.
                *degraded = false;
                return (false, None);
            }
            BuildersVerdict::AllFailing { since } => {
                (!*degraded, since, self.tolerance.degrade_after)
            }
            BuildersVerdict::SomeFine { since } => (*degraded, since, self.tolerance.recover_after),
        };
        if !turn {
            return (*degraded, None);
        }
        let held = now.saturating_duration_since(since);
        if held >= after {
            *degraded = !*degraded;
            return (*degraded, None);
        }
        (
            *degraded,
            Some(Pending {
                degrading: !*degraded,
                remaining: after - held,
            }),
        )
    }
}

/// What health is gathered from: the local EL, the builders, whether builders are in use.
#[derive(Clone, Debug)]
pub(crate) struct Upstreams {
    /// The local EL.
    pub local: Arc<LocalEl>,
    /// The builders.
    pub builders: Arc<Builders>,
    /// The execution mode (`disabled`: builders do not count).
    pub mode: Arc<ModeCell>,
    /// Where probe outcomes and the health gauge go.
    pub metrics: Arc<Metrics>,
    /// The tolerance before the builders' verdict shows in `/healthz`.
    pub debounce: Arc<Debounce>,
    /// `--max-unsafe-interval`, for the report.
    pub max_unsafe_interval: Duration,
}

impl Upstreams {
    fn in_use(&self) -> impl Iterator<Item = &Arc<crate::builder::Builder>> {
        let in_use = self.mode.get().talks_to_builder();
        self.builders.iter().filter(move |b| in_use && b.enabled())
    }

    /// What `/healthz` answers now: the evidence, with the tolerance applied to the builders.
    pub(crate) fn status(&self) -> HealthStatus {
        self.status_and_pending().0
    }

    /// [`Self::status`], and the change the tolerance is holding back, if any.
    pub(crate) fn status_and_pending(&self) -> (HealthStatus, Option<Pending>) {
        let (degraded, pending) = self.debounce.apply(
            builders_verdict(self.in_use().map(|b| b.health())),
            Instant::now(),
        );
        let status = if self.local.health().failing() {
            HealthStatus::ServiceUnavailable
        } else if degraded {
            HealthStatus::PartialContent
        } else {
            HealthStatus::Healthy
        };
        (status, pending)
    }

    /// What the evidence says now, without the tolerance (what the probe paces itself on).
    pub(crate) fn raw_status(&self) -> HealthStatus {
        status(self.local.health(), self.in_use().map(|b| b.health()))
    }
}

/// The builders' verdict from the evidence of those in use.
pub(crate) fn builders_verdict<'a>(
    builders: impl IntoIterator<Item = &'a BuilderHealth>,
) -> BuildersVerdict {
    let mut failing_since: Option<Instant> = None;
    let mut fine_since: Option<Instant> = None;
    let mut any = false;
    for b in builders {
        any = true;
        let v = b.verdict();
        if v.failing {
            failing_since = Some(failing_since.map_or(v.since, |s| s.max(v.since)));
        } else {
            fine_since = Some(fine_since.map_or(v.since, |s| s.min(v.since)));
        }
    }
    match (any, fine_since, failing_since) {
        (false, ..) => BuildersVerdict::NotInUse,
        (true, Some(since), _) => BuildersVerdict::SomeFine { since },
        (true, None, Some(since)) => BuildersVerdict::AllFailing { since },
        (true, None, None) => BuildersVerdict::NotInUse,
    }
}

/// `/healthz` from the local EL's evidence and the evidence of the builders in use (enabled,
/// and the mode talks to builders): 503 when the local EL fails; 206 when builders are in use
/// and every one of them is failing, so blocks fall back to the local EL; 200 otherwise.
pub(crate) fn status<'a>(
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
mod table_tests;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tolerance(degrade: u64, recover: u64) -> Tolerance {
        Tolerance {
            degrade_after: ms(degrade),
            recover_after: ms(recover),
        }
    }

    #[test]
    fn default_tolerance_follows_the_evidence_at_once() {
        let d = Debounce::new(Tolerance::default());
        let t0 = Instant::now();
        let failing = BuildersVerdict::AllFailing { since: t0 };
        let fine = BuildersVerdict::SomeFine { since: t0 };
        assert_eq!(
            d.apply(failing, t0),
            (true, None),
            "206 at the first failure"
        );
        assert_eq!(
            d.apply(fine, t0),
            (false, None),
            "200 at the first good block"
        );
    }

    #[test]
    fn a_failure_shorter_than_the_tolerance_never_shows() {
        let d = Debounce::new(tolerance(2_000, 0));
        let t0 = Instant::now();
        let failing = BuildersVerdict::AllFailing { since: t0 };
        assert_eq!(
            d.apply(failing, t0 + ms(1_500)),
            (
                false,
                Some(Pending {
                    degrading: true,
                    remaining: ms(500)
                })
            )
        );
        // Back before the tolerance ran out: never 206, and nothing pending.
        let fine = BuildersVerdict::SomeFine {
            since: t0 + ms(1_800),
        };
        assert_eq!(d.apply(fine, t0 + ms(1_900)), (false, None));
        assert_eq!(d.apply(fine, t0 + ms(60_000)), (false, None));
        // A new failure starts its own count from its own start.
        let again = BuildersVerdict::AllFailing {
            since: t0 + ms(61_000),
        };
        assert!(!d.apply(again, t0 + ms(62_999)).0);
        assert!(
            d.apply(again, t0 + ms(63_000)).0,
            "held the whole tolerance: 206"
        );
    }

    #[test]
    fn a_recovery_shorter_than_the_tolerance_keeps_206() {
        let d = Debounce::new(tolerance(0, 5_000));
        let t0 = Instant::now();
        assert!(d.apply(BuildersVerdict::AllFailing { since: t0 }, t0).0);
        let fine = BuildersVerdict::SomeFine {
            since: t0 + ms(100),
        };
        assert_eq!(
            d.apply(fine, t0 + ms(4_000)),
            (
                true,
                Some(Pending {
                    degrading: false,
                    remaining: ms(1_100)
                })
            ),
            "good for 3.9 s of 5: still 206"
        );
        // Relapses before the tolerance: stays 206 without a new degrade wait.
        let relapse = BuildersVerdict::AllFailing {
            since: t0 + ms(4_500),
        };
        assert_eq!(d.apply(relapse, t0 + ms(4_600)), (true, None));
        let fine = BuildersVerdict::SomeFine {
            since: t0 + ms(10_000),
        };
        assert!(d.apply(fine, t0 + ms(14_999)).0);
        assert!(!d.apply(fine, t0 + ms(15_000)).0, "good for 5 s: 200");
    }

    #[test]
    fn no_builder_in_use_clears_206_at_once() {
        let d = Debounce::new(tolerance(0, 60_000));
        let t0 = Instant::now();
        assert!(d.apply(BuildersVerdict::AllFailing { since: t0 }, t0).0);
        assert_eq!(d.apply(BuildersVerdict::NotInUse, t0), (false, None));
    }

    #[test]
    fn the_builders_verdict_dates_from_the_last_to_fail_and_the_first_still_fine() {
        let (a, b) = (BuilderHealth::default(), BuilderHealth::default());
        assert_eq!(builders_verdict([]), BuildersVerdict::NotInUse);
        a.outcome(false);
        let a_failed = a.verdict().since;
        std::thread::sleep(ms(2));
        b.outcome(false);
        let b_failed = b.verdict().since;
        assert!(b_failed > a_failed);
        assert_eq!(
            builders_verdict([&a, &b]),
            BuildersVerdict::AllFailing { since: b_failed },
            "every builder failing only since the last of them failed"
        );
        b.outcome(true);
        assert_eq!(
            builders_verdict([&a, &b]),
            BuildersVerdict::SomeFine {
                since: b.verdict().since
            }
        );
        let fine_since = b.verdict().since;
        std::thread::sleep(ms(2));
        b.outcome(true);
        assert_eq!(
            b.verdict().since,
            fine_since,
            "a second good block does not restart the count"
        );
    }

    #[test]
    fn health_table_from_evidence() {
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
