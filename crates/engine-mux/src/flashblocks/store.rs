//! Accepted flashblocks per builder payload: the spec's rules (payload id of a build the
//! builder confirmed, index exactly previous + 1, base only at index 0, no equivocation), a
//! bounded hold for flashblocks that arrive early (before the builder's FCU answer, or ahead
//! of a gap), and in-order re-publication of each accepted flashblock's original bytes.

use std::{collections::VecDeque, sync::Arc};

use alloy_primitives::Bytes;
use engine_api::{
    PayloadId,
    flashblocks::{Order, OrderError, Sequence},
};
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use parking_lot::Mutex;
use tokio::{sync::broadcast, time::Instant};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::{
    execution_mode::{ExecutionMode, ModeCell},
    metrics::Metrics,
};

/// Builds remembered (the current one and a few before it).
pub const MAX_BUILDS: usize = 8;
/// Flashblocks accepted per build; a builder sending more is refused past this.
pub(crate) const MAX_PER_BUILD: usize = 1024;
/// Bytes of flashblocks accepted per build (a 30M-gas block is a few MB; this is generous).
pub(crate) const MAX_BYTES_PER_BUILD: usize = 16 * 1024 * 1024;
/// Flashblocks held while they cannot be applied yet.
pub(crate) const MAX_HELD: usize = 128;

/// Why a flashblock was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A different flashblock for an index already accepted.
    Equivocation,
    /// Base present at index > 0 or missing at index 0.
    Base,
    /// More than [`MAX_PER_BUILD`] flashblocks for one build.
    TooMany,
    /// Its block was already proposed; anything later is not in it.
    Late,
    /// The build's flashblocks would exceed [`MAX_BYTES_PER_BUILD`].
    TooLarge,
}

impl Rejection {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equivocation => "equivocation",
            Self::Base => "base",
            Self::TooMany => "too_many",
            Self::Late => "late",
            Self::TooLarge => "too_large",
        }
    }
}

/// What happened to one incoming flashblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted and published, with this many held ones applied after it.
    Accepted {
        /// Held flashblocks that became applicable and were accepted too.
        released: usize,
    },
    /// Held until its build is confirmed or its gap is filled.
    Held,
    /// An exact copy of one already accepted; ignored, not re-published.
    Duplicate,
    /// Refused.
    Rejected(Rejection),
}

struct Entry {
    fb: OpFlashblockPayload,
    raw: Utf8Bytes,
    /// When it reached engine-mux (a held one keeps it), and its place in the arrival order.
    arrived: Arrival,
    /// Whether it was re-published to subscribers when accepted.
    published: bool,
}

/// When one flashblock reached engine-mux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Its index in its block.
    pub index: u64,
    /// Place in the order frames arrived (ties of `at` broken by it).
    pub seq: u64,
    /// Arrival time.
    pub at: Instant,
}

/// What one build's flashblocks did, for preconfirmation telemetry (taken once per build).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Every distinct flashblock delivered for the build (accepted, or held and never
    /// applicable), in arrival order.
    pub arrivals: Vec<Arrival>,
    /// The transactions re-published to subscribers, in order.
    pub published: Vec<Bytes>,
}

struct Build {
    id: PayloadId,
    /// The order its flashblocks must keep (engine-types' one checker).
    sequence: Sequence,
    accepted: Vec<Entry>,
    /// Set when getPayload took its snapshot: the block is decided.
    closed: bool,
    /// Whether its flashblocks are re-published (only the builder elected for the block's).
    publish: bool,
    /// Bytes of the accepted frames.
    bytes: usize,
    /// Held flashblocks of this build dropped at the decision (delivered behind a gap).
    dropped: Vec<Arrival>,
    /// Whether its [`Timeline`] was taken.
    reported: bool,
}

#[derive(Default)]
struct Inner {
    builds: VecDeque<Build>,
    held: VecDeque<Entry>,
    /// Frames ingested so far (the arrival order).
    arrivals: u64,
}

/// The flashblocks engine-mux holds, shared by the inbound stream and getPayload.
pub struct FlashblocksStore {
    inner: Mutex<Inner>,
    publish: broadcast::Sender<Utf8Bytes>,
    metrics: Arc<Metrics>,
    /// Only `enabled` proposes builder blocks, so only then are preconfirmations re-published.
    mode: Arc<ModeCell>,
}

impl std::fmt::Debug for FlashblocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashblocksStore").finish_non_exhaustive()
    }
}

