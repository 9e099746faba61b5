//! Health for op-conductor: 200 / 206 / 503 derived from timestamped evidence (engine call
//! outcomes and upstream probes), not from a last-write-wins cell.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

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

/// What a probe of an upstream's latest block found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Latest block is within --max-unsafe-interval of the wall clock.
    Synced,
    /// Latest block is older than that.
    Stale {
        /// How old it is.
        age: Duration,
    },
    /// The probe itself failed.
    Failed(String),
}

impl ProbeOutcome {
    fn good(&self) -> bool {
        matches!(self, Self::Synced)
    }

    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Stale { .. } => "stale",
            Self::Failed(_) => "failed",
        }
    }
}

/// One timestamped observation: good or bad.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    good: bool,
}

fn latest(marks: &[Option<Mark>]) -> Option<Mark> {
    marks.iter().flatten().copied().max_by_key(|m| m.at)
}

#[derive(Debug, Default)]
struct Evidence {
    local_call: Option<Mark>,
    local_probe: Option<Mark>,
    builder_call: Option<Mark>,
    builder_probe: Option<Mark>,
    builder_payload: Option<Mark>,
}

/// Shared health evidence; every method holds the lock only for a few field writes.
#[derive(Debug, Default)]
pub struct Health {
    evidence: Mutex<Evidence>,
    /// Wakes the prober when the builder turns unhealthy, so recovery is noticed quickly.
    wake: Notify,
}

impl Health {
    /// No evidence yet (treated as healthy until something says otherwise).
    pub fn new() -> Self {
        Self::default()
    }

    /// A local engine call succeeded.
    pub fn local_ok(&self) {
        self.evidence.lock().local_call = Some(Mark {
            at: Instant::now(),
            good: true,
        });
    }

    /// A local engine call failed (transport, timeout, error answer).
    pub fn local_failed(&self) {
        self.evidence.lock().local_call = Some(Mark {
            at: Instant::now(),
            good: false,
        });
        self.wake.notify_one();
    }

    /// Result of probing the local EL's latest block.
    pub fn local_probe(&self, outcome: &ProbeOutcome) {
        self.evidence.lock().local_probe = Some(Mark {
            at: Instant::now(),
            good: outcome.good(),
        });
    }

    /// The builder answered an engine call properly (or a catch-up brought it in sync).
    pub fn builder_ok(&self) {
        self.evidence.lock().builder_call = Some(Mark {
            at: Instant::now(),
            good: true,
        });
    }

    /// The builder was unreachable, timed out, answered garbage or is syncing.
    pub fn builder_failed(&self) {
        self.evidence.lock().builder_call = Some(Mark {
            at: Instant::now(),
            good: false,
        });
        self.wake.notify_one();
    }

    /// Result of probing the builder's latest block.
    pub fn builder_probe(&self, outcome: &ProbeOutcome) {
        self.evidence.lock().builder_probe = Some(Mark {
            at: Instant::now(),
            good: outcome.good(),
        });
    }

    /// A builder outcome: a good block (`true`), or a failure that blames the builder
    /// (`false`: getPayload fallback for timeout, error, INVALID, SYNCING, attributes mismatch,
    /// or a mirrored call the builder refused). A failure holds 206 until the next good block.
    pub fn builder_payload(&self, good: bool) {
        self.evidence.lock().builder_payload = Some(Mark {
            at: Instant::now(),
            good,
        });
    }

    /// Whether the builder should be called at all: the latest reachability evidence is good.
    pub fn builder_usable(&self) -> bool {
        let e = self.evidence.lock();
        latest(&[e.builder_call, e.builder_probe]).is_none_or(|m| m.good)
    }

    /// Current status; `builder_matters` is false when the builder is not in use (disabled mode).
    pub fn status(&self, builder_matters: bool) -> HealthStatus {
        let e = self.evidence.lock();
        // Local: a bad probe (stale or failed) holds until a good probe; a failed engine call
        // holds until a later success or a later good probe.
        let local_probe_bad = e.local_probe.is_some_and(|m| !m.good);
        let local_latest_bad = latest(&[e.local_call, e.local_probe]).is_some_and(|m| !m.good);
        if local_probe_bad || local_latest_bad {
            return HealthStatus::ServiceUnavailable;
        }
        if !builder_matters {
            return HealthStatus::Healthy;
        }
        // Builder: unreachable / out of sync by its newest reachability evidence, or its last
        // getPayload failed (cleared only by a later good payload, so blocks without a builder
        // payload, e.g. noTxPool ones, do not make it flap).
        let unreachable = latest(&[e.builder_call, e.builder_probe]).is_some_and(|m| !m.good);
        let payload_failed = e.builder_payload.is_some_and(|m| !m.good);
        if unreachable || payload_failed {
            HealthStatus::PartialContent
        } else {
            HealthStatus::Healthy
        }
    }

    /// Resolves when something turned unhealthy (the prober then probes sooner).
    pub async fn turned_unhealthy(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_from_the_issue() {
        let h = Health::new();
        assert_eq!(h.status(true), HealthStatus::Healthy, "no evidence yet");
        h.local_ok();
        h.builder_probe(&ProbeOutcome::Synced);
        assert_eq!(h.status(true).code(), 200);
        h.builder_payload(false);
        assert_eq!(
            h.status(true).code(),
            206,
            "builder failed its last getPayload"
        );
        assert!(
            h.builder_usable(),
            "a failed payload alone does not stop calling the builder"
        );
        h.builder_probe(&ProbeOutcome::Synced);
        h.builder_ok();
        assert_eq!(
            h.status(true).code(),
            206,
            "only a good payload clears a failed one"
        );
        h.builder_payload(true);
        assert_eq!(h.status(true).code(), 200);
        h.builder_probe(&ProbeOutcome::Stale {
            age: Duration::from_secs(10),
        });
        assert_eq!(h.status(true).code(), 206);
        assert!(!h.builder_usable());
        assert_eq!(
            h.status(false).code(),
            200,
            "builder ignored when not in use"
        );
        h.local_failed();
        assert_eq!(h.status(true).code(), 503);
        std::thread::sleep(Duration::from_millis(2));
        h.local_probe(&ProbeOutcome::Synced);
        assert_eq!(
            h.status(false).code(),
            200,
            "a later good probe clears a failed call"
        );
        h.local_failed();
        h.local_ok();
        assert_eq!(h.status(false).code(), 200, "and so does a later good call");
        h.local_probe(&ProbeOutcome::Stale {
            age: Duration::from_secs(30),
        });
        assert_eq!(
            h.status(false).code(),
            503,
            "stale local head is unavailable"
        );
    }
}
