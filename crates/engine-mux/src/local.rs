//! The local execution client: the EL op-node would talk to without engine-mux. Its answer is
//! always what op-node waits for; it also validates every builder block, and its engine call
//! outcomes are its health evidence.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_rpc_types_engine::{ForkchoiceUpdated, PayloadStatus, PayloadStatusEnum};
use bytes::Bytes;
use engine_api::{PayloadEnvelope, PayloadVersion, UpstreamError, jsonrpc, payload};
use http::{HeaderMap, Response};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::{
    error::MuxError,
    health::evidence::LocalHealth,
    local_engine::{Answer, Forward, LOCAL_LABEL, LocalEngine, LocalFuture, json_response},
    metrics::Metrics,
    select::{fallback::FallbackReason, payload_check::BuildRequest},
};

/// The local EL: its client (over HTTP or in process), its health evidence and the metrics its
/// calls are timed into.
#[derive(Debug)]
pub struct LocalEl {
    engine: Arc<dyn LocalEngine>,
    health: LocalHealth,
    metrics: Arc<Metrics>,
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

impl LocalEl {
    /// The local EL reached through `engine`.
    pub fn new(engine: Arc<dyn LocalEngine>, metrics: Arc<Metrics>) -> Self {
        Self {
            engine,
            health: LocalHealth::default(),
            metrics,
        }
    }

    /// The cap on one answer's size (also when a compressed one is decoded).
    pub fn max_response_bytes(&self) -> usize {
        self.engine.max_response_bytes()
    }

    /// Its health evidence.
    pub fn health(&self) -> &LocalHealth {
        &self.health
    }

    /// A typed call, traced and timed.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: &(impl Serialize + ?Sized),
        timeout: Duration,
    ) -> Result<R, UpstreamError> {
        let malformed = |e: serde_json::Error| UpstreamError::Malformed {
            upstream: LOCAL_LABEL,
            detail: e.to_string(),
        };
        let params = serde_json::value::to_raw_value(params).map_err(malformed)?;
        let raw = self
            .timed(
                method,
                timeout,
                self.engine.call(method, &params, timeout),
                |_| "ok",
            )
            .await?;
        serde_json::from_str(raw.get()).map_err(malformed)
    }

    /// Runs one call to the local EL in its span, bounded by `timeout` whatever the
    /// implementation does, and times it into the metrics (`outcome` names a success).
    async fn timed<T>(
        &self,
        method: &'static str,
        timeout: Duration,
        call: LocalFuture<'_, T>,
        outcome: impl FnOnce(&T) -> &'static str,
    ) -> Result<T, UpstreamError> {
        let started = Instant::now();
        let res = tokio::time::timeout(timeout, call)
            .instrument(tracing::info_span!(
                "upstream",
                upstream = LOCAL_LABEL,
                method
            ))
            .await
            .unwrap_or(Err(UpstreamError::Timeout {
                upstream: LOCAL_LABEL,
                after: timeout,
            }));
        let label = match &res {
            Ok(r) => outcome(r),
            Err(e) => e.kind(),
        };
        self.metrics
            .upstream_call(LOCAL_LABEL, method, label, started.elapsed());
        res
    }

    async fn forward(
        &self,
        method: &'static str,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
        answer: Answer,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let call = self.engine.forward(Forward {
            method,
            headers,
            body,
            timeout,
            answer,
        });
        self.timed(method, timeout, call, |r: &Response<Bytes>| {
            if r.status().is_success() {
                "ok"
            } else {
                "http"
            }
        })
        .await
    }

    /// op-node's request body, unchanged, for an answer engine-mux reads (engine calls):
    /// asked uncompressed and decoded if compressed anyway.
    pub async fn forward_read(
        &self,
        method: &'static str,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        self.forward(method, headers, body, timeout, Answer::Read)
            .await
    }

    /// op-node's request body, unchanged, answered byte for byte (the raw proxy).
    pub async fn forward_raw(
        &self,
        method: &'static str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Bytes>, UpstreamError> {
        self.forward(method, headers, body, self.timeout(), Answer::Verbatim)
            .await
    }

