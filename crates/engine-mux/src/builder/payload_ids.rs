//! The local→builder payload id map. op-node only ever sees local ids; the block op-node asked
//! for and what the builder made of it (its id, or why there is none) live here until
//! getPayload asks.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use engine_api::PayloadId;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::prevalidate::slot::Early;
use crate::select::{fallback::FallbackReason, payload_check::BuildRequest};

/// What the builder made of a forkchoiceUpdated with attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuilderFcu {
    /// The builder started a build with this id.
    Building(PayloadId),
    /// There is no builder payload for this block, and why.
    Unavailable(FallbackReason),
}

/// One block op-node asked for while the builder was asked too. The builder's answer and
/// getPayload's decision race; whichever settles the slot first wins, so a builder answer
/// that arrives after getPayload decided without it never opens its build.
#[derive(Debug)]
pub struct BuildSlot {
    /// The block op-node asked for.
    pub request: BuildRequest,
    /// Whether this builder was elected to preconfirm this block (its flashblocks are
    /// re-published and only its block may carry them).
    pub elected: bool,
    /// The builder's block fetched and validated before op-node asked for it.
    pub early: Early,
    /// When op-node's forkchoiceUpdated asked for the block (preconfirmation telemetry
    /// measures the first flashblock from here).
    pub asked_at: tokio::time::Instant,
    outcome: watch::Sender<Option<BuilderFcu>>,
    // Whether a getPayload already asked for this block (a retry cannot rebuild it again).
    asked: AtomicBool,
}

impl BuildSlot {
    /// A slot waiting for the builder's answer.
    pub fn new(request: BuildRequest, elected: bool) -> Arc<Self> {
        Arc::new(Self {
            request,
            elected,
            early: Early::default(),
            asked_at: tokio::time::Instant::now(),
            outcome: watch::Sender::new(None),
            asked: AtomicBool::new(false),
        })
    }

    /// Whether this is the first getPayload for this block; every later call answers `false`.
    pub fn first_get_payload(&self) -> bool {
        !self.asked.swap(true, Ordering::SeqCst)
    }

    /// Records `outcome` unless the slot is already settled; `on_settle` runs atomically with
    /// the record (it opens the flashblocks build). Returns whether `outcome` was recorded.
    pub fn settle(&self, outcome: BuilderFcu, on_settle: impl FnOnce(&BuilderFcu)) -> bool {
        let mut on_settle = Some(on_settle);
        self.outcome.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            if let Some(f) = on_settle.take() {
                f(&outcome);
            }
            *current = Some(outcome);
            true
        })
    }

    /// The builder's answer, waiting for it until `deadline`; at the deadline the slot is
    /// settled as timed out, so an answer arriving later is ignored.
    pub async fn decide(&self, deadline: tokio::time::Instant) -> BuilderFcu {
        let mut rx = self.outcome.subscribe();
        if let Ok(Ok(outcome)) =
            tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await
            && let Some(outcome) = *outcome
        {
            return outcome;
        }
        let timed_out = BuilderFcu::Unavailable(FallbackReason::Timeout);
        self.settle(timed_out, |_| {});
        // Either our timeout or an answer that won the race by a hair.
        self.outcome.borrow().unwrap_or(timed_out)
    }

    /// The builder's answer, waiting for it until `until` without settling the slot (the early
    /// work must never decide for getPayload).
    pub async fn answered_by(&self, until: tokio::time::Instant) -> Option<BuilderFcu> {
        let mut rx = self.outcome.subscribe();
        match tokio::time::timeout_at(until, rx.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => *outcome,
            _ => None,
        }
    }

    /// The outcome so far, if settled.
    pub fn outcome(&self) -> Option<BuilderFcu> {
        *self.outcome.borrow()
    }
}

/// A bounded map, oldest entry evicted first. Sized in the thousands so a burst of hundreds of
/// FCUs never evicts an id a getPayload is still going to ask for.
#[derive(Debug)]
pub(crate) struct PayloadIds {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<PayloadId, Arc<BuildSlot>>,
    order: VecDeque<PayloadId>,
}

impl PayloadIds {
    /// An empty map holding at most `capacity` ids.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Records the build slot for `local`; returns the new size.
    pub(crate) fn insert(&self, local: PayloadId, slot: Arc<BuildSlot>) -> usize {
        let mut inner = self.inner.lock();
        if inner.map.insert(local, slot).is_none() {
            inner.order.push_back(local);
        }
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
        inner.map.len()
    }

    /// The build slot for `local`, if it is still held.
    pub(crate) fn get(&self, local: &PayloadId) -> Option<Arc<BuildSlot>> {
        self.inner.lock().map.get(local).cloned()
    }

    /// Number of ids held.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u64) -> PayloadId {
        PayloadId::new(n.to_be_bytes())
    }

    fn slot() -> Arc<BuildSlot> {
        BuildSlot::new(
            BuildRequest {
                forkchoice: Default::default(),
                attributes: Default::default(),
            },
            true,
        )
    }

    #[test]
    fn bounded_and_evicts_oldest_first() {
        let ids = PayloadIds::new(3);
        for n in 0..5 {
            ids.insert(id(n), slot());
        }
        assert_eq!(ids.len(), 3);
        assert!(ids.get(&id(0)).is_none() && ids.get(&id(1)).is_none());
        assert!(ids.get(&id(2)).is_some() && ids.get(&id(4)).is_some());
    }

    #[test]
    fn reinserting_an_id_replaces_without_growing() {
        let ids = PayloadIds::new(2);
        let first = slot();
        ids.insert(id(1), first.clone());
        ids.insert(id(1), slot());
        assert_eq!(ids.len(), 1);
        first.settle(BuilderFcu::Building(id(9)), |_| {});
        assert_eq!(
            ids.get(&id(1)).unwrap().outcome(),
            None,
            "the newer slot is the one kept"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_after_the_decision_is_ignored_and_opens_nothing() {
        let s = slot();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        assert_eq!(
            s.decide(deadline).await,
            BuilderFcu::Unavailable(FallbackReason::Timeout)
        );
        let mut opened = false;
        assert!(!s.settle(BuilderFcu::Building(id(7)), |_| opened = true));
        assert!(!opened, "a late build is never opened");
        assert_eq!(
            s.outcome(),
            Some(BuilderFcu::Unavailable(FallbackReason::Timeout))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_before_the_deadline_is_what_getpayload_sees() {
        let s = slot();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.decide(deadline).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut opened = false;
        assert!(s.settle(BuilderFcu::Building(id(7)), |_| opened = true));
        assert!(opened);
        assert_eq!(waiter.await.unwrap(), BuilderFcu::Building(id(7)));
    }
}