impl FlashblocksStore {
    /// A store publishing accepted flashblocks to `publish`.
    pub fn new(
        publish: broadcast::Sender<Utf8Bytes>,
        metrics: Arc<Metrics>,
        mode: Arc<ModeCell>,
    ) -> Self {
        Self {
            inner: Mutex::default(),
            publish,
            metrics,
            mode,
        }
    }

    /// The builder answered an FCU with `id`: its flashblocks can be accepted from now on, and
    /// are re-published when `publish` (the builder was elected for this block).
    pub fn begin(&self, id: PayloadId, publish: bool) {
        let mut inner = self.inner.lock();
        if inner.builds.iter().any(|b| b.id == id) {
            return;
        }
        inner.builds.push_back(Build {
            id,
            sequence: Sequence::new(id, MAX_PER_BUILD as u64),
            accepted: Vec::new(),
            closed: false,
            publish,
            bytes: 0,
            dropped: Vec::new(),
            reported: false,
        });
        while inner.builds.len() > MAX_BUILDS {
            inner.builds.pop_front();
        }
        self.release_held(&mut inner);
    }

    /// Applies one flashblock (`raw` is its frame, re-published as is when accepted).
    pub fn ingest(&self, fb: OpFlashblockPayload, raw: Utf8Bytes) -> Verdict {
        self.metrics.flashblock("received");
        let mut inner = self.inner.lock();
        inner.arrivals += 1;
        let arrived = Arrival {
            index: fb.index,
            seq: inner.arrivals,
            at: Instant::now(),
        };
        let entry = Entry {
            fb,
            raw,
            arrived,
            published: false,
        };
        let verdict = match self.apply(&mut inner, entry) {
            Ok(()) => Verdict::Accepted {
                released: self.release_held(&mut inner),
            },
            Err(v) => v,
        };
        match verdict {
            Verdict::Rejected(r) => self.metrics.flashblock_rejected(r.as_str()),
            Verdict::Duplicate => self.metrics.flashblock_rejected("duplicate"),
            Verdict::Held | Verdict::Accepted { .. } => {}
        }
        self.metrics.flashblocks_held(inner.held.len());
        verdict
    }

    /// Accepts `entry` or says why not; held entries go into the hold queue.
    fn apply(&self, inner: &mut Inner, mut entry: Entry) -> Result<(), Verdict> {
        let Some(build) = inner
            .builds
            .iter_mut()
            .find(|b| b.id == entry.fb.payload_id)
        else {
            Self::hold(inner, entry, &self.metrics);
            return Err(Verdict::Held);
        };
        match build.sequence.check(&entry.fb) {
            Ok(Order::Seen { index }) => {
                let same = build.accepted[index as usize].fb == entry.fb;
                return Err(if same {
                    Verdict::Duplicate
                } else {
                    Verdict::Rejected(Rejection::Equivocation)
                });
            }
            // A replay of something accepted is a duplicate even after the block was decided;
            // anything new for a decided block is late.
            _ if build.closed => return Err(Verdict::Rejected(Rejection::Late)),
            Err(OrderError::Base { .. }) => return Err(Verdict::Rejected(Rejection::Base)),
            // Ahead of a gap: held until the gap fills (the build was found by its payload id,
            // so another payload's flashblock is not seen here).
            Err(OrderError::Gap { .. } | OrderError::Payload { .. }) => {
                Self::hold(inner, entry, &self.metrics);
                return Err(Verdict::Held);
            }
            Err(OrderError::TooMany { .. }) => return Err(Verdict::Rejected(Rejection::TooMany)),
            Ok(Order::Next) => {}
        }
        if build.bytes + entry.raw.len() > MAX_BYTES_PER_BUILD {
            return Err(Verdict::Rejected(Rejection::TooLarge));
        }
        build.bytes += entry.raw.len();
        // Published under the lock so subscribers see exactly the acceptance order.
        if build.publish && self.mode.get() == ExecutionMode::Enabled {
            let _ = self.publish.send(entry.raw.clone());
            entry.published = true;
        }
        self.metrics.flashblock("accepted");
        build.sequence.advance();
        build.accepted.push(entry);
        Ok(())
    }

    fn hold(inner: &mut Inner, entry: Entry, metrics: &Metrics) {
        inner.held.push_back(entry);
        if inner.held.len() > MAX_HELD {
            inner.held.pop_front();
            metrics.flashblock_rejected("held_overflow");
        }
    }

