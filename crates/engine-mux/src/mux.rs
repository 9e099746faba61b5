//! The multiplexer: the engine calls op-node makes, fanned out to the local EL and the
//! builders. The local EL's answer is always what op-node waits for; a builder can only add
//! a better block inside a deadline, and only one that is the block op-node asked for and
//! that the local EL validated as VALID.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_rpc_types_engine::{ForkchoiceState, ForkchoiceUpdated, PayloadId, PayloadStatus};
use bytes::Bytes;
use engine_api::{PayloadVersion, UpstreamError, jsonrpc};
use http::{HeaderMap, Response};
use op_alloy_rpc_types_engine::OpPayloadAttributes;
use serde_json::value::RawValue;

use crate::{
    builder::{BlockOutcome, outcome::record_verdict, set::Builders},
    execution_mode::{ExecutionMode, ModeCell},
    local::LocalEl,
    local_engine::json_response,
    metrics::{BlockSource, Metrics},
    select::{
        self, SelectionPolicy, Verdict, fallback::FallbackReason, payload_check::BuildRequest,
    },
};

/// One engine-mux instance's engine-call handling.
#[derive(Debug)]
pub struct Mux {
    /// The local execution client.
    pub local: Arc<LocalEl>,
    /// The builders, in priority order.
    pub builders: Arc<Builders>,
    /// Current execution mode (shared with the flashblocks store and the debug API).
    pub mode: Arc<ModeCell>,
    /// This instance's metrics.
    pub metrics: Arc<Metrics>,
    selection: SelectionPolicy,
    get_payload_deadline: Duration,
    external_state_root: bool,
    /// failover carry-over: peers' preconfirmations carried over; `None` without peers.
    pub failover: Option<Arc<crate::failover::Failover>>,
    /// Builder accountability: each proposed builder block compared with the local block.
    accountability: Option<crate::accountability::Accountability>,
}

impl Mux {
    /// A multiplexer over `local` and `builders`.
    pub fn new(
        local: Arc<LocalEl>,
        builders: Arc<Builders>,
        mode: Arc<ModeCell>,
        metrics: Arc<Metrics>,
        selection: SelectionPolicy,
        get_payload_deadline: Duration,
        external_state_root: bool,
    ) -> Self {
        Self {
            local,
            builders,
            mode,
            metrics,
            selection,
            get_payload_deadline,
            external_state_root,
            failover: None, // failover carry-over
            accountability: None,
        }
    }

    /// Compares every proposed builder block with the local block, after op-node's answer.
    pub fn with_accountability(
        mut self,
        accountability: crate::accountability::Accountability,
    ) -> Self {
        self.accountability = Some(accountability);
        self
    }

    /// failover carry-over: carries peers' preconfirmations into the blocks op-node asks for.
    pub fn with_failover(mut self, failover: Option<Arc<crate::failover::Failover>>) -> Self {
        self.failover = failover;
        self
    }

    /// `engine_forkchoiceUpdatedV3`: the local EL answers; the builders are told in the
    /// background.
    pub async fn forkchoice_updated(
        &self,
        id: Option<&RawValue>,
        params: Option<&RawValue>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        // failover carry-over: op-node's attributes with a dead peer's preconfirmed
        // transactions forced first, retried without what the local EL refuses; op-node's own
        // request when nothing can be carried.
        let carry = match &self.failover {
            Some(f) => f.begin(params).await,
            None => None,
        };
        let Some(mut carry) = carry else {
            return self
                .forkchoice_updated_once(id, params, headers, body)
                .await;
        };
        while let Some((p, b)) = carry.next_attempt(&body) {
            let res = self.forkchoice_updated_once(id, Some(&p), headers, b).await;
            if carry.accepted(&res) {
                return res;
            }
        }
        let res = self
            .forkchoice_updated_once(id, params, headers, body)
            .await;
        carry.give_up();
        res
    }

