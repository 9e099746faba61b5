//! Validating the builder's block before op-node asks for it (`--prevalidate-builder-payload`).
//!
//! op-node asks for its block `sealingDuration` (50 ms) before the slot ends, the slot's end
//! being the attributes' timestamp. `--prevalidate-lead-ms` before that end, every builder asked
//! for the block is asked for it, and the one block the builder policy ranks first (the elected
//! builder's, with flashblocks) is checked against op-node's attributes and validated on the
//! local EL: a speculative `engine_newPayload`, harmless because the EL keeps the block as a side
//! block until a forkchoice makes it canonical. op-node's getPayload then finds the block
//! validated and answers without that round trip; a block that changed since (another hash) is
//! validated again, and an INVALID one is never proposed.
//!
//! One task runs the early work of every build, fed through a bounded queue: scheduling it from
//! the FCU path is a `try_send`, so nothing here delays the local block or op-node's calls. One
//! early validation per build at most.

pub(crate) mod slot;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use engine_api::PayloadVersion;
use futures::{StreamExt, stream::FuturesUnordered};
use tokio::sync::{mpsc, watch};

use self::slot::EarlyBlock;
use crate::{
    builder::{
        Builder,
        gather::{Wait, gather},
        payload_ids::BuildSlot,
    },
    local::LocalEl,
    metrics::Metrics,
    select::{BuilderPolicy, RankKey, check_attributes},
};

/// Builds whose early work may wait in the queue (one per block: a full queue means op-node
/// starts blocks faster than anything could be validated ahead of them).
const QUEUE_DEPTH: usize = 32;

/// Builds whose early work may run at once (each waits for its slot's end, then one fetch per
/// builder and one validation).
const MAX_RUNNING: usize = 8;

/// The early work never starts with op-node's FCU answer still on its way out: when less than
/// the lead is left of the slot, it starts this long after the FCU instead of at once (a fetch
/// and a validation started in the same instant compete with that answer for the CPU).
const AFTER_FCU: Duration = Duration::from_millis(1);

/// The scheduling side, held by the builders; the work runs in [`run`].
#[derive(Debug)]
pub struct Prevalidation {
    tx: mpsc::Sender<Job>,
    lead: Duration,
    /// The getPayload version op-node used last (0: none yet): the early fetch asks the same.
    version: AtomicU8,
    metrics: Arc<Metrics>,
}

/// One build's early work.
#[derive(Debug)]
pub(crate) struct Job {
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    version: PayloadVersion,
    builds: Vec<(Arc<Builder>, Arc<BuildSlot>)>,
}

/// The receiving end of the queue, for [`run`].
#[derive(Debug)]
pub struct Jobs(mpsc::Receiver<Job>);

impl Prevalidation {
    /// Early work `lead` before each slot's end.
    pub fn new(lead: Duration, metrics: Arc<Metrics>) -> (Self, Jobs) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let p = Self {
            tx,
            lead,
            version: AtomicU8::new(0),
            metrics,
        };
        (p, Jobs(rx))
    }

    /// Remembers the getPayload version op-node uses.
    pub fn saw_version(&self, version: PayloadVersion) {
        let v = match version {
            PayloadVersion::V3 => 3,
            PayloadVersion::V4 => 4,
            PayloadVersion::V5 => 5,
        };
        if self.version.load(Ordering::Relaxed) != v {
            self.version.store(v, Ordering::Relaxed);
        }
    }

    fn version(&self) -> Option<PayloadVersion> {
        match self.version.load(Ordering::Relaxed) {
            3 => Some(PayloadVersion::V3),
            4 => Some(PayloadVersion::V4),
            5 => Some(PayloadVersion::V5),
            _ => None,
        }
    }

    /// Schedules the early work for the builds one FCU with attributes started. A slot that
    /// already ended (op-node catching up: its getPayload follows at once) gets none; one with
    /// less than the lead left starts now.
    pub fn schedule(&self, builds: &[(Arc<Builder>, Arc<BuildSlot>)]) {
        let Some((_, slot)) = builds.first() else {
            return;
        };
        let Some(version) = self.version() else {
            // The first block after a start: which getPayload op-node will send is unknown.
            self.metrics.prevalidation_skipped("version_unknown");
            return;
        };
        let end =
            UNIX_EPOCH + Duration::from_secs(slot.request.attributes.payload_attributes.timestamp);
        let Ok(left) = end.duration_since(SystemTime::now()) else {
            self.metrics.prevalidation_skipped("late");
            return;
        };
        let now = tokio::time::Instant::now();
        let job = Job {
            start: now + left.saturating_sub(self.lead).max(AFTER_FCU),
            end: now + left,
            version,
            builds: builds.to_vec(),
        };
        if self.tx.try_send(job).is_err() {
            self.metrics.prevalidation_skipped("queue_full");
        }
    }
}

