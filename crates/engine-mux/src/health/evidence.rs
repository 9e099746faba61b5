//! Timestamped evidence the local EL and each builder keep about themselves: engine call
//! outcomes, block outcomes and probe results. Health is derived from it, never stored.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Consecutive blocks a builder's block comes in after `--builder-grace-ms` (another builder's
/// came in first and the grace ran out) before that counts against it like a failed block: a
/// builder that loses every race never builds a block, which is a fault of its own.
pub const LOST_RACES_BLAMED: u32 = 10;

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

/// Why an upstream last looked bad, and when (wall clock, for operators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// What was seen: the probe's error, how stale the head was, or which call failed.
    pub what: String,
    /// When (Unix milliseconds).
    pub at_unix_ms: u64,
}

/// The longest `what` kept: an upstream's error body can be anything.
const LAST_ERROR_MAX: usize = 256;

impl LastError {
    fn now(mut what: String) -> Self {
        if what.len() > LAST_ERROR_MAX {
            let mut end = LAST_ERROR_MAX;
            while !what.is_char_boundary(end) {
                end -= 1;
            }
            what.truncate(end);
        }
        Self {
            what,
            at_unix_ms: unix_ms(SystemTime::now()),
        }
    }

    fn of_probe(outcome: &ProbeOutcome) -> Option<Self> {
        match outcome {
            ProbeOutcome::Synced => None,
            ProbeOutcome::Stale { age } => Some(Self::now(format!(
                "probe: latest block is {} s old",
                age.as_secs()
            ))),
            ProbeOutcome::Failed(e) => Some(Self::now(format!("probe: {e}"))),
        }
    }
}

/// Whether an upstream was failing at its last change of verdict, and since when: the
/// monotonic instant for the health tolerance, the wall clock for operators.
#[derive(Clone, Copy, Debug)]
pub struct Verdict {
    /// Failing (true) or fine (false).
    pub failing: bool,
    /// When it turned so (monotonic).
    pub since: Instant,
    /// When it turned so (wall clock).
    pub since_wall: SystemTime,
}

impl Verdict {
    fn fine() -> Self {
        Self {
            failing: false,
            since: Instant::now(),
            since_wall: SystemTime::now(),
        }
    }

    fn set(&mut self, failing: bool) {
        if self.failing != failing {
            *self = Self {
                failing,
                since: Instant::now(),
                since_wall: SystemTime::now(),
            };
        }
    }
}

/// The local EL's latest block as the probe last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadSeen {
    /// Its number.
    pub number: u64,
    /// Its timestamp (Unix seconds).
    pub timestamp: u64,
}

/// The local EL's evidence: its engine calls and its probe.
#[derive(Debug)]
pub struct LocalHealth {
    marks: Mutex<(Option<Mark>, Option<Mark>)>,
    verdict: Mutex<Verdict>,
    last_error: Mutex<Option<LastError>>,
    head: Mutex<Option<HeadSeen>>,
    /// Wakes the prober when the local EL turns unhealthy, so recovery is noticed quickly.
    wake: Notify,
}

impl Default for LocalHealth {
    fn default() -> Self {
        Self {
            marks: Mutex::default(),
            verdict: Mutex::new(Verdict::fine()),
            last_error: Mutex::default(),
            head: Mutex::default(),
            wake: Notify::new(),
        }
    }
}

fn local_failing(call: Option<Mark>, probe: Option<Mark>) -> bool {
    probe.is_some_and(|m| !m.good) || latest(&[call, probe]).is_some_and(|m| !m.good)
}

impl LocalHealth {
    fn update(&self, f: impl FnOnce(&mut (Option<Mark>, Option<Mark>))) {
        let mut marks = self.marks.lock();
        f(&mut marks);
        let failing = local_failing(marks.0, marks.1);
        drop(marks);
        self.verdict.lock().set(failing);
    }

    /// An engine call to the local EL succeeded (or answered a spec error: working as specified).
    pub fn ok(&self) {
        self.update(|m| m.0 = Some(Mark::now(true)));
    }

