//! One builder, owned by one handle: its client, ordered call queue, payload-id map,
//! transaction copies, catch-up, health evidence and flashblocks. The multiplexer holds
//! builders and never reaches into their parts, so one builder and several are the same code.

pub mod catch_up;
pub mod copies;
pub mod payload_ids;
pub mod queue;
pub mod recent;

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use alloy_rpc_types_engine::ForkchoiceState;
use bytes::Bytes;
use engine_api::{
    PayloadEnvelope, PayloadId, PayloadVersion, Upstream, UpstreamError, flashblocks::assemble,
};
use http::HeaderMap;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use tokio::{sync::watch, task::JoinHandle};

use self::{
    copies::{CopyQueue, CopyQueueRx},
    payload_ids::{BuildSlot, BuilderFcu, PayloadIds},
    queue::{BuilderCall, BuilderQueue, BuilderQueueRx, is_unreachable},
    recent::RecentPayloads,
};
use crate::{
    calls,
    config::Config,
    evidence::BuilderHealth,
    execution_mode::{ExecutionMode, ModeCell},
    fallback::FallbackReason,
    flashblocks::store::FlashblocksStore,
    local::LocalEl,
    metrics::Metrics,
    payload_check::BuildRequest,
    selection::{Candidate, Candidates},
};

/// Depth of the transaction-copy queue.
const TX_COPY_QUEUE_DEPTH: usize = 4096;

/// Part of the getPayload budget kept for validating assembled flashblocks.
pub const FLASHBLOCKS_VALIDATION_RESERVE: Duration = Duration::from_millis(150);

/// One builder and everything that belongs to it.
pub struct Builder {
    upstream: Upstream,
    /// The local EL, for catch-up reads of blocks older than the recent window.
    local: Arc<LocalEl>,
    queue: BuilderQueue,
    ids: PayloadIds,
    copies: CopyQueue,
    recent: Option<RecentPayloads>,
    health: BuilderHealth,
    flashblocks: Option<Arc<FlashblocksStore>>,
    /// Builder head at which catch-up last gave up; `u64::MAX`: none.
    catch_up_abandoned_at: AtomicU64,
    ignore_unhealthy: bool,
    metrics: Arc<Metrics>,
    mode: Arc<ModeCell>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// The receiving ends of a builder's queues, handed to [`Builder::spawn`].
#[derive(Debug)]
pub struct BuilderTasks {
    queue: BuilderQueueRx,
    copies: CopyQueueRx,
}

impl Builder {
    /// The builder `config` describes; `flashblocks` is its store when flashblocks are on.
    pub fn new(
        config: &Config,
        local: Arc<LocalEl>,
        flashblocks: Option<Arc<FlashblocksStore>>,
        metrics: Arc<Metrics>,
        mode: Arc<ModeCell>,
    ) -> (Arc<Self>, BuilderTasks) {
        let (queue, queue_rx) = BuilderQueue::new(config.builder_queue_depth);
        let (copies, copies_rx) = CopyQueue::new(TX_COPY_QUEUE_DEPTH);
        let builder = Arc::new(Self {
            upstream: Upstream::new(config.builder.clone()),
            local,
            queue,
            ids: PayloadIds::new(config.payload_id_capacity),
            copies,
            recent: config
                .catch_up_depth
                .map(|depth| RecentPayloads::new(depth).with_run_budget(config.catch_up_budget)),
            health: BuilderHealth::default(),
            flashblocks,
            catch_up_abandoned_at: AtomicU64::new(u64::MAX),
            ignore_unhealthy: config.ignore_unhealthy_builders,
            metrics,
            mode,
        });
        let tasks = BuilderTasks {
            queue: queue_rx,
            copies: copies_rx,
        };
        (builder, tasks)
    }

    /// Starts the tasks draining this builder's queues, until `shutdown`.
    pub fn spawn(
        self: &Arc<Self>,
        tasks: BuilderTasks,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(queue::run(self.clone(), tasks.queue, shutdown.clone())),
            tokio::spawn(copies::run(self.clone(), tasks.copies, shutdown.clone())),
        ]
    }

    /// The builder's client.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Its health evidence.
    pub fn health(&self) -> &BuilderHealth {
        &self.health
    }

    /// Its flashblocks, when flashblocks are on.
    pub fn flashblocks(&self) -> Option<&Arc<FlashblocksStore>> {
        self.flashblocks.as_ref()
    }

