//! The multiplexer: the engine calls op-node makes, fanned out to the local EL and the
//! builder. The local EL's answer is always what op-node waits for; the builder can only add
//! a better block inside a deadline, and only after the local EL has validated it as VALID.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_rpc_types_engine::{
    ForkchoiceState, ForkchoiceUpdated, PayloadId, PayloadStatus, PayloadStatusEnum,
};
use bytes::Bytes;
use engine_api::{
    PayloadEnvelope, PayloadVersion, Upstream, UpstreamError, flashblocks::assemble, jsonrpc,
};
use http::{HeaderMap, Response};
use op_alloy_rpc_types_engine::OpPayloadAttributes;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::{
    builder_queue::{BuilderCall, BuilderQueue, is_unreachable},
    copy_queue::CopyQueue,
    error::MuxError,
    execution_mode::{ExecutionMode, ModeCell},
    flashblocks::store::FlashblocksStore,
    health::Health,
    metrics::{BlockSource, Metrics},
    payload_check::{self, BuildRequest},
    payload_ids::{BuildSlot, BuilderFcu, PayloadIds},
    recent_payloads::RecentPayloads,
    selection::SelectionPolicy,
};

pub use crate::fallback::FallbackReason;

/// Shared state of one engine-mux instance.
#[derive(Debug)]
pub struct MuxState {
    /// The local execution client.
    pub l2: Upstream,
    /// The builder.
    pub builder: Upstream,
    /// Current execution mode (shared with the flashblocks store).
    pub mode: Arc<ModeCell>,
    /// Health evidence.
    pub health: Health,
    /// local→builder payload ids.
    pub ids: PayloadIds,
    /// Recent payloads for catch-up (`None`: catch-up off).
    pub recent: Option<RecentPayloads>,
    /// Ordered engine calls for the builder.
    pub queue: BuilderQueue,
    /// Transaction copies for the builder.
    pub copies: CopyQueue,
    /// This instance's metrics.
    pub metrics: Arc<Metrics>,
    /// Block selection.
    pub selection: SelectionPolicy,
    /// Overall getPayload budget.
    pub get_payload_deadline: Duration,
    /// Skip an unhealthy builder.
    pub ignore_unhealthy: bool,
    /// Flashblocks accepted from the builder, when flashblocks are on.
    pub flashblocks: Option<Arc<FlashblocksStore>>,
    /// Builder head at which catch-up last gave up (beyond the window); `u64::MAX`: none.
    pub catch_up_abandoned_at: std::sync::atomic::AtomicU64,
}

/// Part of the getPayload budget kept for validating assembled flashblocks.
const FLASHBLOCKS_VALIDATION_RESERVE: Duration = Duration::from_millis(150);

/// A builder payload that is the block op-node asked for and that the local EL validated as VALID.
struct ValidBuilderPayload {
    raw: Box<RawValue>,
    envelope: PayloadEnvelope,
    /// Flashblocks of this block already shown to subscribers (0 without flashblocks).
    preconfirmed: usize,
}

