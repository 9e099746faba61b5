//! The local→builder payload id map. op-node only ever sees local ids; the builder's id for
//! the same attributes (and whether it has one yet) lives here until getPayload asks.

use std::collections::{HashMap, VecDeque};

use engine_api::PayloadId;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::multiplex::FallbackReason;

/// What the builder made of a forkchoiceUpdated with attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuilderFcu {
    /// The builder started a build with this id.
    Building(PayloadId),
    /// There is no builder payload for this block, and why.
    Unavailable(FallbackReason),
}

/// Receives the builder's FCU outcome once it is known.
pub type BuilderFcuRx = watch::Receiver<Option<BuilderFcu>>;

/// A bounded map, oldest entry evicted first. Sized in the thousands so a burst of hundreds of
/// FCUs never evicts an id a getPayload is still going to ask for.
#[derive(Debug)]
pub struct PayloadIds {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<PayloadId, BuilderFcuRx>,
    order: VecDeque<PayloadId>,
}

impl PayloadIds {
    /// An empty map holding at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Records the builder outcome channel for `local`; returns the new size.
    pub fn insert(&self, local: PayloadId, builder: BuilderFcuRx) -> usize {
        let mut inner = self.inner.lock();
        if inner.map.insert(local, builder).is_none() {
            inner.order.push_back(local);
        }
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
        inner.map.len()
    }

    /// The builder outcome channel for `local`, if it is still held.
    pub fn get(&self, local: &PayloadId) -> Option<BuilderFcuRx> {
        self.inner.lock().map.get(local).cloned()
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> PayloadId {
        PayloadId::new(n.to_be_bytes())
    }

    #[test]
    fn bounded_and_evicts_oldest_first() {
        let ids = PayloadIds::new(3);
        for n in 0..5 {
            let (_tx, rx) = watch::channel(None);
            ids.insert(id(n), rx);
        }
        assert_eq!(ids.len(), 3);
        assert!(ids.get(&id(0)).is_none() && ids.get(&id(1)).is_none());
        assert!(ids.get(&id(2)).is_some() && ids.get(&id(4)).is_some());
    }

    #[test]
    fn reinserting_an_id_replaces_without_growing() {
        let ids = PayloadIds::new(2);
        let (tx1, rx1) = watch::channel(None);
        let (_tx2, rx2) = watch::channel(None);
        ids.insert(id(1), rx1);
        ids.insert(id(1), rx2);
        assert_eq!(ids.len(), 1);
        tx1.send_replace(Some(BuilderFcu::Building(id(9))));
        assert_eq!(
            *ids.get(&id(1)).unwrap().borrow(),
            None,
            "the newer channel is the one kept"
        );
    }
}