    /// One forkchoiceUpdated as given (op-node's, or the failover module's rewrite of it).
    async fn forkchoice_updated_once(
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
        let mut builds = None;
        if let (Some((state, attrs)), Some(params)) = (parsed, params) {
            self.builders.record_forkchoice(state);
            if mode.talks_to_builder() {
                // Queued before the local call so the builders start building in parallel.
                match attrs.filter(|a| a.no_tx_pool != Some(true)) {
                    Some(attributes) => {
                        let request = BuildRequest {
                            forkchoice: state,
                            attributes,
                        };
                        builds = Some(self.builders.build(params, &request));
                    }
                    None => self.builders.mirror("engine_forkchoiceUpdatedV3", params),
                }
            }
        }
        let res = self
            .local
            .forward_read(
                "engine_forkchoiceUpdatedV3",
                headers,
                body,
                self.local.timeout(),
            )
            .await;
        let (res, fcu) = self.local.answer::<ForkchoiceUpdated>(id, res);
        if let (Some(fcu), Some(builds)) = (fcu, builds)
            && let Some(local_id) = fcu.payload_id
        {
            self.builders.map_payload_id(local_id, builds);
        }
        res
    }

    /// `engine_newPayloadV3/V4`: the local EL answers; the builders get a mirrored copy.
    pub async fn new_payload(
        &self,
        method: &'static str,
        id: Option<&RawValue>,
        params: Option<&RawValue>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Bytes> {
        // Remembering the payload for catch-up and copying it to the builders runs while the
        // local EL executes the block (the request is on its way by then), not before op-node's
        // call is forwarded. Recorded before it is mirrored: a catch-up the mirror triggers
        // must find it.
        let forward = self
            .local
            .forward_read(method, headers, body, self.local.timeout());
        let to_builders = async {
            tokio::task::yield_now().await;
            if let Some(params) = params {
                self.builders.record_payload(method, params);
                if self.mode.get().talks_to_builder() {
                    self.builders.mirror(method, params);
                }
            }
        };
        let (res, ()) = tokio::join!(forward, to_builders);
        self.local.answer::<PayloadStatus>(id, res).0
    }

    /// `engine_getPayloadV3/V4/V5`: local and builders in parallel, all inside one deadline.
    /// A builder's block is used only when it is the block op-node asked for, the local EL
    /// validated it VALID, the policy agrees and the mode is enabled; op-node gets the best
    /// block that is VALID by the deadline, and an error only when there is none. A block that
    /// was checked and validated before op-node asked (`--prevalidate-builder-payload`) is
    /// answered at once; the local EL still gets the call, in the background.
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
        // Decided before op-node asked: answered without a round trip.
        if mode == ExecutionMode::Enabled
            && self.selection == SelectionPolicy::AlwaysBuilder
            && !self.external_state_root
            && let Some(local_id) = local_id
            && let Some(decided) = self.builders.validated_early(version, local_id)
        {
            let response = self.answer_validated_early(version, id, headers, body, decided);
            self.metrics.get_payload_total(started.elapsed());
            return response;
        }
        let builders = async {
            match local_id {
                Some(local_id) if mode.talks_to_builder() => {
                    let offers = self.builders.offers(version, local_id, deadline).await;
                    Some(
                        select::select(
                            &self.local,
                            &self.metrics,
                            version,
                            self.builders.policy(),
                            offers,
                            self.external_state_root,
                        )
                        .await,
                    )
                }
                _ => None,
            }
        };
        let local = async {
            let method = version.get_payload_method();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let res = self
                .local
                .forward_read(method, headers, body, remaining)
                .await;
            // Read here, while the builders' blocks may still be validating.
            self.local.answer_raw(id, res)
        };
        let ((local_res, local_payload), selected) = tokio::join!(local, builders);
        let chosen = selected.map(|s| {
            self.record_verdicts(&s.verdicts);
            s.chosen
        });

        let response = match chosen {
            None => {
                self.metrics.block_proposed(BlockSource::Local);
                local_res
            }
            Some(Err(reason)) => {
                self.metrics.fallback(reason);
                self.metrics.block_proposed(BlockSource::Local);
                local_res
            }
            Some(Ok(chosen)) => {
                let wins =
                    self.selection
                        .prefers_builder(version, &chosen, local_payload.as_deref());
                if !wins {
                    self.metrics.fallback(FallbackReason::Policy);
                }
                let builder = self.builders.get(chosen.builder);
                if let Some(reason) = chosen
                    .rebuilt_after
                    .filter(|_| mode == ExecutionMode::Enabled)
                {
                    // The builder failed (its verdict says why); the block is the local EL's,
                    // built from what the builder preconfirmed.
                    self.metrics.fallback(reason);
                    self.metrics.block_proposed(BlockSource::Local);
                    json_response(jsonrpc::ok_response(id, &chosen.raw))
                } else if wins && mode == ExecutionMode::Enabled {
                    tracing::info!(
                        builder = chosen.builder,
                        block = chosen.envelope.block_number(),
                        hash = %chosen.envelope.block_hash(),
                        txs = chosen.envelope.tx_count(),
                        gas_used = chosen.envelope.gas_used(),
                        "proposing the builder's block"
                    );
                    if let Some(b) = builder {
                        b.record_block_outcome(BlockOutcome::Proposed);
                        if let (Some(a), Some(local)) = (&self.accountability, local_payload) {
                            a.schedule(b.clone(), version, chosen.envelope.clone(), local);
                        }
                    }
                    self.metrics.block_proposed(BlockSource::Builder);
                    json_response(jsonrpc::ok_response(id, &chosen.raw))
                } else {
                    if let Some(b) = builder {
                        b.record_block_outcome(if wins {
                            BlockOutcome::DryRun
                        } else {
                            BlockOutcome::Policy
                        });
                    }
                    self.metrics.block_proposed(BlockSource::Local);
                    local_res
                }
            }
        };
        self.metrics.get_payload_total(started.elapsed());
        if let Some(local_id) = local_id {
            // The deadline was set when op-node's call arrived.
            let asked_at = deadline - self.get_payload_deadline;
            crate::preconfirmations::after_get_payload(
                &self.builders,
                local_id,
                mode,
                asked_at,
                response.body(),
            );
        }
        response
    }