fn json_response(body: Bytes) -> Response<Bytes> {
    let mut res = Response::new(body);
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// Error codes an EL answers while working as specified (the request, not the EL, is wrong).
fn is_spec_error(code: i32) -> bool {
    use engine_api::codes::*;
    matches!(
        code,
        UNKNOWN_PAYLOAD
            | INVALID_FORKCHOICE_STATE
            | INVALID_PAYLOAD_ATTRIBUTES
            | TOO_LARGE_REQUEST
            | UNSUPPORTED_FORK
            | INVALID_PARAMS
    )
}

impl MuxState {
    /// Whether the builder is to be left alone right now.
    pub fn skip_builder(&self) -> bool {
        self.ignore_unhealthy && !self.health.builder_usable()
    }

    /// Records a builder error as health evidence when it means the builder is unreachable.
    pub fn note_builder_error(&self, e: &UpstreamError) {
        if is_unreachable(e) || matches!(e, UpstreamError::Malformed { .. }) {
            self.health.builder_failed();
        }
    }

    /// A typed call to `upstream` (the builder or the local EL), traced and timed into the metrics.
    pub async fn call<R: DeserializeOwned>(
        &self,
        upstream: &Upstream,
        method: &'static str,
        params: &(impl Serialize + ?Sized),
        timeout: Duration,
    ) -> Result<R, UpstreamError> {
        timed(
            &self.metrics,
            upstream,
            method,
            upstream.call(method, &params, timeout),
        )
        .await
    }

    /// Forwards op-node's request body to the local EL unchanged, timed into the metrics.
    /// The raw proxy (`method` is [`Route::Proxy`]'s label) stays byte for byte, compression
    /// included; an engine call's answer, which engine-mux parses, is asked uncompressed and
    /// decoded if the EL compressed it anyway.
    ///
    /// [`Route::Proxy`]: crate::router::Route::Proxy
    pub async fn forward_l2(
        &self,
        method: &'static str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let started = Instant::now();
        let timeout = self.l2.timeout();
        let res = async {
            if method == crate::router::Route::Proxy.label() {
                self.l2.forward(headers, body, timeout).await
            } else {
                self.l2.forward_decoded(headers, body, timeout).await
            }
        }
        .instrument(tracing::info_span!("upstream", upstream = "l2", method))
        .await;
        let outcome = match &res {
            Ok(r) if r.status().is_success() => "ok",
            Ok(_) => "http",
            Err(e) => e.kind(),
        };
        self.metrics
            .upstream_call("l2", method, outcome, started.elapsed());
        res
    }

    /// Turns the local EL's answer to an engine call into op-node's response and health evidence.
    /// A spec error (-38001..-38005, invalid params) is the EL working as specified, not failing.
    fn local_answer<R: DeserializeOwned>(
        &self,
        id: Option<&RawValue>,
        res: Result<Response<Bytes>, UpstreamError>,
    ) -> (Response<Bytes>, Option<R>) {
        match res {
            Ok(res) => {
                let envelope = (res.status() == http::StatusCode::OK)
                    .then(|| serde_json::from_slice::<jsonrpc::ResponseEnvelope>(res.body()).ok())
                    .flatten();
                let parsed = envelope
                    .as_ref()
                    .and_then(|e| e.result.as_ref())
                    .and_then(|r| serde_json::from_str::<R>(r.get()).ok());
                let spec_error = envelope
                    .as_ref()
                    .and_then(|e| e.error.as_ref())
                    .is_some_and(|e| is_spec_error(e.code()));
                if parsed.is_some() || spec_error {
                    self.health.local_ok();
                } else {
                    tracing::error!(status = %res.status(), "local execution client answered an engine call with an error");
                    self.health.local_failed();
                }
                (res, parsed)
            }
            Err(e) => {
                tracing::error!(error = %e, "local execution client failed an engine call");
                self.health.local_failed();
                (
                    json_response(jsonrpc::error_response(
                        id,
                        &MuxError::Upstream(e).to_error_object(),
                    )),
                    None,
                )
            }
        }
    }

    fn enqueue_builder(&self, call: BuilderCall) {
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

    /// `engine_forkchoiceUpdatedV3`: the local EL answers; the builder is told in the background.
    pub async fn forkchoice_updated(
        &self,
        id: Option<&RawValue>,
        params: Option<&RawValue>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        let mode = self.mode.get();
        let parsed = params.and_then(|p| {
            serde_json::from_str::<(ForkchoiceState, Option<OpPayloadAttributes>)>(p.get())
                .or_else(|_| {
                    serde_json::from_str::<(ForkchoiceState,)>(p.get()).map(|(s,)| (s, None))
                })
                .ok()
        });
        let mut build_slot = None;
        if let (Some((state, attrs)), Some(params)) = (&parsed, params) {
            if let Some(recent) = &self.recent {
                recent.record_forkchoice(*state);
            }
            let build = attrs.as_ref().filter(|a| a.no_tx_pool != Some(true));
            if mode.talks_to_builder() {
                // Queued before the local call so the builder starts building in parallel.
                if let Some(attrs) = build {
                    let slot = BuildSlot::new(BuildRequest {
                        head: state.head_block_hash,
                        attributes: attrs.clone(),
                    });
                    if self.skip_builder() {
                        slot.settle(
                            BuilderFcu::Unavailable(FallbackReason::SkippedUnhealthy),
                            |_| {},
                        );
                    } else {
                        self.enqueue_builder(BuilderCall::Build {
                            params: params.to_owned(),
                            slot: slot.clone(),
                        });
                    }
                    build_slot = Some(slot);
                } else if !self.skip_builder() {
                    self.enqueue_builder(BuilderCall::Mirror {
                        method: "engine_forkchoiceUpdatedV3",
                        params: params.to_owned(),
                    });
                }
            }
        }
        let res = self
            .forward_l2("engine_forkchoiceUpdatedV3", headers, body)
            .await;
        let (res, fcu) = self.local_answer::<ForkchoiceUpdated>(id, res);
        if let (Some(fcu), Some(slot)) = (fcu, build_slot)
            && let Some(local_id) = fcu.payload_id
        {
            let n = self.ids.insert(local_id, slot);
            self.metrics.payload_ids(n);
        }
        res
    }

    /// `engine_newPayloadV3/V4`: the local EL answers; the builder gets a mirrored copy.
    pub async fn new_payload(
        &self,
        method: &'static str,
        id: Option<&RawValue>,
        params: Option<&RawValue>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        if let Some(params) = params {
            if let Some(recent) = &self.recent {
                let n = recent.record(method, params);
                self.metrics.recent_payloads(n);
            }
            if self.mode.get().talks_to_builder() && !self.skip_builder() {
                self.enqueue_builder(BuilderCall::Mirror {
                    method,
                    params: params.to_owned(),
                });
            }
        }
        let res = self.forward_l2(method, headers, body).await;
        self.local_answer::<PayloadStatus>(id, res).0
    }

    /// `engine_getPayloadV3/V4/V5`: local and builder in parallel, both inside one deadline.
    /// The builder's block is used only when it is the block op-node asked for, the local EL
    /// validated it VALID, the policy agrees and the mode is enabled; op-node gets the best
    /// block that is VALID by the deadline, and an error only when there is none.
    pub async fn get_payload(
        &self,
        version: PayloadVersion,
        id: Option<&RawValue>,
        params: Option<&RawValue>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.get_payload_deadline;
        let mode = self.mode.get();
        let local_id = params
            .and_then(|p| serde_json::from_str::<(PayloadId,)>(p.get()).ok())
            .map(|(id,)| id);
        let builder = async {
            match local_id {
                Some(local_id) if mode.talks_to_builder() => {
                    Some(self.builder_payload(version, local_id, deadline).await)
                }
                _ => None,
            }
        };
        let local = async {
            let method = version.get_payload_method();
            tokio::time::timeout_at(deadline, self.forward_l2(method, headers, body))
                .await
                .unwrap_or(Err(UpstreamError::Timeout {
                    upstream: self.l2.name(),
                    after: self.get_payload_deadline,
                }))
        };
        let (local, builder) = tokio::join!(local, builder);
        let (local_res, local_payload) = self.local_answer::<Box<RawValue>>(id, local);
        if let Some(outcome) = &builder {
            // Every builder outcome is health evidence; only a good block clears a bad one.
            match outcome {
                Ok(_) => self.health.builder_payload(true),
                Err(reason) if reason.blames_builder() => self.health.builder_payload(false),
                Err(_) => {}
            }
        }

        let response = match builder {
            None => {
                self.metrics.block_proposed(BlockSource::Local);
                local_res
            }
            Some(Err(reason)) => {
                self.metrics.fallback(reason);
                self.metrics.block_proposed(BlockSource::Local);
                local_res
            }
            Some(Ok(valid)) => {
                let wins = self.builder_wins(version, &valid, local_payload.as_deref());
                if !wins {
                    self.metrics.fallback(FallbackReason::Policy);
                }
                if wins && mode == ExecutionMode::Enabled {
                    tracing::info!(
                        block = valid.envelope.block_number(),
                        hash = %valid.envelope.block_hash(),
                        txs = valid.envelope.tx_count(),
                        gas_used = valid.envelope.gas_used(),
                        "proposing the builder's block"
                    );
                    self.metrics.block_proposed(BlockSource::Builder);
                    json_response(jsonrpc::ok_response(id, &valid.raw))
                } else {
                    self.metrics.block_proposed(BlockSource::Local);
                    local_res
                }
            }
        };
        self.metrics.get_payload_total(started.elapsed());
        response
    }

    /// Whether a valid builder block beats the local one. Preconfirmed flashblocks were
    /// promised to users: their block is never traded for a local block that drops them.
    fn builder_wins(
        &self,
        version: PayloadVersion,
        valid: &ValidBuilderPayload,
        local: Option<&RawValue>,
    ) -> bool {
        if valid.preconfirmed > 0 {
            return true;
        }
        match (self.selection, local) {
            (SelectionPolicy::AlwaysBuilder, _) => true,
            // Only a gas policy needs the local payload typed; parse it only then.
            (policy, Some(raw)) => match PayloadEnvelope::parse(version, raw) {
                Ok(local) => policy.builder_wins(valid.envelope.gas_used(), local.gas_used()),
                Err(_) => true,
            },
            // The local EL failed getPayload: a builder block it validated is better than none.
            (_, None) => true,
        }
    }

    /// The builder's payload for `local_id`, checked against op-node's attributes and
    /// validated on the local EL, within `deadline`.
    async fn builder_payload(
        &self,
        version: PayloadVersion,
        local_id: PayloadId,
        deadline: tokio::time::Instant,
    ) -> Result<ValidBuilderPayload, FallbackReason> {
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
                &self.builder,
                version.get_payload_method(),
                &(builder_id,),
                remaining.min(self.builder.timeout()),
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
                self.note_builder_error(&e);
                Err(FallbackReason::from_upstream(&e))
            }
        };
        match (&self.flashblocks, fetched) {
            (Some(store), fetched) => {
                self.with_flashblocks(store, version, &slot.request, builder_id, fetched, deadline)
                    .await
            }
            (None, Ok((raw, envelope))) => {
                self.check_and_validate(version, &slot.request, &envelope, deadline)
                    .await?;
                Ok(ValidBuilderPayload {
                    raw,
                    envelope,
                    preconfirmed: 0,
                })
            }
            (None, Err(reason)) => Err(reason),
        }
    }

    /// With flashblocks on, what was preconfirmed must be in the proposed block. The builder's
    /// payload is used when it carries every accepted flashblock's transactions, in order;
    /// otherwise, or when the builder did not deliver it, the block is assembled from the
    /// accepted flashblocks, so nothing users were shown disappears.
    async fn with_flashblocks(
        &self,
        store: &FlashblocksStore,
        version: PayloadVersion,
        request: &BuildRequest,
        builder_id: PayloadId,
        fetched: Result<(Box<RawValue>, PayloadEnvelope), FallbackReason>,
        deadline: tokio::time::Instant,
    ) -> Result<ValidBuilderPayload, FallbackReason> {
        let missing = store.missing(&builder_id);
        let accepted = store.close(&builder_id);
        self.metrics.flashblocks_per_block(accepted.len(), missing);
        // Published only in enabled mode (see the store); dry_run promises nothing.
        let preconfirmed = if self.mode.get() == ExecutionMode::Enabled {
            accepted.len()
        } else {
            0
        };
        let carried = accepted.iter().flat_map(|fb| fb.diff.transactions.iter());
        let assembled_hash = accepted.last().map(|fb| fb.diff.block_hash);
        let mut rejected_hash = None;
        let (path, fetch_failure) = match fetched {
            Ok((raw, envelope))
                if envelope.transactions().len() >= carried.clone().count()
                    && carried.zip(envelope.transactions()).all(|(a, b)| a == b) =>
            {
                // Keep time to validate the flashblocks if this block fails and differs from them.
                let own_deadline = match assembled_hash {
                    Some(h) if h != envelope.block_hash() => {
                        deadline
                            - FLASHBLOCKS_VALIDATION_RESERVE.min(
                                deadline.saturating_duration_since(tokio::time::Instant::now()),
                            )
                    }
                    _ => deadline,
                };
                match self
                    .check_and_validate(version, request, &envelope, own_deadline)
                    .await
                {
                    Ok(()) => {
                        self.metrics.flashblocks_block("builder_payload");
                        return Ok(ValidBuilderPayload {
                            raw,
                            envelope,
                            preconfirmed,
                        });
                    }
                    // The builder's final block is bad, but what it preconfirmed may still
                    // form a valid block: try that before giving the slot to the local block.
                    Err(reason) => {
                        rejected_hash = Some(envelope.block_hash());
                        ("assembled", reason)
                    }
                }
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
        if accepted.is_empty() {
            return Err(fetch_failure);
        }
        let assembled = async {
            let envelope = assemble(&accepted, version).map_err(|e| {
                tracing::warn!(error = %e, "flashblocks do not form a block");
                fetch_failure
            })?;
            if rejected_hash == Some(envelope.block_hash()) {
                // The flashblocks are the very block the local EL just rejected.
                return Err(fetch_failure);
            }
            let raw = envelope.to_raw().map_err(|_| FallbackReason::Error)?;
            self.check_and_validate(version, request, &envelope, deadline)
                .await?;
            Ok((raw, envelope))
        };
        match assembled.await {
            Ok((raw, envelope)) => {
                tracing::info!(
                    block = envelope.block_number(),
                    flashblocks = accepted.len(),
                    path,
                    "proposing the block assembled from flashblocks"
                );
                self.metrics.flashblocks_block(path);
                Ok(ValidBuilderPayload {
                    raw,
                    envelope,
                    preconfirmed,
                })
            }
            Err(reason) => {
                if preconfirmed > 0 {
                    // Nothing valid carries them: the local block is proposed and users who
                    // were shown these flashblocks will not find them in the chain.
                    tracing::error!(
                        flashblocks = preconfirmed,
                        reason = reason.as_str(),
                        "preconfirmed flashblocks form no valid block; they are lost from this block"
                    );
                    self.metrics.flashblocks_block("lost");
                }
                Err(reason)
            }
        }
    }

    /// Checks `envelope` against the block op-node asked for, then validates it on the local EL.
    async fn check_and_validate(
        &self,
        version: PayloadVersion,
        request: &BuildRequest,
        envelope: &PayloadEnvelope,
        deadline: tokio::time::Instant,
    ) -> Result<(), FallbackReason> {
        if let Err(mismatch) = payload_check::check(request, envelope) {
            tracing::warn!(
                block = envelope.block_number(),
                hash = %envelope.block_hash(),
                field = mismatch.field,
                %mismatch,
                "builder's block is not the block op-node asked for"
            );
            return Err(FallbackReason::AttributesMismatch);
        }
        self.validate_on_l2(version, envelope, deadline).await
    }

    /// `engine_newPayload` of the builder's block on the local EL: only VALID is valid.
    async fn validate_on_l2(
        &self,
        version: PayloadVersion,
        envelope: &PayloadEnvelope,
        deadline: tokio::time::Instant,
    ) -> Result<(), FallbackReason> {
        let params = envelope
            .new_payload_params()
            .map_err(|_| FallbackReason::Error)?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let status: PayloadStatus = match self
            .call(
                &self.l2,
                version.new_payload_method(),
                &params,
                remaining.min(self.l2.timeout()),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, hash = %envelope.block_hash(), "validating the builder's block on the local EL failed");
                return Err(FallbackReason::from_upstream(&e));
            }
        };
        match status.status {
            PayloadStatusEnum::Valid => Ok(()),
            PayloadStatusEnum::Invalid { validation_error } => {
                tracing::warn!(hash = %envelope.block_hash(), block = envelope.block_number(), %validation_error, "local EL rejected the builder's block as INVALID");
                Err(FallbackReason::Invalid)
            }
            PayloadStatusEnum::Syncing | PayloadStatusEnum::Accepted => {
                tracing::warn!(hash = %envelope.block_hash(), status = %status.status, "local EL could not validate the builder's block");
                Err(FallbackReason::Syncing)
            }
        }
    }
}

async fn timed<R>(
    metrics: &Metrics,
    upstream: &Upstream,
    method: &'static str,
    fut: impl Future<Output = Result<R, UpstreamError>>,
) -> Result<R, UpstreamError> {
    let started = Instant::now();
    let res = fut
        .instrument(tracing::info_span!(
            "upstream",
            upstream = upstream.name(),
            method
        ))
        .await;
    let outcome = match &res {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics.upstream_call(upstream.name(), method, outcome, started.elapsed());
    res
}