    /// The configured per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.engine.timeout()
    }

    /// Turns the local EL's answer to an engine call into op-node's response and health
    /// evidence. A spec error (-38001..-38005, invalid params) is the EL working as specified.
    pub fn answer<R: DeserializeOwned>(
        &self,
        id: Option<&RawValue>,
        res: Result<Response<Bytes>, UpstreamError>,
    ) -> (Response<Bytes>, Option<R>) {
        self.answer_with(id, res, |r| serde_json::from_str::<R>(r.get()).ok())
    }

    /// [`Self::answer`] with the result kept as the EL sent it (a payload envelope): the
    /// response is read once, its result not parsed into a second copy.
    pub fn answer_raw(
        &self,
        id: Option<&RawValue>,
        res: Result<Response<Bytes>, UpstreamError>,
    ) -> (Response<Bytes>, Option<Box<RawValue>>) {
        self.answer_with(id, res, Some)
    }

    fn answer_with<R>(
        &self,
        id: Option<&RawValue>,
        res: Result<Response<Bytes>, UpstreamError>,
        parse: impl FnOnce(Box<RawValue>) -> Option<R>,
    ) -> (Response<Bytes>, Option<R>) {
        match res {
            Ok(res) => {
                let envelope = (res.status() == http::StatusCode::OK)
                    .then(|| serde_json::from_slice::<jsonrpc::ResponseEnvelope>(res.body()).ok())
                    .flatten();
                let (result, spec_error) = match envelope {
                    Some(e) => (
                        e.result,
                        e.error.as_ref().is_some_and(|e| is_spec_error(e.code())),
                    ),
                    None => (None, false),
                };
                let parsed = result.and_then(parse);
                if parsed.is_some() || spec_error {
                    self.health.ok();
                } else {
                    tracing::error!(status = %res.status(), "local execution client answered an engine call with an error");
                    self.health.failed();
                }
                (res, parsed)
            }
            Err(e) => {
                tracing::error!(error = %e, "local execution client failed an engine call");
                self.health.failed();
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

    /// `--external-state-root`: has the local EL build the block op-node asked for in
    /// `request` from exactly `transactions` (`noTxPool`), under a payload id of its own so the
    /// payload op-node's FCU started stays untouched. The block comes back with the state root
    /// the local EL computed, or the rebuild failed (no second try): `StateRootRebuildRefused`
    /// when the local EL refused the builder's transactions (the builder's fault),
    /// `StateRootRebuildFailed` when the local EL itself failed (a failed local call, as in
    /// [`Self::validate`]).
    pub async fn rebuild(
        &self,
        version: PayloadVersion,
        request: &BuildRequest,
        transactions: &[alloy_primitives::Bytes],
        deadline: tokio::time::Instant,
    ) -> Result<(Box<RawValue>, PayloadEnvelope), FallbackReason> {
        let failed = |what: &str, e: &UpstreamError, budget: Duration| {
            tracing::warn!(what, error = %e, "local EL could not rebuild the builder's block");
            match self.charge(e, budget, FallbackReason::StateRootRebuildFailed) {
                // A spec error: the local EL refused the builder's transactions.
                FallbackReason::Error => FallbackReason::StateRootRebuildRefused,
                reason => reason,
            }
        };
        let mut attributes = request.attributes.clone();
        attributes.transactions = Some(transactions.to_vec());
        attributes.no_tx_pool = Some(true);
        let budget = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let left = budget();
        let fcu: ForkchoiceUpdated = self
            .call(
                "engine_forkchoiceUpdatedV3",
                &(request.forkchoice, attributes),
                left.min(self.timeout()),
            )
            .await
            .map_err(|e| failed("forkchoiceUpdated", &e, left))?;
        let id = match (fcu.payload_status.status, fcu.payload_id) {
            (PayloadStatusEnum::Valid, Some(id)) => id,
            (status, id) => {
                // op-node's own head, which the local EL accepted: its problem.
                tracing::warn!(%status, ?id, "local EL could not rebuild the builder's block: forkchoiceUpdated started no build");
                self.health.failed();
                return Err(FallbackReason::StateRootRebuildFailed);
            }
        };
        let left = budget();
        let raw: Box<RawValue> = self
            .call(
                version.get_payload_method(),
                &(id,),
                left.min(self.timeout()),
            )
            .await
            .map_err(|e| failed("getPayload", &e, left))?;
        let envelope = PayloadEnvelope::parse(version, &raw).map_err(|e| {
            tracing::warn!(error = %e, "local EL could not rebuild the builder's block: its getPayload answer does not parse");
            self.health.failed();
            FallbackReason::StateRootRebuildFailed
        })?;
        if envelope.transactions() != transactions {
            tracing::warn!(
                rebuilt = envelope.tx_count(),
                builder = transactions.len(),
                "local EL left some of the builder's transactions out of the rebuilt block"
            );
            return Err(FallbackReason::StateRootRebuildRefused);
        }
        self.health.ok();
        Ok((raw, envelope))
    }

    /// `engine_newPayload` of a builder's block: only VALID is valid, and only by `deadline`.
    /// `raw` is the block's envelope as op-node would be answered with it, `envelope` the same
    /// typed (already parsed, for the logs); the params are built from `raw`, so the local EL
    /// validates the very payload JSON op-node gets.
    ///
    /// The answer is evidence about whichever side caused it: VALID and INVALID are the local
    /// EL working, a spec error is the builder's payload refused; a transport error, garbage,
    /// an internal error, `SYNCING` or `ACCEPTED` (the block builds on op-node's own head, so
    /// the local EL cannot validate on its head) are failed local calls, and so is a timeout
    /// when the local EL had its whole `--l2-timeout` (one cut short by the getPayload budget
    /// is evidence against neither side).
    pub async fn validate(
        &self,
        version: PayloadVersion,
        raw: &RawValue,
        envelope: &PayloadEnvelope,
        deadline: tokio::time::Instant,
    ) -> Result<(), FallbackReason> {
        let params =
            payload::new_payload_params_raw(version, raw).map_err(|_| FallbackReason::Error)?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let status: PayloadStatus = match self
            .call(
                version.new_payload_method(),
                &params,
                remaining.min(self.timeout()),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, hash = %envelope.block_hash(), "validating the builder's block on the local EL failed");
                return Err(self.charge(&e, remaining, FallbackReason::ValidationError));
            }
        };
        match status.status {
            PayloadStatusEnum::Valid => {
                self.health.ok();
                Ok(())
            }
            PayloadStatusEnum::Invalid { validation_error } => {
                self.health.ok();
                tracing::warn!(hash = %envelope.block_hash(), block = envelope.block_number(), %validation_error, "local EL rejected the builder's block as INVALID");
                Err(FallbackReason::Invalid)
            }
            PayloadStatusEnum::Syncing | PayloadStatusEnum::Accepted => {
                tracing::warn!(hash = %envelope.block_hash(), status = %status.status, "local EL could not validate the builder's block on its own head");
                self.health.failed();
                Err(FallbackReason::ValidationSyncing)
            }
        }
    }

    /// The reason and the health evidence for an error answering a call made for a builder's
    /// block with `remaining` of the getPayload budget left: a spec error means the builder's
    /// block made the request invalid (`Error`, the builder's); anything else is the local EL's
    /// failure (`failure`, or `ValidationTimeout`), recorded as a failed local call unless it
    /// is a timeout the budget cut shorter than `--l2-timeout`.
    fn charge(
        &self,
        e: &UpstreamError,
        remaining: Duration,
        failure: FallbackReason,
    ) -> FallbackReason {
        match e {
            UpstreamError::Rpc { error, .. } if is_spec_error(error.code()) => {
                FallbackReason::Error
            }
            UpstreamError::Timeout { .. } => {
                if remaining >= self.timeout() {
                    self.health.failed();
                }
                if failure == FallbackReason::ValidationError {
                    FallbackReason::ValidationTimeout
                } else {
                    failure
                }
            }
            _ => {
                self.health.failed();
                failure
            }
        }
    }
}
