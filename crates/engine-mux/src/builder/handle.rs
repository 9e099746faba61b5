//! The builder handle: the one owner of everything about one builder.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use alloy_rpc_types_engine::ForkchoiceState;
use bytes::Bytes;
use engine_api::{PayloadId, Upstream, UpstreamError, flashblocks_p2p::Authorization};
use http::HeaderMap;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use super::{
    copies::{CopyQueue, CopyQueueRx},
    payload_ids::{BuildSlot, BuilderFcu, PayloadIds},
    queue::{BuilderCall, BuilderQueue, BuilderQueueRx},
    recent::RecentPayloads,
};
use crate::{
    calls,
    config::{Config, FlashblocksP2pConfig},
    evidence::BuilderHealth,
    execution_mode::ExecutionMode,
    execution_mode::ModeCell,
    fallback::FallbackReason,
    flashblocks::store::FlashblocksStore,
    local::LocalEl,
    metrics::Metrics,
    payload_check::BuildRequest,
};

/// The version byte of the payload id an FCUv3 build gets (op-geth's and op-rbuilder's).
const BUILDER_PAYLOAD_ID_VERSION: u8 = 3;

/// Depth of the transaction-copy queue.
const TX_COPY_QUEUE_DEPTH: usize = 4096;

/// Part of the getPayload budget kept for validating assembled flashblocks.
pub const FLASHBLOCKS_VALIDATION_RESERVE: Duration = Duration::from_millis(150);

/// One builder and everything that belongs to it.
pub struct Builder {
    pub(super) upstream: Upstream,
    /// The local EL, for catch-up reads of blocks older than the recent window.
    pub(super) local: Arc<LocalEl>,
    pub(super) queue: BuilderQueue,
    pub(super) ids: PayloadIds,
    pub(super) copies: CopyQueue,
    pub(super) recent: Option<RecentPayloads>,
    pub(super) health: BuilderHealth,
    pub(super) flashblocks: Option<Arc<FlashblocksStore>>,
    /// Builder head at which catch-up last gave up; `u64::MAX`: none.
    pub(super) catch_up_abandoned_at: AtomicU64,
    pub(super) ignore_unhealthy: bool,
    pub(super) metrics: Arc<Metrics>,
    pub(super) mode: Arc<ModeCell>,
    /// Flashblocks P2P: the key that authorizes this builder per block.
    pub(super) p2p: Option<FlashblocksP2pConfig>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// The receiving ends of a builder's queues, handed to [`super::spawn`].
#[derive(Debug)]
pub struct BuilderTasks {
    pub(super) queue: BuilderQueueRx,
    pub(super) copies: CopyQueueRx,
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
            p2p: config.flashblocks_p2p.clone(),
        });
        let tasks = BuilderTasks {
            queue: queue_rx,
            copies: copies_rx,
        };
        (builder, tasks)
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

    /// A call whose result is kept as the builder sent it (a payload envelope: read once).
    pub async fn call_raw(
        &self,
        method: &'static str,
        params: &(impl Serialize + ?Sized),
        timeout: Duration,
    ) -> Result<Box<RawValue>, UpstreamError> {
        calls::call_raw(&self.metrics, &self.upstream, method, params, timeout).await
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

    /// With flashblocks P2P in `enabled` mode: the authorization for the builder to publish the
    /// flashblocks of the block `request` asks for (its payload id as the builder derives it
    /// from op-node's head and attributes, the attributes' timestamp). `None` otherwise: the
    /// builder gets a plain FCU and stops publishing.
    pub fn authorization(&self, request: &BuildRequest) -> Option<Authorization> {
        let p2p = self.p2p.as_ref()?;
        if self.mode.get() != ExecutionMode::Enabled {
            return None;
        }
        let payload_id = request.attributes.payload_id(
            &request.forkchoice.head_block_hash,
            BUILDER_PAYLOAD_ID_VERSION,
        );
        Some(Authorization::sign(
            payload_id,
            request.attributes.payload_attributes.timestamp,
            &p2p.authorizer,
            p2p.builder_vk,
        ))
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
}

/// True when an error means the builder could not be reached or did not answer in time.
pub fn is_unreachable(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Timeout { .. }
            | UpstreamError::Transport { .. }
            | UpstreamError::Status { .. }
    )
}
