//! The builder handle: the one owner of everything about one builder.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use engine_api::{PayloadId, Upstream, UpstreamError, flashblocks_p2p::Authorization};
use http::HeaderMap;
use parking_lot::Mutex;
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
    config::{BuilderConfig, Config, FlashblocksP2pConfig},
    execution_mode::ExecutionMode,
    execution_mode::ModeCell,
    flashblocks::store::FlashblocksStore,
    health::evidence::BuilderHealth,
    local::LocalEl,
    metrics::Metrics,
    select::{fallback::FallbackReason, payload_check::BuildRequest},
};

/// The version byte a builder is first assumed to stamp on its payload ids: reth-based builders
/// (op-rbuilder, the flashblocks P2P builder) derive theirs with reth's default engine message
/// version, 4, whatever the FCU's version; op-geth stamps the FCU's version, 3. Each build's
/// answer shows which one the builder uses ([`Builder::check_payload_id`]).
const ASSUMED_PAYLOAD_ID_VERSION: u8 = 4;

/// The payload id version bytes builders are known to stamp (op-geth's, reth's).
const PAYLOAD_ID_VERSIONS: [u8; 2] = [3, 4];

/// Depth of the transaction-copy queue.
const TX_COPY_QUEUE_DEPTH: usize = 4096;

/// Part of the getPayload budget kept for validating assembled flashblocks.
pub(crate) const FLASHBLOCKS_VALIDATION_RESERVE: Duration = Duration::from_millis(150);

/// One builder and everything that belongs to it.
pub struct Builder {
    /// Its configured name (the `builder` label of its metrics).
    pub(super) name: &'static str,
    /// Lower is preferred.
    pub(super) priority: u32,
    /// Switched by `debug_setBuilderEnabled`: a disabled builder is not asked to build and gets
    /// no transaction copies, but is still kept in sync (mirrored calls, probes, catch-up).
    pub(super) enabled: AtomicBool,
    /// Its part in the last block it was asked for (`proposed`, `not_chosen`, a fallback reason).
    pub(super) last_outcome: Mutex<super::BlockOutcome>,
    pub(super) upstream: Upstream,
    /// The local EL, for catch-up reads of blocks older than the recent window.
    pub(super) local: Arc<LocalEl>,
    pub(super) queue: BuilderQueue,
    pub(super) ids: PayloadIds,
    pub(super) copies: CopyQueue,
    /// op-node's recent payloads (one window shared by every builder).
    pub(super) recent: Option<Arc<RecentPayloads>>,
    pub(super) health: BuilderHealth,
    pub(super) flashblocks: Option<Arc<FlashblocksStore>>,
    /// Builder head at which catch-up last gave up; `u64::MAX`: none.
    pub(super) catch_up_abandoned_at: AtomicU64,
    pub(super) ignore_unhealthy: bool,
    pub(super) metrics: Arc<Metrics>,
    pub(super) mode: Arc<ModeCell>,
    /// Flashblocks P2P: the key that authorizes this builder per block.
    pub(super) p2p: Option<FlashblocksP2pConfig>,
    /// The version byte this builder stamps on the payload ids it derives, as its answers show.
    pub(super) payload_id_version: AtomicU8,
    /// Its last proposed block next to the local block (builder accountability).
    pub(super) recent_comparison: crate::comparison::Recent,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
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
    /// The builder `b` describes (within the instance `config`); `flashblocks` is its store
    /// when it streams flashblocks, `recent` op-node's payloads kept for catch-up, and
    /// `metrics` the instance's (this builder records through a view labelled with its name).
    pub fn new(
        config: &Config,
        b: &BuilderConfig,
        local: Arc<LocalEl>,
        flashblocks: Option<Arc<FlashblocksStore>>,
        recent: Option<Arc<RecentPayloads>>,
        metrics: &Metrics,
        mode: Arc<ModeCell>,
    ) -> (Arc<Self>, BuilderTasks) {
        let (queue, queue_rx) = BuilderQueue::new(config.builder_queue_depth);
        let (copies, copies_rx) = CopyQueue::new(TX_COPY_QUEUE_DEPTH);
        let metrics = Arc::new(metrics.for_builder(b.name));
        if flashblocks.is_some() {
            metrics.preconfirmed_not_sealed_init();
        }
        let builder = Arc::new(Self {
            name: b.name,
            priority: b.priority,
            enabled: AtomicBool::new(b.enabled),
            last_outcome: Mutex::new(super::BlockOutcome::None),
            upstream: Upstream::with_roots(b.upstream.clone(), &config.tls_roots),
            local,
            queue,
            ids: PayloadIds::new(config.payload_id_capacity),
            copies,
            recent,
            health: BuilderHealth::default(),
            flashblocks,
            catch_up_abandoned_at: AtomicU64::new(u64::MAX),
            ignore_unhealthy: config.ignore_unhealthy_builders,
            metrics,
            mode,
            p2p: config.flashblocks_p2p.clone(),
            payload_id_version: AtomicU8::new(ASSUMED_PAYLOAD_ID_VERSION),
            recent_comparison: Default::default(),
        });
        let tasks = BuilderTasks {
            queue: queue_rx,
            copies: copies_rx,
        };
        (builder, tasks)
    }