    /// An engine call to the local EL failed (transport, timeout, error answer).
    pub fn failed(&self) {
        self.update(|m| m.0 = Some(Mark::now(false)));
        *self.last_error.lock() = Some(LastError::now(
            "an engine call failed (transport, timeout or internal error)".into(),
        ));
        self.wake.notify_one();
    }

    /// Result of probing the local EL's latest block.
    pub fn probe(&self, outcome: &ProbeOutcome) {
        self.update(|m| m.1 = Some(Mark::now(outcome.good())));
        if let Some(e) = LastError::of_probe(outcome) {
            *self.last_error.lock() = Some(e);
        }
    }

    /// Whether the local EL is failing: a bad probe (stale or failed) holds until a good
    /// probe; a failed engine call holds until a later success or a later good probe.
    pub fn failing(&self) -> bool {
        let (call, probe) = *self.marks.lock();
        local_failing(call, probe)
    }

    /// Whether it is failing and since when.
    pub fn verdict(&self) -> Verdict {
        *self.verdict.lock()
    }

    /// The last bad thing seen of it (kept after it recovers, for the record).
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().clone()
    }

    /// Records the latest block the probe saw.
    pub fn saw_head(&self, head: HeadSeen) {
        *self.head.lock() = Some(head);
    }

    /// The latest block the probe saw; `None` before the first good probe answer.
    pub fn head(&self) -> Option<HeadSeen> {
        *self.head.lock()
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
    /// The failed outcome was the builder not answering in time (or answering SYNCING): its
    /// next offer that comes in time clears it, even if that offer is not validated.
    outcome_was_lateness: bool,
    /// Blocks in a row its block came in after the grace.
    lost_races: u32,
}

impl BuilderMarks {
    fn usable(&self) -> bool {
        latest(&[self.call, self.probe]).is_none_or(|m| m.good)
    }

    fn failing(&self) -> bool {
        !self.usable()
            || self.outcome.is_some_and(|m| !m.good)
            || self.lost_races >= LOST_RACES_BLAMED
    }

    fn state(&self) -> BuilderState {
        if !self.usable() {
            BuilderState::Skipped
        } else if self.failing() {
            BuilderState::Failing
        } else {
            BuilderState::Healthy
        }
    }
}

/// What a builder's evidence makes of it, as `debug_getBuilders` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuilderState {
    /// Reachable, in sync, its last block good.
    Healthy,
    /// Reachable and asked to build, but its last block failed (or it lost every race).
    Failing,
    /// Unreachable or out of sync: not asked to build until evidence shows it back.
    Skipped,
}

/// A builder's head as last seen, against the local EL's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heads {
    /// The builder's latest block number.
    pub builder: u64,
    /// The local EL's latest block number at the same time.
    pub local: u64,
}

/// One builder's evidence: reachability (engine calls, probe) and block outcomes.
#[derive(Debug)]
pub struct BuilderHealth {
    marks: Mutex<BuilderMarks>,
    /// The state the marks gave last, and since when (wall clock, for operators).
    state: Mutex<(BuilderState, SystemTime)>,
    heads: Mutex<Option<Heads>>,
    /// Failing or not (what `/healthz` counts), and since when.
    verdict: Mutex<Verdict>,
    last_error: Mutex<Option<LastError>>,
    /// When its last block failed against it (wall clock).
    last_block_failure: Mutex<Option<SystemTime>>,
    /// Wakes the prober when the builder turns unreachable, so recovery is noticed quickly.
    wake: Notify,
    /// Wakes the prober when the builder was skipped for a block, so it is probed (and caught
    /// up) as soon as it is back rather than at the next periodic probe.
    skipped: Notify,
}

impl Default for BuilderHealth {
    fn default() -> Self {
        Self {
            marks: Mutex::default(),
            state: Mutex::new((BuilderState::Healthy, SystemTime::now())),
            heads: Mutex::default(),
            verdict: Mutex::new(Verdict::fine()),
            last_error: Mutex::default(),
            last_block_failure: Mutex::default(),
            wake: Notify::new(),
            skipped: Notify::new(),
        }
    }
}