/// What the early work needs besides the jobs.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    /// The local EL that validates.
    pub local: Arc<LocalEl>,
    /// How the builders' blocks are ranked.
    pub policy: BuilderPolicy,
    /// How long to wait for other builders' blocks after the first arrived.
    pub grace: Duration,
    /// The instance's metrics.
    pub metrics: Arc<Metrics>,
}

/// Runs every build's early work until `shutdown`.
pub(crate) async fn run(mut jobs: Jobs, cx: Context, mut shutdown: watch::Receiver<bool>) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            job = jobs.0.recv() => match job {
                Some(job) if running.len() < MAX_RUNNING => running.push(prevalidate(job, &cx)),
                Some(_) => cx.metrics.prevalidation_skipped("queue_full"),
                None => return,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// At the job's start: every builder's block fetched, the best validated.
async fn prevalidate(job: Job, cx: &Context) {
    // A start already due runs at once (a timer would round it up to the next millisecond).
    if job.start > tokio::time::Instant::now() {
        tokio::time::sleep_until(job.start).await;
    }
    let (version, end) = (job.version, job.end);
    let mut fetches: FuturesUnordered<_> = job
        .builds
        .iter()
        .enumerate()
        .map(|(i, (b, slot))| async move { (i, b.fetch_early(version, slot, end).await) })
        .collect();
    // With flashblocks only the elected builder's block may carry what was preconfirmed, and
    // only it is validated: no grace for the others then. Each fetch waits for its builder's
    // FCU answer until the slot's end and then gets its builder's timeout: the wait is never
    // longer than the slowest of them could take.
    let elected = job.builds.iter().position(|(_, s)| s.elected);
    let slowest = job.builds.iter().map(|(b, _)| b.timeout()).max();
    let wait = Wait {
        elected,
        grace: if elected.is_some() {
            Duration::ZERO
        } else {
            cx.grace
        },
        deadline: end + slowest.unwrap_or_default(),
    };
    let mut got: Vec<(usize, Arc<EarlyBlock>)> = gather(&mut fetches, wait, Option::is_some)
        .await
        .into_iter()
        .filter_map(|(i, block)| Some((i, block?)))
        .collect();
    got.sort_by_key(|(i, _)| *i);
    let pick = match elected {
        Some(e) => got.iter().position(|(i, _)| *i == e),
        None => {
            let keys: Vec<_> = got
                .iter()
                .map(|(i, b)| RankKey {
                    priority: job.builds[*i].0.priority(),
                    block: Some(&b.envelope),
                    preconfirmed: false,
                })
                .collect();
            cx.policy.order(&keys).first().copied()
        }
    };
    let validation = async {
        let Some(p) = pick else {
            let late = job.builds.iter().any(|(_, s)| s.early.state().closed);
            cx.metrics
                .prevalidation_skipped(if late { "late" } else { "no_block" });
            return;
        };
        let (builder, slot) = &job.builds[got[p].0];
        let Some(block) = slot.early.begin_validation() else {
            cx.metrics.prevalidation_skipped("late");
            return;
        };
        let outcome = match check_attributes(builder.name(), &slot.request, &block.envelope) {
            Err(reason) => Err(reason),
            Ok(()) => {
                let deadline = tokio::time::Instant::now() + cx.local.timeout();
                cx.local
                    .validate(version, &block.raw, &block.envelope, deadline)
                    .await
            }
        };
        slot.early.validated(outcome);
        tracing::debug!(builder = builder.name(), hash = %block.envelope.block_hash(), ?outcome, "builder's block validated before op-node asked");
        builder.metrics().prevalidation(match outcome {
            Ok(()) => "valid",
            Err(reason) => reason.as_str(),
        });
    };
    // Blocks still coming in are kept for getPayload: their builders' builds have ended.
    let drain = async { while fetches.next().await.is_some() {} };
    tokio::join!(validation, drain);
}