    /// Payload ids held.
    pub fn payload_ids(&self) -> usize {
        self.ids.len()
    }

    /// Whether the builder may be called now (an unhealthy one is skipped when so configured).
    pub fn usable(&self) -> bool {
        !self.ignore_unhealthy || self.health.usable()
    }

    /// The configured per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.upstream.timeout()
    }

    /// A typed call, traced and timed.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: &(impl Serialize + ?Sized),
        timeout: Duration,
    ) -> Result<R, UpstreamError> {
        calls::call(&self.metrics, &self.upstream, method, params, timeout).await
    }

    /// Records a call error as health evidence when it means the builder is unreachable.
    pub fn note_error(&self, e: &UpstreamError) {
        if is_unreachable(e) || matches!(e, UpstreamError::Malformed { .. }) {
            self.health.failed();
        }
    }

    /// Publishes the gauges sampled at scrape time.
    pub fn report_gauges(&self) {
        self.metrics.queue_depth("builder", self.queue.depth());
        self.metrics.payload_ids(self.ids.len());
    }

    fn enqueue(&self, call: BuilderCall) {
        if let Err(call) = self.queue.push(call) {
            self.metrics.queue_dropped("builder", "full");
            tracing::warn!(
                "builder queue full; dropping a call (catch-up will replay missed blocks)"
            );
            if let BuilderCall::Build { slot, .. } = call {
                slot.settle(BuilderFcu::Unavailable(FallbackReason::Error), |_| {});
            }
        }
        self.metrics.queue_depth("builder", self.queue.depth());
    }

    /// Remembers op-node's forkchoice for catch-up.
    pub fn record_forkchoice(&self, state: ForkchoiceState) {
        if let Some(recent) = &self.recent {
            recent.record_forkchoice(state);
        }
    }

    /// Remembers a payload op-node sent, for catch-up.
    pub fn record_payload(&self, method: &'static str, params: &RawValue) {
        if let Some(recent) = &self.recent {
            let n = recent.record(method, params);
            self.metrics.recent_payloads(n);
        }
    }

    /// Asks the builder to build the block `request` describes (queued in op-node's order);
    /// the returned slot settles with its payload id or why there is none.
    pub fn build(&self, params: &RawValue, request: BuildRequest) -> Arc<BuildSlot> {
        let slot = BuildSlot::new(request);
        if self.usable() {
            self.enqueue(BuilderCall::Build {
                params: params.to_owned(),
                slot: slot.clone(),
            });
        } else {
            slot.settle(
                BuilderFcu::Unavailable(FallbackReason::SkippedUnhealthy),
                |_| {},
            );
        }
        slot
    }

    /// Maps op-node's payload id to the build `slot`.
    pub fn map_payload_id(&self, local: PayloadId, slot: Arc<BuildSlot>) {
        let n = self.ids.insert(local, slot);
        self.metrics.payload_ids(n);
    }

    /// Mirrors a call whose answer op-node does not wait for (boost sync), in order.
    pub fn mirror(&self, method: &'static str, params: &RawValue) {
        if self.usable() {
            self.enqueue(BuilderCall::Mirror {
                method,
                params: params.to_owned(),
            });
        }
    }

    /// Copies a transaction or miner request to the builder (bounded; dropped when full).
    pub fn copy(&self, headers: &HeaderMap, body: Bytes) {
        if !self.copies.push(headers.clone(), body) {
            self.metrics.queue_dropped("builder_tx_copies", "full");
        }
        self.metrics
            .queue_depth("builder_tx_copies", self.copies.depth());
    }

    /// Queues a catch-up (the probe saw the builder behind).
    pub fn catch_up_soon(&self) {
        if self.recent.is_some() && self.queue.push(BuilderCall::CatchUp).is_err() {
            self.metrics.queue_dropped("builder", "full");
        }
    }

    /// The blocks this builder offers for op-node's payload `local_id`, best first, each with
    /// the time by which its validation must be done; or why there are none.
    pub async fn candidates(
        &self,
        version: PayloadVersion,
        local_id: PayloadId,
        deadline: tokio::time::Instant,
    ) -> Result<Candidates, FallbackReason> {
        let Some(slot) = self.ids.get(&local_id) else {
            return Err(FallbackReason::NoBuilderPayload);
        };
        let builder_id = match slot.decide(deadline).await {
            BuilderFcu::Building(id) => id,
            BuilderFcu::Unavailable(reason) => return Err(reason),
        };
        let mut remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if self.flashblocks.is_some() {
            // Leave time to validate the assembled flashblocks if the builder never answers.
            remaining = remaining.saturating_sub(FLASHBLOCKS_VALIDATION_RESERVE);
        }
        let fetched = match self
            .call::<Box<RawValue>>(
                version.get_payload_method(),
                &(builder_id,),
                remaining.min(self.timeout()),
            )
            .await
        {
            Ok(raw) => match PayloadEnvelope::parse(version, &raw) {
                Ok(envelope) => Ok((raw, envelope)),
                Err(e) => {
                    tracing::warn!(error = %e, "builder getPayload answer is not a valid payload envelope");
                    Err(FallbackReason::Error)
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, %local_id, %builder_id, "builder getPayload failed");
                self.note_error(&e);
                Err(FallbackReason::from_upstream(&e))
            }
        };
        let request = slot.request.clone();
        match &self.flashblocks {
            Some(store) => {
                Ok(self.with_flashblocks(store, version, request, builder_id, fetched, deadline))
            }
            None => {
                let (raw, envelope) = fetched?;
                Ok(Candidates {
                    request,
                    list: vec![Candidate {
                        raw,
                        envelope,
                        path: None,
                        validate_by: deadline,
                    }],
                    preconfirmed: 0,
                    failure: FallbackReason::Error,
                })
            }
        }
    }

    /// With flashblocks on, what was preconfirmed must be in the proposed block. The builder's
    /// payload is a candidate when it carries every accepted flashblock's transactions, in
    /// order; the block the accepted flashblocks assemble to is the next (or the only one,
    /// when the builder dropped preconfirmed transactions or did not deliver its payload).
    fn with_flashblocks(
        &self,
        store: &FlashblocksStore,
        version: PayloadVersion,
        request: BuildRequest,
        builder_id: PayloadId,
        fetched: Result<(Box<RawValue>, PayloadEnvelope), FallbackReason>,
        deadline: tokio::time::Instant,
    ) -> Candidates {
        let missing = store.missing(&builder_id);
        let accepted = store.close(&builder_id);
        self.metrics.flashblocks_per_block(accepted.len(), missing);
        // Re-published (promised to users) only in enabled mode; dry_run promises nothing.
        let preconfirmed = if self.mode.get() == ExecutionMode::Enabled {
            accepted.len()
        } else {
            0
        };
        let carried = accepted.iter().flat_map(|fb| fb.diff.transactions.iter());
        let assembled_hash = accepted.last().map(|fb| fb.diff.block_hash);
        let mut list = Vec::new();
        let (path, failure) = match fetched {
            Ok((raw, envelope))
                if envelope.transactions().len() >= carried.clone().count()
                    && carried.zip(envelope.transactions()).all(|(a, b)| a == b) =>
            {
                let same_block = assembled_hash.is_none_or(|h| h == envelope.block_hash());
                // Keep time to validate the flashblocks if this block fails and differs from them.
                let validate_by = if same_block {
                    deadline
                } else {
                    deadline
                        - FLASHBLOCKS_VALIDATION_RESERVE
                            .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
                };
                list.push(Candidate {
                    raw,
                    envelope,
                    path: Some("builder_payload"),
                    validate_by,
                });
                if same_block {
                    return Candidates {
                        request,
                        list,
                        preconfirmed,
                        failure: FallbackReason::Error,
                    };
                }
                // The builder's final block may still fail where what it preconfirmed is valid.
                ("assembled", FallbackReason::Error)
            }
            Ok((_, envelope)) => {
                tracing::warn!(
                    hash = %envelope.block_hash(),
                    flashblocks = accepted.len(),
                    "builder's block drops transactions it preconfirmed; proposing its flashblocks instead"
                );
                ("assembled", FallbackReason::Error)
            }
            Err(reason) => ("preserved", reason),
        };
        if !accepted.is_empty() {
            match assemble(&accepted, version)
                .map_err(|e| e.to_string())
                .and_then(|envelope| {
                    let raw = envelope.to_raw().map_err(|e| e.to_string())?;
                    Ok((raw, envelope))
                }) {
                Ok((raw, envelope)) => list.push(Candidate {
                    raw,
                    envelope,
                    path: Some(path),
                    validate_by: deadline,
                }),
                Err(e) => tracing::warn!(error = %e, "flashblocks do not form a block"),
            }
        }
        Candidates {
            request,
            list,
            preconfirmed,
            failure,
        }
    }
}
