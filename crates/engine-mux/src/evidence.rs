//! Timestamped evidence the local EL and each builder keep about themselves: engine call
//! outcomes, block outcomes and probe results. Health is derived from it, never stored.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

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

impl Mark {
    fn now(good: bool) -> Self {
        Self {
            at: Instant::now(),
            good,
        }
    }
}

fn latest(marks: &[Option<Mark>]) -> Option<Mark> {
    marks.iter().flatten().copied().max_by_key(|m| m.at)
}

/// The local EL's evidence: its engine calls and its probe.
#[derive(Debug, Default)]
pub struct LocalHealth {
    marks: Mutex<(Option<Mark>, Option<Mark>)>,
    /// Wakes the prober when the local EL turns unhealthy, so recovery is noticed quickly.
    wake: Notify,
}

impl LocalHealth {
    /// An engine call to the local EL succeeded (or answered a spec error: working as specified).
    pub fn ok(&self) {
        self.marks.lock().0 = Some(Mark::now(true));
    }

    /// An engine call to the local EL failed (transport, timeout, error answer).
    pub fn failed(&self) {
        self.marks.lock().0 = Some(Mark::now(false));
        self.wake.notify_one();
    }

    /// Result of probing the local EL's latest block.
    pub fn probe(&self, outcome: &ProbeOutcome) {
        self.marks.lock().1 = Some(Mark::now(outcome.good()));
    }

    /// Whether the local EL is failing: a bad probe (stale or failed) holds until a good
    /// probe; a failed engine call holds until a later success or a later good probe.
    pub fn failing(&self) -> bool {
        let (call, probe) = *self.marks.lock();
        probe.is_some_and(|m| !m.good) || latest(&[call, probe]).is_some_and(|m| !m.good)
    }

    /// Resolves when the local EL turned unhealthy.
    pub async fn turned_unhealthy(&self) {
        self.wake.notified().await;
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct BuilderMarks {
    call: Option<Mark>,
    probe: Option<Mark>,
    outcome: Option<Mark>,
}

/// One builder's evidence: reachability (engine calls, probe) and block outcomes.
#[derive(Debug, Default)]
pub struct BuilderHealth {
    marks: Mutex<BuilderMarks>,
    /// Wakes the prober when the builder turns unreachable, so recovery is noticed quickly.
    wake: Notify,
}

impl BuilderHealth {
    /// The builder answered an engine call properly (or a catch-up brought it in sync).
    pub fn ok(&self) {
        self.marks.lock().call = Some(Mark::now(true));
    }

    /// The builder was unreachable, timed out or answered garbage.
    pub fn failed(&self) {
        self.marks.lock().call = Some(Mark::now(false));
        self.wake.notify_one();
    }

    /// Result of probing the builder's latest block.
    pub fn probe(&self, outcome: &ProbeOutcome) {
        self.marks.lock().probe = Some(Mark::now(outcome.good()));
    }

    /// A block outcome: a good block (`true`), or a failure that blames the builder (`false`:
    /// getPayload fallback for timeout, error, INVALID, SYNCING, attributes mismatch, or a
    /// mirrored call the builder refused). A failure holds 206 until the next good block.
    pub fn outcome(&self, good: bool) {
        self.marks.lock().outcome = Some(Mark::now(good));
    }

    /// Whether the builder should be called at all: its latest reachability evidence is good.
    pub fn usable(&self) -> bool {
        let m = *self.marks.lock();
        latest(&[m.call, m.probe]).is_none_or(|m| m.good)
    }

    /// Whether the builder is failing: unreachable or out of sync by its newest reachability
    /// evidence, or its last outcome failed (cleared only by a later good block, so blocks
    /// without a builder payload, e.g. noTxPool ones, do not make it flap).
    pub fn failing(&self) -> bool {
        let m = *self.marks.lock();
        latest(&[m.call, m.probe]).is_some_and(|m| !m.good) || m.outcome.is_some_and(|m| !m.good)
    }

    /// Resolves when the builder turned unreachable.
    pub async fn turned_unhealthy(&self) {
        self.wake.notified().await;
    }
}