impl BuilderHealth {
    fn update(&self, f: impl FnOnce(&mut BuilderMarks)) {
        let mut marks = self.marks.lock();
        f(&mut marks);
        let now = marks.state();
        let failing = marks.failing();
        drop(marks);
        self.verdict.lock().set(failing);
        let mut state = self.state.lock();
        if state.0 != now {
            *state = (now, SystemTime::now());
        }
    }

    /// The builder answered an engine call properly (or a catch-up brought it in sync).
    pub fn ok(&self) {
        self.update(|m| m.call = Some(Mark::now(true)));
    }

    /// The builder was unreachable, timed out or answered garbage.
    pub fn failed(&self) {
        self.update(|m| m.call = Some(Mark::now(false)));
        *self.last_error.lock() = Some(LastError::now(
            "an engine call failed (unreachable, timed out or garbage)".into(),
        ));
        self.wake.notify_one();
    }

    /// Result of probing the builder's latest block.
    pub fn probe(&self, outcome: &ProbeOutcome) {
        self.update(|m| m.probe = Some(Mark::now(outcome.good())));
        if let Some(e) = LastError::of_probe(outcome) {
            *self.last_error.lock() = Some(e);
        }
    }

    /// A block outcome: a good block (`true`), or a failure that blames the builder (`false`:
    /// getPayload fallback for timeout, error, INVALID, SYNCING, attributes mismatch, or a
    /// mirrored call the builder refused). A failure holds 206 until the next good block.
    pub fn outcome(&self, good: bool) {
        if !good {
            *self.last_block_failure.lock() = Some(SystemTime::now());
        }
        self.update(|m| {
            m.outcome = Some(Mark::now(good));
            m.outcome_was_lateness = false;
            if good {
                m.lost_races = 0;
            }
        });
    }

    /// A block outcome that failed because the builder had no block in time (its getPayload or
    /// FCU timed out, or it answered SYNCING): failing, like [`Self::outcome`]`(false)`, until
    /// its next good block or its next offer that comes in time ([`Self::offered_in_time`]).
    pub fn late_outcome(&self) {
        *self.last_block_failure.lock() = Some(SystemTime::now());
        self.update(|m| {
            m.outcome = Some(Mark::now(false));
            m.outcome_was_lateness = true;
        });
    }

    /// Its offer for a block came in in time and was well formed, but was not tried (another
    /// builder's block was chosen first, or another builder's preconfirmations decided the
    /// block): that clears a failure that was only lateness, never a failed block, so a
    /// builder that is back is not counted failing while another builder's flashblocks decide
    /// every block.
    pub fn offered_in_time(&self) {
        self.update(|m| {
            m.lost_races = 0;
            if m.outcome_was_lateness && m.outcome.is_some_and(|o| !o.good) {
                m.outcome = Some(Mark::now(true));
                m.outcome_was_lateness = false;
            }
        });
    }

    /// Its block came in after the grace: another builder's was in first. After
    /// [`LOST_RACES_BLAMED`] blocks in a row this counts as failing, until it answers in time.
    pub fn lost_race(&self) {
        self.update(|m| m.lost_races = m.lost_races.saturating_add(1));
    }

    /// Its answer for a block came in within the grace (whatever became of its block).
    pub fn answered_in_time(&self) {
        self.update(|m| m.lost_races = 0);
    }

    /// Whether the builder should be called at all: its latest reachability evidence is good.
    pub fn usable(&self) -> bool {
        self.marks.lock().usable()
    }

    /// Whether the builder is failing: unreachable or out of sync by its newest reachability
    /// evidence, its last outcome failed (cleared only by a later good block, so blocks
    /// without a builder payload, e.g. noTxPool ones, do not make it flap), or it lost the last
    /// [`LOST_RACES_BLAMED`] races.
    pub fn failing(&self) -> bool {
        self.marks.lock().failing()
    }

