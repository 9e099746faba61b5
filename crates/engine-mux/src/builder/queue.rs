//! The ordered queue of engine calls bound for the builder: one bounded channel, drained by
//! one task (`worker`), so the builder sees FCUs and newPayloads in exactly the order op-node
//! sent them and a slow builder can never pile up unbounded work.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::payload_ids::BuildSlot;

/// One call for the builder.
#[derive(Debug)]
pub(crate) enum BuilderCall {
    /// Mirror a call whose answer op-node does not wait for (FCU without attributes or with
    /// noTxPool, newPayload): boost sync.
    Mirror {
        /// The engine method.
        method: &'static str,
        /// Params exactly as op-node sent them.
        params: Box<RawValue>,
    },
    /// An FCU with attributes: the builder's payload id goes into `slot`.
    Build {
        /// Params exactly as op-node sent them.
        params: Box<RawValue>,
        /// Where the outcome goes (read by getPayload through the payload id map).
        slot: Arc<BuildSlot>,
    },
    /// Replay the blocks the builder missed.
    CatchUp,
}

/// The sending side; cheap to share.
#[derive(Debug, Clone)]
pub(crate) struct BuilderQueue {
    tx: mpsc::Sender<BuilderCall>,
}

/// The receiving side, drained by the builder's worker task.
#[derive(Debug)]
pub(crate) struct BuilderQueueRx(pub(super) mpsc::Receiver<BuilderCall>);

impl BuilderQueue {
    /// A queue holding at most `depth` calls.
    pub(crate) fn new(depth: usize) -> (Self, BuilderQueueRx) {
        let (tx, rx) = mpsc::channel(depth);
        (Self { tx }, BuilderQueueRx(rx))
    }

    /// Enqueues without waiting; a full queue hands the call back.
    pub(crate) fn push(&self, call: BuilderCall) -> Result<(), BuilderCall> {
        self.tx.try_send(call).map_err(|e| match e {
            mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
        })
    }

    /// Calls waiting.
    pub(crate) fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
