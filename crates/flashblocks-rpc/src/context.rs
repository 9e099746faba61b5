//! What every task and handler shares: the pending state behind one short-held lock, the
//! upstream client, the metrics and the fan-out of accepted flashblocks to subscribers.

use std::{
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::Instant,
};

use engine_api::Upstream;
use tokio::sync::{Notify, broadcast};

use crate::{config::Config, execute::Executions, metrics::Metrics, pending::state::PendingState};

/// Flashblocks buffered per subscriber before it is dropped as too slow.
pub const SUBSCRIBER_BUFFER: usize = 256;

/// Shared by the stream task, the head poller and the RPC handlers.
#[derive(Debug)]
pub struct Context {
    state: RwLock<PendingState>,
    /// Metrics of this instance.
    pub metrics: Metrics,
    /// The upstream EL.
    pub upstream: Upstream,
    /// Accepted flashblocks as JSON text, for `eth_subscribe("newFlashblocks")`.
    pub flashblocks: broadcast::Sender<Arc<str>>,
    /// Wakes the head poller early: a new block arrived that does not chain onto the head
    /// we know, so the upstream probably has a block we have not seen yet.
    pub head_nudge: Notify,
    /// Wakes the execution task: a flashblock was accepted, the pending chain changed.
    pub execute_nudge: Notify,
    /// Executions of pending chains through the upstream's `eth_simulateV1`, bounded.
    pub executions: Executions,
    /// The configuration.
    pub config: Config,
}

impl Context {
    /// A context with empty pending state.
    pub fn new(config: Config, upstream: Upstream) -> Arc<Self> {
        let (flashblocks, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Arc::new(Self {
            state: RwLock::new(PendingState::new(config.pending)),
            metrics: Metrics::default(),
            upstream,
            flashblocks,
            head_nudge: Notify::new(),
            execute_nudge: Notify::new(),
            executions: Executions::default(),
            config,
        })
    }

    /// Read access; never held across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, PendingState> {
        // A panic while holding the lock cannot leave the state half-updated in a way
        // readers care about more than an outage: recover the guard.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access; never held across an `.await`. Updates the depth gauges on release.
    pub fn write<R>(&self, f: impl FnOnce(&mut PendingState) -> R) -> R {
        let mut guard: RwLockWriteGuard<'_, PendingState> =
            self.state.write().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut guard);
        let serveable = guard.chain(Instant::now()).len();
        self.metrics.set_depth(guard.len(), serveable);
        out
    }
}