    /// Its configured name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its priority (lower is preferred).
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Whether it is enabled (`debug_setBuilderEnabled`).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Enables or disables it; takes effect on the next FCU. Returns the previous value.
    pub fn set_enabled(&self, enabled: bool) -> bool {
        self.enabled.swap(enabled, Ordering::Relaxed)
    }

    /// Its part in the last block it was asked for.
    pub fn last_outcome(&self) -> &'static str {
        self.last_outcome.lock().as_str()
    }

    /// Records its part in a block: the `engine_mux_builder_blocks_total` counter and
    /// `debug_getBuilders`' `last_outcome`.
    pub fn record_block_outcome(&self, outcome: super::BlockOutcome) {
        *self.last_outcome.lock() = outcome;
        self.metrics.builder_block(outcome.as_str());
    }

    /// Its last proposed block next to the local block for the same attributes.
    pub fn recent_comparison(&self) -> &crate::comparison::Recent {
        &self.recent_comparison
    }

    /// The metrics view labelled with its name.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
    /// A disabled builder is still usable: it is kept in sync, only not asked to build.
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

    /// Asks the builder to build the block `request` describes (queued in op-node's order);
    /// the returned slot settles with its payload id or why there is none. `elected`: this
    /// builder preconfirms the block (its flashblocks are re-published).
    pub fn build(&self, params: &RawValue, request: BuildRequest, elected: bool) -> Arc<BuildSlot> {
        let slot = BuildSlot::new(request, elected);
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
        let version = self.payload_id_version.load(Ordering::Relaxed);
        let payload_id = request
            .attributes
            .payload_id(&request.forkchoice.head_block_hash, version);
        Some(Authorization::sign(
            payload_id,
            request.attributes.payload_attributes.timestamp,
            &p2p.authorizer,
            p2p.builder_vk,
        ))
    }

    /// With flashblocks P2P: compares the payload id the builder answered for the build
    /// `request` with the one authorized for it (derived with the version byte this builder is
    /// taken to stamp). On a mismatch, counted and logged, the version byte its id was derived
    /// with is used from the next block on; an id derived with neither known byte is only
    /// counted and logged (its flashblocks cannot be authorized).
    pub fn check_payload_id(&self, request: &BuildRequest, answered: PayloadId) {
        if self.p2p.is_none() {
            return;
        }
        let head = &request.forkchoice.head_block_hash;
        let assumed = self.payload_id_version.load(Ordering::Relaxed);
        if request.attributes.payload_id(head, assumed) == answered {
            return;
        }
        self.metrics.flashblocks_p2p_payload_id_mismatch();
        match PAYLOAD_ID_VERSIONS
            .into_iter()
            .find(|&v| request.attributes.payload_id(head, v) == answered)
        {
            Some(version) => {
                tracing::warn!(
                    builder = self.name,
                    %answered,
                    assumed,
                    version,
                    "builder derives payload ids with another version byte; authorizing its ids with that one from the next block"
                );
                self.payload_id_version.store(version, Ordering::Relaxed);
            }
            None => tracing::warn!(
                builder = self.name,
                %answered,
                "builder's payload id is not derived from op-node's attributes as op-geth or reth derive it; flashblocks P2P cannot authorize its builds"
            ),
        }
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
pub(crate) fn is_unreachable(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Timeout { .. }
            | UpstreamError::Transport { .. }
            | UpstreamError::Status { .. }
    )
}
