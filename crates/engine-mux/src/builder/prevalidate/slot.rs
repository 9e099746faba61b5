//! A builder's block fetched, and possibly validated, before op-node asks for it
//! (`--prevalidate-builder-payload`). Each build slot keeps the state of that early work, so
//! op-node's getPayload can answer with an already validated block instead of validating it on
//! its critical path, and never starts a second fetch or validation while one is running.

use std::sync::Arc;

use engine_api::{PayloadEnvelope, PayloadVersion};
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::select::fallback::FallbackReason;

/// A block a builder handed out before op-node asked for it.
#[derive(Debug)]
pub struct EarlyBlock {
    /// The getPayload version it was fetched with (op-node's last one).
    pub version: PayloadVersion,
    /// The envelope as the builder sent it.
    pub raw: Box<RawValue>,
    /// The same, typed.
    pub envelope: PayloadEnvelope,
}

/// The early fetch of a builder's block.
#[derive(Clone, Debug, Default)]
pub enum EarlyFetch {
    /// Not started.
    #[default]
    NotStarted,
    /// The builder was asked for its block.
    Fetching,
    /// The builder's block.
    Fetched(Arc<EarlyBlock>),
    /// The builder had no block to give.
    Failed,
}

/// The early validation of a fetched block (only the block the policy ranks first is validated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EarlyValidation {
    /// Not started (and, once getPayload began, never will be).
    #[default]
    NotStarted,
    /// The attributes check and `engine_newPayload` on the local EL are running.
    Running,
    /// What they found.
    Done(Result<(), FallbackReason>),
}

/// Everything done early for one build.
#[derive(Clone, Debug, Default)]
pub struct EarlyState {
    /// op-node's getPayload began: nothing new starts early any more.
    pub closed: bool,
    /// The early fetch.
    pub fetch: EarlyFetch,
    /// The early validation.
    pub validation: EarlyValidation,
}

impl EarlyState {
    /// Whether nothing early is still running.
    pub fn settled(&self) -> bool {
        !matches!(self.fetch, EarlyFetch::Fetching) && self.validation != EarlyValidation::Running
    }

    /// The block fetched early, if any.
    pub fn block(&self) -> Option<&Arc<EarlyBlock>> {
        match &self.fetch {
            EarlyFetch::Fetched(b) => Some(b),
            _ => None,
        }
    }

    /// What the early validation found, if it finished.
    pub fn outcome(&self) -> Option<Result<(), FallbackReason>> {
        match self.validation {
            EarlyValidation::Done(outcome) => Some(outcome),
            _ => None,
        }
    }
}

/// The early work of one build slot. Every transition is atomic with the check that allows it,
/// so the early work and op-node's getPayload never both start the same thing.
#[derive(Debug, Default)]
pub struct Early(watch::Sender<EarlyState>);

impl Early {
    /// Starts the early fetch, unless getPayload began or it already started.
    pub fn begin_fetch(&self) -> bool {
        self.0.send_if_modified(|s| {
            if s.closed || !matches!(s.fetch, EarlyFetch::NotStarted) {
                return false;
            }
            s.fetch = EarlyFetch::Fetching;
            true
        })
    }

    /// Records what the early fetch got (recorded even after getPayload began: it may be
    /// waiting for it).
    pub fn fetched(&self, block: Option<Arc<EarlyBlock>>) {
        self.0.send_modify(|s| {
            s.fetch = match block {
                Some(b) => EarlyFetch::Fetched(b),
                None => EarlyFetch::Failed,
            }
        });
    }

    /// Starts the early validation of the fetched block, unless getPayload began or it already
    /// started; returns the block to validate.
    pub fn begin_validation(&self) -> Option<Arc<EarlyBlock>> {
        let mut block = None;
        self.0.send_if_modified(|s| {
            if s.closed || s.validation != EarlyValidation::NotStarted {
                return false;
            }
            let Some(b) = s.block() else { return false };
            block = Some(b.clone());
            s.validation = EarlyValidation::Running;
            true
        });
        block
    }