    /// op-node's block validated before it asked: answered at once. The local EL is still asked
    /// for its payload, in the background, so it stops building it (op-geth and reth otherwise
    /// keep improving it until their own timeout) and its answer stays health evidence; one
    /// such task per getPayload, bounded by the getPayload deadline.
    fn answer_validated_early(
        &self,
        version: PayloadVersion,
        id: Option<&RawValue>,
        headers: &HeaderMap,
        body: Bytes,
        decided: crate::builder::set::ValidatedEarly,
    ) -> Response<Bytes> {
        let local = Arc::clone(&self.local);
        let (headers, timeout) = (headers.clone(), self.get_payload_deadline);
        tokio::spawn(async move {
            let res = local
                .forward_read(version.get_payload_method(), &headers, body, timeout)
                .await;
            let _ = local.answer_raw(None, res);
        });
        self.record_verdicts(&decided.verdicts);
        let envelope = &decided.block.envelope;
        tracing::info!(
            builder = decided.builder,
            block = envelope.block_number(),
            hash = %envelope.block_hash(),
            txs = envelope.tx_count(),
            gas_used = envelope.gas_used(),
            "proposing the builder's block (validated before op-node asked)"
        );
        if let Some(b) = self.builders.get(decided.builder) {
            b.record_block_outcome(BlockOutcome::Proposed);
        }
        self.metrics.prevalidated_get_payload("served");
        self.metrics.block_proposed(BlockSource::Builder);
        json_response(jsonrpc::ok_response(id, &decided.block.raw))
    }

    /// Every builder outcome is health evidence (see [`record_verdict`]) and a per-builder
    /// count; the chosen builder's is recorded once its block's fate is known.
    fn record_verdicts(&self, verdicts: &[(&'static str, Verdict)]) {
        for (name, verdict) in verdicts {
            let Some(b) = self.builders.get(name) else {
                continue;
            };
            if let Some(outcome) = record_verdict(b.health(), *verdict) {
                b.record_block_outcome(outcome);
            }
        }
    }

    /// Any other call: the local EL's answer, byte for byte.
    pub async fn proxy(
        &self,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Bytes>, UpstreamError> {
        self.local.forward_raw("proxy", headers, body).await
    }

    /// A transaction or miner call, copied to every builder (bounded, not awaited).
    pub fn copy_to_builder(&self, headers: &HeaderMap, body: Bytes) {
        self.builders.copy(headers, body);
    }
}
