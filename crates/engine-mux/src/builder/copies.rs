//! Copies of `eth_sendRawTransaction*` / `miner_*` requests for the builder: a bounded, ordered
//! queue drained by one task, so a transaction flood can neither delay op-node's engine calls
//! nor grow memory without bound.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::{mpsc, watch};

use engine_api::Upstream;

use crate::metrics::Metrics;

/// The sending side.
#[derive(Debug, Clone)]
pub(crate) struct CopyQueue {
    tx: mpsc::Sender<(HeaderMap, Bytes)>,
}

/// The receiving side, handed to [`run`].
#[derive(Debug)]
pub(crate) struct CopyQueueRx(mpsc::Receiver<(HeaderMap, Bytes)>);

impl CopyQueue {
    /// A queue holding at most `depth` requests.
    pub(crate) fn new(depth: usize) -> (Self, CopyQueueRx) {
        let (tx, rx) = mpsc::channel(depth);
        (Self { tx }, CopyQueueRx(rx))
    }

    /// Enqueues a request body; false when the queue is full (the copy is dropped).
    pub(crate) fn push(&self, headers: HeaderMap, body: Bytes) -> bool {
        self.tx.try_send((headers, body)).is_ok()
    }

    /// Requests waiting.
    pub(crate) fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Forwards each copy to the builder in order until shutdown; answers are only logged.
pub(crate) async fn run(
    upstream: Upstream,
    metrics: Arc<Metrics>,
    mut rx: CopyQueueRx,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (headers, body) = tokio::select! {
            item = rx.0.recv() => match item {
                Some(item) => item,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        metrics.queue_depth("builder_tx_copies", rx.0.len());
        let started = Instant::now();
        let res = upstream.forward(&headers, body, upstream.timeout()).await;
        let outcome = match &res {
            Ok(r) if r.status().is_success() => "ok",
            Ok(_) => "http",
            Err(e) => e.kind(),
        };
        metrics.upstream_call("builder", "tx_copy", outcome, started.elapsed());
        if let Err(e) = res {
            tracing::debug!(error = %e, "copying a transaction request to the builder failed");
        }
    }
}