    /// Applies every held flashblock that fits now; returns how many were accepted.
    fn release_held(&self, inner: &mut Inner) -> usize {
        let mut released = 0;
        loop {
            let fits = inner.held.iter().position(|e| {
                inner
                    .builds
                    .iter()
                    .find(|b| b.id == e.fb.payload_id)
                    .is_some_and(|b| b.accepted.len() as u64 >= e.fb.index)
            });
            let Some(pos) = fits else { break };
            let Some(entry) = inner.held.remove(pos) else {
                break;
            };
            match self.apply(inner, entry) {
                Ok(()) => released += 1,
                Err(Verdict::Rejected(r)) => self.metrics.flashblock_rejected(r.as_str()),
                Err(Verdict::Duplicate) => self.metrics.flashblock_rejected("duplicate"),
                Err(_) => {}
            }
        }
        released
    }

    /// The flashblocks accepted for `id` so far, in index order.
    pub fn accepted(&self, id: &PayloadId) -> Vec<OpFlashblockPayload> {
        let inner = self.inner.lock();
        inner
            .builds
            .iter()
            .find(|b| b.id == *id)
            .map(|b| b.accepted.iter().map(|e| e.fb.clone()).collect())
            .unwrap_or_default()
    }

    /// Takes the flashblocks accepted for `id` and closes the build, in one step: getPayload
    /// decides the block from exactly this set, and nothing later is accepted or re-published.
    pub fn close(&self, id: &PayloadId) -> Vec<OpFlashblockPayload> {
        let mut inner = self.inner.lock();
        let mut dropped = Vec::new();
        inner.held.retain(|e| {
            let keep = e.fb.payload_id != *id;
            if !keep {
                dropped.push(e.arrived);
            }
            keep
        });
        self.metrics.flashblocks_held(inner.held.len());
        match inner.builds.iter_mut().find(|b| b.id == *id) {
            Some(build) => {
                build.closed = true;
                build.dropped.append(&mut dropped);
                build.accepted.iter().map(|e| e.fb.clone()).collect()
            }
            None => Vec::new(),
        }
    }

    /// The build's [`Timeline`], once: `None` when the build is unknown or was taken already
    /// (a retried getPayload reports nothing twice). Flashblocks still held for it count as
    /// delivered.
    pub fn timeline(&self, id: &PayloadId) -> Option<Timeline> {
        let mut inner = self.inner.lock();
        let Inner { builds, held, .. } = &mut *inner;
        let build = builds.iter_mut().find(|b| b.id == *id)?;
        if std::mem::replace(&mut build.reported, true) {
            return None;
        }
        let mut arrivals: Vec<Arrival> = build
            .accepted
            .iter()
            .map(|e| e.arrived)
            .chain(build.dropped.iter().copied())
            .chain(
                held.iter()
                    .filter(|e| e.fb.payload_id == *id)
                    .map(|e| e.arrived),
            )
            .collect();
        arrivals.sort_by_key(|a| a.seq);
        // A builder re-sending an index (a replay after a reconnect) delivered it once.
        let mut seen = std::collections::HashSet::new();
        arrivals.retain(|a| seen.insert(a.index));
        let published = build
            .accepted
            .iter()
            .filter(|e| e.published)
            .flat_map(|e| e.fb.diff.transactions.iter().cloned())
            .collect();
        Some(Timeline {
            arrivals,
            published,
        })
    }

