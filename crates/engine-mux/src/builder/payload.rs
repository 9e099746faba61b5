//! What a builder offers at getPayload: its payload for the build op-node's FCU started,
//! and, with flashblocks, the block its preconfirmed flashblocks assemble to.

use engine_api::{PayloadEnvelope, PayloadId, PayloadVersion, flashblocks::assemble};
use serde_json::value::RawValue;

use super::{
    handle::{Builder, FLASHBLOCKS_VALIDATION_RESERVE},
    payload_ids::{BuildSlot, BuilderFcu},
};
use crate::{
    execution_mode::ExecutionMode,
    fallback::FallbackReason,
    flashblocks::store::FlashblocksStore,
    payload_check::BuildRequest,
    selection::{Candidate, Candidates},
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
        let builder_id = match slot.decide(deadline).await {
            BuilderFcu::Building(id) => id,
            BuilderFcu::Unavailable(reason) => return Err(reason),
        };
        let flashblocks = self.flashblocks.as_ref().filter(|_| slot.elected);
        let mut remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if flashblocks.is_some() {
            // Leave time to validate the assembled flashblocks if the builder never answers.
            remaining = remaining.saturating_sub(FLASHBLOCKS_VALIDATION_RESERVE);
        }
        let fetched = match self
            .call_raw(
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
        match flashblocks {
            Some(store) => Ok(Candidates {
                first_ask,
                ..self.with_flashblocks(store, version, request, builder_id, fetched, deadline)
            }),
            None => {
                let (raw, envelope) = fetched?;
                Ok(Candidates {
                    request,
                    list: vec![Candidate {
                        builder: self.name,
                        raw,
                        envelope,
                        path: None,
                        validate_by: deadline,
                    }],
                    preconfirmed: 0,
                    failure: FallbackReason::Error,
                    first_ask,
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
                    builder: self.name,
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
                        first_ask: true,
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
                    builder: self.name,
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
            first_ask: true,
        }
    }
}
