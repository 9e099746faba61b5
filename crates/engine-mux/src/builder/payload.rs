//! What a builder offers at getPayload: its payload for the build op-node's FCU started,
//! and, with flashblocks, the block its preconfirmed flashblocks assemble to.

use engine_api::{PayloadEnvelope, PayloadId, PayloadVersion, flashblocks::assemble};
use serde_json::value::RawValue;

use super::{
    handle::{Builder, FLASHBLOCKS_VALIDATION_RESERVE},
    payload_ids::{BuildSlot, BuilderFcu},
    prevalidate::slot::EarlyBlock,
};
use crate::{
    execution_mode::ExecutionMode,
    flashblocks::store::FlashblocksStore,
    select::{
        Candidate, Candidates, EarlyCheck, Origin, fallback::FallbackReason,
        payload_check::BuildRequest,
    },
};

impl Builder {
    /// The build this builder was asked for op-node's payload `local_id`, if it was asked.
    pub fn slot(&self, local_id: &PayloadId) -> Option<std::sync::Arc<BuildSlot>> {
        self.ids.get(local_id)
    }

    /// The blocks this builder offers for op-node's payload `local_id` (its build `slot`), best
    /// first, each with the time by which its validation must be done; or why there are none.
    pub async fn candidates(
        &self,
        version: PayloadVersion,
        local_id: PayloadId,
        slot: &BuildSlot,
        deadline: tokio::time::Instant,
    ) -> Result<Candidates, FallbackReason> {
        let first_ask = slot.first_get_payload();
        // Stops anything new from starting early; waits for what already runs (concurrently
        // with asking the builder again), so a block is never validated twice in parallel.
        let early = slot.early.close(deadline);
        let fetch = async {
            let builder_id = match slot.decide(deadline).await {
                BuilderFcu::Building(id) => id,
                BuilderFcu::Unavailable(reason) => return Err(reason),
            };
            let mut remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.flashblocks.is_some() && slot.elected {
                // Leave time to validate the assembled flashblocks if the builder never answers.
                remaining = remaining.saturating_sub(FLASHBLOCKS_VALIDATION_RESERVE);
            }
            let timeout = remaining.min(self.timeout());
            let raw = self
                .call_raw(version.get_payload_method(), &(builder_id,), timeout)
                .await;
            Ok((builder_id, raw))
        };
        let (fetched, early) = tokio::join!(fetch, early);
        let (builder_id, fetched) = fetched?;
        let early_block = early.block().filter(|b| b.version == version);
        let fetched = match (fetched, early_block) {
            // Byte for byte the block fetched early: no second parse (the profile's largest
            // item on this path).
            (Ok(raw), Some(b)) if raw.get() == b.raw.get() => Ok((raw, Some(b.envelope.clone()))),
            (Ok(raw), _) => {
                let envelope = parse_envelope(version, &raw);
                Ok((raw, envelope))
            }
            // The builder's job ended when its block was fetched early (reth-based builders
            // forget a payload once it was resolved): that block is the builder's block.
            (Err(_), Some(b)) => Ok((b.raw.clone(), Some(b.envelope.clone()))),
            (Err(e), None) => {
                tracing::warn!(error = %e, %local_id, %builder_id, "builder getPayload failed");
                self.note_error(&e);
                Err(FallbackReason::from_upstream(&e))
            }
        };
        let fetched = fetched.and_then(|(raw, parsed)| match parsed {
            Some(envelope) => Ok((raw, envelope)),
            None => Err(FallbackReason::Error),
        });
        let request = slot.request.clone();
        let flashblocks = self.flashblocks.as_ref().filter(|_| slot.elected);
        let mut candidates = match flashblocks {
            Some(store) => Candidates {
                first_ask,
                ..self.with_flashblocks(store, version, request, builder_id, fetched, deadline)
            },
            None => {
                let (raw, envelope) = fetched?;
                Candidates {
                    request,
                    list: vec![Candidate {
                        builder: self.name,
                        raw,
                        envelope,
                        path: None,
                        validate_by: deadline,
                        early: EarlyCheck::None,
                    }],
                    preconfirmed: 0,
                    preconfirmed_txs: Vec::new(),
                    deadline,
                    failure: FallbackReason::Error,
                    first_ask,
                }
            }
        };
        if let Some(early_block) = early_block {
            // Only the very bytes validated early skip validation. A hash is the builder's claim:
            // other bytes are validated now (the local EL recomputes their hash), whatever hash
            // they carry.
            for c in &mut candidates.list {
                c.early = if c.raw.get() == early_block.raw.get() {
                    early.outcome().map_or(EarlyCheck::None, EarlyCheck::Same)
                } else {
                    if c.envelope.block_hash() == early_block.envelope.block_hash() {
                        tracing::warn!(
                            builder = self.name,
                            hash = %c.envelope.block_hash(),
                            "builder answered other contents under the block hash it was validated with; validating them"
                        );
                    }
                    match c.path {
                        None | Some(Origin::BuilderPayload) => EarlyCheck::Changed,
                        // Assembled from flashblocks: another block by nature.
                        Some(_) => EarlyCheck::None,
                    }
                };
            }
        }
        Ok(candidates)
    }