    /// Flashblocks for `id` still held behind a gap (published by the builder, never applicable).
    pub fn missing(&self, id: &PayloadId) -> u64 {
        let inner = self.inner.lock();
        let have = inner
            .builds
            .iter()
            .find(|b| b.id == *id)
            .map_or(0, |b| b.accepted.len() as u64);
        inner
            .held
            .iter()
            .filter(|e| e.fb.payload_id == *id)
            .map(|e| e.fb.index + 1)
            .max()
            .map_or(0, |top| top.saturating_sub(have))
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{B256, Bytes};
    use op_alloy_rpc_types_engine::OpFlashblockPayloadBase;

    use super::*;

    fn fb(id: u8, index: u64, tag: u8) -> (OpFlashblockPayload, Utf8Bytes) {
        let mut f = OpFlashblockPayload {
            payload_id: PayloadId::new([id; 8]),
            index,
            base: (index == 0).then(OpFlashblockPayloadBase::default),
            ..Default::default()
        };
        f.diff.transactions = vec![Bytes::from(vec![tag])];
        f.diff.block_hash = B256::repeat_byte(tag);
        let raw = Utf8Bytes::from(serde_json::to_string(&f).unwrap());
        (f, raw)
    }

    fn store() -> (FlashblocksStore, broadcast::Receiver<Utf8Bytes>) {
        let (tx, rx) = broadcast::channel(64);
        (
            FlashblocksStore::new(
                tx,
                Arc::new(Metrics::new()),
                Arc::new(ModeCell::new(ExecutionMode::Enabled)),
            ),
            rx,
        )
    }

    fn published(rx: &mut broadcast::Receiver<Utf8Bytes>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(raw) = rx.try_recv() {
            out.push(
                serde_json::from_str::<OpFlashblockPayload>(&raw)
                    .unwrap()
                    .index,
            );
        }
        out
    }

    #[test]
    fn in_order_duplicates_and_equivocation() {
        let (s, mut rx) = store();
        s.begin(PayloadId::new([1; 8]), true);
        let (a, ra) = fb(1, 0, 1);
        assert_eq!(
            s.ingest(a.clone(), ra.clone()),
            Verdict::Accepted { released: 0 }
        );
        assert_eq!(s.ingest(a, ra), Verdict::Duplicate);
        let (b, rb) = fb(1, 1, 2);
        assert_eq!(s.ingest(b, rb), Verdict::Accepted { released: 0 });
        let (evil, revil) = fb(1, 1, 99);
        assert_eq!(
            s.ingest(evil, revil),
            Verdict::Rejected(Rejection::Equivocation)
        );
        assert_eq!(
            published(&mut rx),
            vec![0, 1],
            "duplicates and equivocations are not re-published"
        );
        assert_eq!(s.accepted(&PayloadId::new([1; 8])).len(), 2);
    }

    #[test]
    fn a_build_not_elected_is_accepted_but_never_published() {
        let (s, mut rx) = store();
        let id = PayloadId::new([7; 8]);
        s.begin(id, false);
        let (a, ra) = fb(7, 0, 1);
        assert_eq!(s.ingest(a, ra), Verdict::Accepted { released: 0 });
        assert!(published(&mut rx).is_empty());
        assert_eq!(s.close(&id).len(), 1, "kept for its own block");
    }

    #[test]
    fn early_and_out_of_order_flashblocks_are_held_then_applied_in_order() {
        let (s, mut rx) = store();
        let id = PayloadId::new([2; 8]);
        let (f2, r2) = fb(2, 2, 3);
        let (f0, r0) = fb(2, 0, 1);
        let (f1, r1) = fb(2, 1, 2);
        assert_eq!(
            s.ingest(f2, r2),
            Verdict::Held,
            "before the builder's FCU answer"
        );
        assert_eq!(s.ingest(f0, r0), Verdict::Held);
        s.begin(id, true);
        assert_eq!(
            published(&mut rx),
            vec![0],
            "index 0 released, 2 still waits for 1"
        );
        assert_eq!(s.missing(&id), 2);
        assert_eq!(s.ingest(f1, r1), Verdict::Accepted { released: 1 });
        assert_eq!(published(&mut rx), vec![1, 2]);
        assert_eq!(s.missing(&id), 0);
    }

    #[test]
    fn nothing_is_accepted_or_published_after_the_block_was_decided() {
        let (s, mut rx) = store();
        let id = PayloadId::new([4; 8]);
        s.begin(id, true);
        let (f0, r0) = fb(4, 0, 1);
        s.ingest(f0, r0);
        let (f2, r2) = fb(4, 2, 3);
        assert_eq!(s.ingest(f2, r2), Verdict::Held);
        assert_eq!(
            s.close(&id).len(),
            1,
            "the snapshot getPayload decides from"
        );
        let (f1, r1) = fb(4, 1, 2);
        assert_eq!(s.ingest(f1, r1), Verdict::Rejected(Rejection::Late));
        let (f0, r0) = fb(4, 0, 1);
        assert_eq!(
            s.ingest(f0, r0),
            Verdict::Duplicate,
            "a replay after the decision is still a duplicate"
        );
        assert_eq!(
            published(&mut rx),
            vec![0],
            "late flashblocks are not re-published"
        );
        assert_eq!(s.missing(&id), 0, "held ones of a closed build are dropped");
    }

    #[test]
    fn dry_run_accepts_but_does_not_republish() {
        let (tx, mut rx) = broadcast::channel(8);
        let mode = Arc::new(ModeCell::new(ExecutionMode::DryRun));
        let s = FlashblocksStore::new(tx, Arc::new(Metrics::new()), mode.clone());
        s.begin(PayloadId::new([5; 8]), true);
        let (f0, r0) = fb(5, 0, 1);
        assert_eq!(s.ingest(f0, r0), Verdict::Accepted { released: 0 });
        assert!(
            published(&mut rx).is_empty(),
            "dry_run never proposes them, so never shows them"
        );
        mode.set(ExecutionMode::Enabled);
        let (f1, r1) = fb(5, 1, 2);
        s.ingest(f1, r1);
        assert_eq!(published(&mut rx), vec![1]);
    }

    #[test]
    fn a_build_is_bounded_in_bytes_too() {
        let (s, _rx) = store();
        s.begin(PayloadId::new([6; 8]), true);
        let big = |index| {
            let (f, _) = fb(6, index, 1);
            (f, Utf8Bytes::from(" ".repeat(MAX_BYTES_PER_BUILD / 2 + 1)))
        };
        let (f0, r0) = big(0);
        assert_eq!(s.ingest(f0, r0), Verdict::Accepted { released: 0 });
        let (f1, r1) = big(1);
        assert_eq!(s.ingest(f1, r1), Verdict::Rejected(Rejection::TooLarge));
    }

    /// The timeline keeps arrival times and order (a held one keeps its own), counts a held
    /// one dropped at the decision, names only re-published transactions, and is taken once.
    #[tokio::test(start_paused = true)]
    async fn timeline_of_a_build() {
        let (s, _rx) = store();
        let id = PayloadId::new([8; 8]);
        let t0 = Instant::now();
        let step = std::time::Duration::from_millis(100);
        let (f1, r1) = fb(8, 1, 2);
        s.ingest(f1, r1); // before the builder's FCU answer: held
        tokio::time::advance(step).await;
        s.begin(id, true);
        let (f0, r0) = fb(8, 0, 1);
        s.ingest(f0, r0);
        tokio::time::advance(step).await;
        let (f3, r3) = fb(8, 3, 4);
        s.ingest(f3, r3); // 2 never comes
        s.close(&id);
        let t = s.timeline(&id).unwrap();
        let got: Vec<(u64, std::time::Duration)> =
            t.arrivals.iter().map(|a| (a.index, a.at - t0)).collect();
        assert_eq!(
            got,
            vec![(1, std::time::Duration::ZERO), (0, step), (3, 2 * step)]
        );
        assert_eq!(
            t.published,
            vec![Bytes::from(vec![1]), Bytes::from(vec![2])],
            "0 and 1 were re-published, 3 never"
        );
        assert_eq!(s.timeline(&id), None, "reported once");

        let mode = Arc::new(ModeCell::new(ExecutionMode::DryRun));
        let (tx, _rx) = broadcast::channel(8);
        let s = FlashblocksStore::new(tx, Arc::new(Metrics::new()), mode);
        s.begin(id, true);
        let (f0, r0) = fb(8, 0, 1);
        s.ingest(f0, r0);
        let t = s.timeline(&id).unwrap();
        assert_eq!(t.arrivals.len(), 1);
        assert!(t.published.is_empty(), "dry_run re-publishes nothing");
    }

    #[test]
    fn base_rules_and_bounds() {
        let (s, _rx) = store();
        s.begin(PayloadId::new([3; 8]), true);
        let (mut no_base, r) = fb(3, 0, 1);
        no_base.base = None;
        assert_eq!(s.ingest(no_base, r), Verdict::Rejected(Rejection::Base));
        let (ok, r) = fb(3, 0, 1);
        s.ingest(ok, r);
        let (mut extra_base, r) = fb(3, 1, 2);
        extra_base.base = Some(OpFlashblockPayloadBase::default());
        assert_eq!(s.ingest(extra_base, r), Verdict::Rejected(Rejection::Base));
        for i in 0..(MAX_HELD as u64 + 10) {
            let (f, r) = fb(9, i + 1, 1);
            s.ingest(f, r);
        }
        assert_eq!(s.inner.lock().held.len(), MAX_HELD, "the hold is bounded");
        for n in 0..(MAX_BUILDS as u8 + 3) {
            s.begin(PayloadId::new([100 + n; 8]), true);
        }
        assert_eq!(s.inner.lock().builds.len(), MAX_BUILDS);
    }
}
