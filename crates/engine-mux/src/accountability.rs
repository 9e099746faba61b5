//! Builder accountability: at getPayload engine-mux holds both the proposed builder block and the
//! local EL's block for the same attributes. After op-node has its answer, the two are compared:
//! the transactions the local block included that the builder's left out although it had the gas
//! room and they paid at least its lowest priority fee (possible censorship or neglect), and what
//! the builder's block adds over local building (gas used, transaction count).
//!
//! Off the hot path: one task drains a bounded queue; a full queue drops the comparison (counted).

use std::sync::Arc;

use engine_api::{PayloadEnvelope, PayloadVersion};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};

use crate::{builder::Builder, comparison::compare, metrics::Metrics};

/// Comparisons that may wait (one per proposed builder block).
const QUEUE_DEPTH: usize = 16;

/// Omitted transactions named in one log line at most.
const LOGGED_OMISSIONS: usize = 8;

/// One comparison to make.
struct Job {
    builder: Arc<Builder>,
    version: PayloadVersion,
    chosen: PayloadEnvelope,
    local: Box<RawValue>,
}

/// The scheduling side, held by the multiplexer.
#[derive(Clone, Debug)]
pub struct Accountability {
    tx: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("builder", &self.builder.name())
            .field("block", &self.chosen.block_number())
            .finish_non_exhaustive()
    }
}

/// The receiving end, for [`run`].
#[derive(Debug)]
pub struct Jobs(mpsc::Receiver<Job>);

impl Accountability {
    /// A queue and its receiving end.
    pub fn new(metrics: Arc<Metrics>) -> (Self, Jobs) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        (Self { tx, metrics }, Jobs(rx))
    }

    /// Queues the comparison of `chosen` (proposed, from `builder`) with the local EL's
    /// answer `local`; dropped (and counted) when the queue is full.
    pub fn schedule(
        &self,
        builder: Arc<Builder>,
        version: PayloadVersion,
        chosen: PayloadEnvelope,
        local: Box<RawValue>,
    ) {
        let job = Job {
            builder,
            version,
            chosen,
            local,
        };
        if self.tx.try_send(job).is_err() {
            self.metrics.queue_dropped("accountability", "full");
        }
    }
}

/// Compares every scheduled block until `shutdown`.
pub(crate) async fn run(mut jobs: Jobs, mut shutdown: watch::Receiver<bool>) {
    loop {
        let job = tokio::select! {
            job = jobs.0.recv() => match job { Some(job) => job, None => return },
            _ = shutdown.changed() => return,
        };
        let Ok(local) = PayloadEnvelope::parse(job.version, &job.local) else {
            continue;
        };
        let c = compare(&job.chosen, &local);
        let metrics = job.builder.metrics();
        metrics.builder_compared(c.omitted.len() as u64, c.gas_over_local, c.txs_over_local);
        if !c.omitted.is_empty() {
            // Info, not a warning: a transaction that reached the local EL after the builder
            // sealed counts too (no arrival time is known here); the rate per builder is the
            // signal, not one block.
            let named: Vec<String> = c
                .omitted
                .iter()
                .take(LOGGED_OMISSIONS)
                .map(ToString::to_string)
                .collect();
            tracing::info!(
                builder = job.builder.name(),
                block = c.block,
                omitted = c.omitted.len(),
                txs = ?named,
                "the builder's block left out transactions the local block included, with gas room and at least its lowest priority fee"
            );
        }
        job.builder.recent_comparison().set(c);
    }
}