    /// The builder's getPayload answer: the envelope as sent and, when it is one, typed (a
    /// malformed envelope is logged here and never validated). Call errors are left to the caller.
    async fn fetch_payload(
        &self,
        version: PayloadVersion,
        builder_id: PayloadId,
        timeout: std::time::Duration,
    ) -> Result<(Box<RawValue>, Option<PayloadEnvelope>), engine_api::UpstreamError> {
        let raw = self
            .call_raw(version.get_payload_method(), &(builder_id,), timeout)
            .await?;
        let envelope = parse_envelope(version, &raw);
        Ok((raw, envelope))
    }

    /// Fetches the builder's block for `slot` before op-node asks (`--prevalidate-builder-payload`),
    /// unless getPayload began or the builder has no build (by `until`, the slot's end); records
    /// it in the slot. This ends
    /// the builder's build, as op-node's getPayload would: op-geth stops improving a payload once
    /// it is resolved, and reth-based builders forget it.
    pub async fn fetch_early(
        &self,
        version: PayloadVersion,
        slot: &BuildSlot,
        until: tokio::time::Instant,
    ) -> Option<std::sync::Arc<EarlyBlock>> {
        // The builder may not have answered the FCU yet when the slot is short.
        let Some(BuilderFcu::Building(builder_id)) = slot.answered_by(until).await else {
            return None;
        };
        if !slot.early.begin_fetch() {
            return None;
        }
        let block = match self
            .fetch_payload(version, builder_id, self.timeout())
            .await
        {
            Ok((raw, Some(envelope))) => Some(std::sync::Arc::new(EarlyBlock {
                version,
                raw,
                envelope,
            })),
            Ok((_, None)) => None,
            Err(e) => {
                tracing::info!(error = %e, %builder_id, "builder getPayload before the slot's end failed");
                None
            }
        };
        slot.early.fetched(block.clone());
        block
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
        let preconfirmed_txs: Vec<_> = if preconfirmed > 0 {
            carried.clone().cloned().collect()
        } else {
            Vec::new()
        };
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
                    builder: self.name,
                    raw,
                    envelope,
                    path: Some(Origin::BuilderPayload),
                    validate_by,
                    early: EarlyCheck::None,
                });
                if same_block {
                    return Candidates {
                        request,
                        list,
                        preconfirmed,
                        preconfirmed_txs,
                        deadline,
                        failure: FallbackReason::Error,
                        first_ask: true,
                    };
                }
                // The builder's final block may still fail where what it preconfirmed is valid.
                (Origin::Assembled, FallbackReason::Error)
            }
            Ok((_, envelope)) => {
                tracing::warn!(
                    hash = %envelope.block_hash(),
                    flashblocks = accepted.len(),
                    "builder's block drops transactions it preconfirmed; proposing its flashblocks instead"
                );
                (Origin::Assembled, FallbackReason::Error)
            }
            Err(reason) => (Origin::Preserved, reason),
        };
        if !accepted.is_empty() {
            match assemble(&accepted, version)
                .map_err(|e| e.to_string())
                .and_then(|envelope| {
                    let raw = envelope.to_raw().map_err(|e| e.to_string())?;
                    Ok((raw, envelope))
                }) {
                Ok((raw, envelope)) => list.push(Candidate {
                    builder: self.name,
                    raw,
                    envelope,
                    path: Some(path),
                    validate_by: deadline,
                    early: EarlyCheck::None,
                }),
                Err(e) => tracing::warn!(error = %e, "flashblocks do not form a block"),
            }
        }
        Candidates {
            request,
            list,
            preconfirmed,
            preconfirmed_txs,
            deadline,
            failure,
            first_ask: true,
        }
    }
}

/// A builder's getPayload answer, typed; a malformed one is logged and never validated.
fn parse_envelope(version: PayloadVersion, raw: &RawValue) -> Option<PayloadEnvelope> {
    match PayloadEnvelope::parse(version, raw) {
        Ok(envelope) => Some(envelope),
        Err(e) => {
            tracing::warn!(error = %e, "builder getPayload answer is not a valid payload envelope");
            None
        }
    }
}