    /// Whether it is failing (as [`Self::failing`]) and since when.
    pub fn verdict(&self) -> Verdict {
        *self.verdict.lock()
    }

    /// The last reachability problem seen of it (kept after it recovers, for the record).
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().clone()
    }

    /// When a block last failed against it.
    pub fn last_block_failure(&self) -> Option<SystemTime> {
        *self.last_block_failure.lock()
    }

    /// Its state and since when (the wall-clock time of the change).
    pub fn state(&self) -> (BuilderState, SystemTime) {
        // Derived afresh: evidence is only ever added, but keep the two in step regardless.
        let now = self.marks.lock().state();
        let mut state = self.state.lock();
        if state.0 != now {
            *state = (now, SystemTime::now());
        }
        *state
    }

    /// Records the builder's head against the local EL's (probe, catch-up).
    pub fn saw_heads(&self, heads: Heads) {
        *self.heads.lock() = Some(heads);
    }

    /// The builder's head against the local EL's, as last seen.
    pub fn heads(&self) -> Option<Heads> {
        *self.heads.lock()
    }

    /// Resolves when the builder turned unreachable.
    pub async fn turned_unhealthy(&self) {
        self.wake.notified().await;
    }

    /// The builder was skipped for a block (unreachable or out of sync when op-node asked for
    /// a block): the prober looks at it again right away.
    pub fn skipped(&self) {
        self.skipped.notify_one();
    }

    /// Resolves when the builder was skipped for a block.
    pub async fn was_skipped(&self) {
        self.skipped.notified().await;
    }
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_that_loses_every_race_fails_after_the_stated_number_of_blocks() {
        let b = BuilderHealth::default();
        for _ in 1..LOST_RACES_BLAMED {
            b.lost_race();
        }
        assert!(!b.failing(), "one race short of the limit");
        assert_eq!(b.state().0, BuilderState::Healthy);
        b.lost_race();
        assert!(b.failing());
        assert!(b.usable(), "still asked to build: it may win the next race");
        assert_eq!(b.state().0, BuilderState::Failing);
        b.answered_in_time();
        assert!(!b.failing(), "an answer in time clears it");
        for _ in 0..LOST_RACES_BLAMED {
            b.lost_race();
        }
        b.outcome(true);
        assert!(!b.failing(), "and so does a good block");
    }

    /// A builder that only missed a deadline is back with its next offer in time, even when
    /// that offer is never validated (another builder's flashblocks decide the block); one whose
    /// block failed stays failing until a good block.
    #[test]
    fn lateness_clears_with_an_offer_in_time_a_failed_block_does_not() {
        let late = BuilderHealth::default();
        late.late_outcome();
        assert!(late.failing());
        late.offered_in_time();
        assert!(!late.failing(), "an offer in time clears a missed deadline");

        let invalid = BuilderHealth::default();
        invalid.outcome(false);
        invalid.offered_in_time();
        assert!(
            invalid.failing(),
            "an untried offer does not clear a failed block"
        );
        invalid.outcome(true);
        assert!(!invalid.failing());

        // A failed block after a missed deadline: the block failure is what counts.
        let both = BuilderHealth::default();
        both.late_outcome();
        both.outcome(false);
        both.offered_in_time();
        assert!(both.failing());
    }

    #[test]
    fn state_changes_are_timestamped() {
        let b = BuilderHealth::default();
        let (state, since) = b.state();
        assert_eq!(state, BuilderState::Healthy);
        std::thread::sleep(Duration::from_millis(5));
        b.failed();
        let (state, skipped_since) = b.state();
        assert_eq!(state, BuilderState::Skipped);
        assert!(skipped_since > since);
        std::thread::sleep(Duration::from_millis(5));
        b.failed();
        assert_eq!(b.state().1, skipped_since, "still skipped: same since");
        b.probe(&ProbeOutcome::Synced);
        assert_eq!(b.state().0, BuilderState::Healthy);
        assert!(b.state().1 > skipped_since);
    }
}