    /// Records what the early validation found.
    pub fn validated(&self, outcome: Result<(), FallbackReason>) {
        self.0
            .send_modify(|s| s.validation = EarlyValidation::Done(outcome));
    }

    /// getPayload began: nothing new starts early. Whatever already runs is awaited (until
    /// `deadline`), so a block fetched early is never fetched or validated a second time in
    /// parallel. Returns the state then.
    pub async fn close(&self, deadline: tokio::time::Instant) -> EarlyState {
        let mut rx = self.0.subscribe();
        self.0.send_if_modified(|s| {
            let was = s.closed;
            s.closed = true;
            !was
        });
        if let Ok(Ok(state)) =
            tokio::time::timeout_at(deadline, rx.wait_for(EarlyState::settled)).await
        {
            return state.clone();
        }
        self.state()
    }

    /// getPayload began: nothing new starts early; the state as it is now, without waiting for
    /// what still runs (the caller takes the usual path unless it is settled).
    pub fn close_now(&self) -> EarlyState {
        self.0.send_if_modified(|s| {
            let was = s.closed;
            s.closed = true;
            !was
        });
        self.state()
    }

    /// The state now.
    pub fn state(&self) -> EarlyState {
        self.0.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Any parsed block: these tests are about the state, not the block.
    fn block() -> Arc<EarlyBlock> {
        let raw = envelope();
        let envelope = PayloadEnvelope::parse(PayloadVersion::V3, &raw).unwrap();
        Arc::new(EarlyBlock {
            version: PayloadVersion::V3,
            raw,
            envelope,
        })
    }

    fn envelope() -> Box<RawValue> {
        let zero = format!("0x{}", "00".repeat(32));
        serde_json::value::to_raw_value(&serde_json::json!({
            "executionPayload": {
                "parentHash": zero, "feeRecipient": format!("0x{}", "00".repeat(20)),
                "stateRoot": zero, "receiptsRoot": zero,
                "logsBloom": format!("0x{}", "00".repeat(256)), "prevRandao": zero,
                "blockNumber": "0x1", "gasLimit": "0x1", "gasUsed": "0x0", "timestamp": "0x1",
                "extraData": "0x", "baseFeePerGas": "0x1", "blockHash": zero,
                "transactions": [], "withdrawals": [], "blobGasUsed": "0x0", "excessBlobGas": "0x0"
            },
            "blockValue": "0x0",
            "blobsBundle": {"commitments": [], "proofs": [], "blobs": []},
            "shouldOverrideBuilder": false,
            "parentBeaconBlockRoot": zero
        }))
        .unwrap()
    }

    #[test]
    fn nothing_starts_after_get_payload_began() {
        let early = Early::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let state = rt.block_on(early.close(deadline));
        assert!(state.closed && state.block().is_none());
        assert!(!early.begin_fetch(), "no early fetch once getPayload began");
    }

    #[tokio::test(start_paused = true)]
    async fn get_payload_waits_for_the_running_validation_and_gets_its_outcome() {
        let early = Arc::new(Early::default());
        assert!(early.begin_fetch());
        assert!(!early.begin_fetch(), "one early fetch per build");
        early.fetched(Some(block()));
        assert!(early.begin_validation().is_some());
        assert!(
            early.begin_validation().is_none(),
            "one early validation per build"
        );
        let waiter = tokio::spawn({
            let early = early.clone();
            async move {
                early
                    .close(tokio::time::Instant::now() + Duration::from_secs(1))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        early.validated(Ok(()));
        let state = waiter.await.unwrap();
        assert_eq!(state.outcome(), Some(Ok(())));
        assert!(state.block().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_early_fetch_holds_get_payload_no_longer_than_its_deadline() {
        let early = Early::default();
        assert!(early.begin_fetch());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let state = early.close(deadline).await;
        assert!(tokio::time::Instant::now() >= deadline);
        assert!(matches!(state.fetch, EarlyFetch::Fetching));
        assert!(state.block().is_none() && state.outcome().is_none());
    }
}
