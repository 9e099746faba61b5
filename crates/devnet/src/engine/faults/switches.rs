//! The live fault switches of one engine, shared by its RPC server and its engine core.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_rpc_types_engine::PayloadId;
use tokio::sync::watch;

use super::kind::Fault;

/// The live fault switches of one engine, shared by its RPC server and its engine core.
#[derive(Debug)]
pub struct Faults {
    slow_ms: AtomicU64,
    down: AtomicBool,
    hang: AtomicBool,
    invalid: AtomicBool,
    wrong_attributes: AtomicBool,
    same_hash_other_txs: AtomicBool,
    zero_state_root: AtomicBool,
    empty: AtomicBool,
    stale: AtomicBool,
    flashblocks_down: AtomicBool,
    drop_preconfirmed: AtomicBool,
    garbage: AtomicBool,
    // Which kind of garbage the next engine call gets (they alternate).
    garbage_turn: AtomicU64,
    flashblocks_hostile: AtomicBool,
    flashblocks_late_ms: AtomicU64,
    // Flashblock index after which the builder dies; `DISARMED` when off.
    down_after_flashblock: AtomicU64,
    // Whether the current `down` was caused by a tripped `down_after_flashblock`.
    tripped_down: AtomicBool,
    tripped: Mutex<Option<(PayloadId, u64)>>,
    // Bumped on every change so the listener task and hanging calls can react.
    changed: watch::Sender<u64>,
}

const DISARMED: u64 = u64::MAX;

impl Default for Faults {
    fn default() -> Self {
        Self {
            slow_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            invalid: AtomicBool::new(false),
            wrong_attributes: AtomicBool::new(false),
            same_hash_other_txs: AtomicBool::new(false),
            zero_state_root: AtomicBool::new(false),
            empty: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            flashblocks_down: AtomicBool::new(false),
            drop_preconfirmed: AtomicBool::new(false),
            garbage: AtomicBool::new(false),
            garbage_turn: AtomicU64::new(0),
            flashblocks_hostile: AtomicBool::new(false),
            flashblocks_late_ms: AtomicU64::new(0),
            down_after_flashblock: AtomicU64::new(DISARMED),
            tripped_down: AtomicBool::new(false),
            tripped: Mutex::new(None),
            changed: watch::channel(0).0,
        }
    }
}

impl Faults {
    /// Switches `fault` on (`true`) or off.
    pub fn set(&self, fault: Fault, on: bool) {
        match fault {
            Fault::Slow(ms) => self
                .slow_ms
                .store(if on { ms } else { 0 }, Ordering::SeqCst),
            Fault::Down => {
                self.down.store(on, Ordering::SeqCst);
                self.tripped_down.store(false, Ordering::SeqCst);
            }
            Fault::Hang => self.hang.store(on, Ordering::SeqCst),
            Fault::Invalid => self.invalid.store(on, Ordering::SeqCst),
            Fault::WrongAttributes => self.wrong_attributes.store(on, Ordering::SeqCst),
            Fault::SameHashOtherTxs => self.same_hash_other_txs.store(on, Ordering::SeqCst),
            Fault::ZeroStateRoot => self.zero_state_root.store(on, Ordering::SeqCst),
            Fault::Empty => self.empty.store(on, Ordering::SeqCst),
            Fault::Stale => self.stale.store(on, Ordering::SeqCst),
            Fault::FlashblocksDown => self.flashblocks_down.store(on, Ordering::SeqCst),
            Fault::DropPreconfirmed => self.drop_preconfirmed.store(on, Ordering::SeqCst),
            Fault::Garbage => self.garbage.store(on, Ordering::SeqCst),
            Fault::FlashblocksHostile => self.flashblocks_hostile.store(on, Ordering::SeqCst),
            Fault::FlashblocksLate(ms) => self
                .flashblocks_late_ms
                .store(if on { ms } else { 0 }, Ordering::SeqCst),
            Fault::DownAfterFlashblock(n) => {
                self.down_after_flashblock
                    .store(if on { n } else { DISARMED }, Ordering::SeqCst);
                if !on && self.tripped_down.swap(false, Ordering::SeqCst) {
                    self.down.store(false, Ordering::SeqCst);
                }
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Switches every fault off.
    pub fn clear(&self) {
        for f in [
            Fault::Slow(0),
            Fault::Down,
            Fault::Hang,
            Fault::Invalid,
            Fault::WrongAttributes,
            Fault::SameHashOtherTxs,
            Fault::ZeroStateRoot,
            Fault::Empty,
            Fault::Stale,
            Fault::FlashblocksDown,
            Fault::DropPreconfirmed,
            Fault::Garbage,
            Fault::FlashblocksHostile,
            Fault::FlashblocksLate(0),
            Fault::DownAfterFlashblock(0),
        ] {
            self.set(f, false);
        }
    }

    /// Faults currently on.
    pub fn active(&self) -> Vec<Fault> {
        let mut out = Vec::new();
        let ms = self.slow_ms.load(Ordering::SeqCst);
        if ms > 0 {
            out.push(Fault::Slow(ms));
        }
        for (flag, fault) in [
            (&self.down, Fault::Down),
            (&self.hang, Fault::Hang),
            (&self.invalid, Fault::Invalid),
            (&self.wrong_attributes, Fault::WrongAttributes),
            (&self.same_hash_other_txs, Fault::SameHashOtherTxs),
            (&self.zero_state_root, Fault::ZeroStateRoot),
            (&self.empty, Fault::Empty),
            (&self.stale, Fault::Stale),
            (&self.flashblocks_down, Fault::FlashblocksDown),
            (&self.drop_preconfirmed, Fault::DropPreconfirmed),
            (&self.garbage, Fault::Garbage),
            (&self.flashblocks_hostile, Fault::FlashblocksHostile),
        ] {
            if flag.load(Ordering::SeqCst) {
                out.push(fault);
            }
        }
        let late = self.flashblocks_late_ms.load(Ordering::SeqCst);
        if late > 0 {
            out.push(Fault::FlashblocksLate(late));
        }
        let n = self.down_after_flashblock.load(Ordering::SeqCst);
        if n != DISARMED {
            out.push(Fault::DownAfterFlashblock(n));
        } else if self.tripped_down.load(Ordering::SeqCst) {
            // Tripped and still in effect: listed until cleared, so a fault window switches it
            // off (and the builder back on) when it ends, and does not re-arm it meanwhile.
            if let Some((_, index)) = self.tripped() {
                out.push(Fault::DownAfterFlashblock(index));
            }
        }
        out
    }

    /// Delay to add before answering an engine call.
    pub fn delay(&self) -> Option<Duration> {
        let ms = self.slow_ms.load(Ordering::SeqCst);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Whether the listener should be closed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Whether engine calls should hang.
    pub fn is_hanging(&self) -> bool {
        self.hang.load(Ordering::SeqCst)
    }

    /// Whether served payloads carry a wrong state root.
    pub fn is_invalid(&self) -> bool {
        self.invalid.load(Ordering::SeqCst)
    }

    /// Whether a payload served again carries other contents under its first hash.
    pub fn is_same_hash_other_txs(&self) -> bool {
        self.same_hash_other_txs.load(Ordering::SeqCst)
    }

    /// Whether served payloads carry a prevRandao other than the attributes'.
    pub fn is_wrong_attributes(&self) -> bool {
        self.wrong_attributes.load(Ordering::SeqCst)
    }

    /// Whether served payloads and flashblocks carry a zero state root.
    pub fn is_zero_state_root(&self) -> bool {
        self.zero_state_root.load(Ordering::SeqCst)
    }

    /// Whether blocks are built without pool transactions.
    pub fn is_empty(&self) -> bool {
        self.empty.load(Ordering::SeqCst)
    }

    /// Whether the engine ignores chain updates.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::SeqCst)
    }

    /// Whether getPayload drops the pool transactions the flashblocks preconfirmed.
    pub fn is_dropping_preconfirmed(&self) -> bool {
        self.drop_preconfirmed.load(Ordering::SeqCst)
    }

    /// Whether the flashblocks WebSocket should be closed.
    pub fn is_flashblocks_down(&self) -> bool {
        self.flashblocks_down.load(Ordering::SeqCst)
    }

    /// Whether engine calls are answered with garbage.
    pub fn is_garbage(&self) -> bool {
        self.garbage.load(Ordering::SeqCst)
    }

    /// The next engine call's turn in the garbage rotation (0, 1, 2, 0, ...).
    pub fn next_garbage_turn(&self) -> u64 {
        self.garbage_turn.fetch_add(1, Ordering::SeqCst) % 3
    }

    /// Whether hostile frames are interleaved with the real flashblocks.
    pub fn is_flashblocks_hostile(&self) -> bool {
        self.flashblocks_hostile.load(Ordering::SeqCst)
    }

    /// How long each flashblock is held back before it is sent.
    pub fn flashblocks_delay(&self) -> Option<Duration> {
        let ms = self.flashblocks_late_ms.load(Ordering::SeqCst);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Called with every flashblock the builder builds: if `down_after_flashblock=index` is
    /// armed, it trips (once): the builder goes `down` and `(id, index)` is recorded.
    /// Returns whether it tripped.
    pub fn trip_after_flashblock(&self, id: PayloadId, index: u64) -> bool {
        if self
            .down_after_flashblock
            .compare_exchange(index, DISARMED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        *self.tripped.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, index));
        self.tripped_down.store(true, Ordering::SeqCst);
        self.down.store(true, Ordering::SeqCst);
        self.changed.send_modify(|v| *v += 1);
        true
    }

    /// The payload and flashblock index at which `down_after_flashblock` last tripped.
    pub fn tripped(&self) -> Option<(PayloadId, u64)> {
        *self.tripped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that changes whenever any switch flips.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Applies the `slow` and `hang` switches to one engine call: waits as long as they say.
    /// A hanging call is released when the hang switch goes off (so tests can clean up).
    pub async fn before_engine_call(&self) {
        if let Some(delay) = self.delay() {
            tokio::time::sleep(delay).await;
        }
        let mut changes = self.subscribe();
        while self.is_hanging() {
            if changes.changed().await.is_err() {
                // Sender dropped with the engine: hang for good, as asked.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_flashblock_trips_once_and_clearing_lifts_the_down() {
        let faults = Faults::default();
        let id = PayloadId::new([7; 8]);
        assert!(!faults.trip_after_flashblock(id, 3), "not armed");
        faults.set(Fault::DownAfterFlashblock(3), true);
        assert_eq!(faults.active(), vec![Fault::DownAfterFlashblock(3)]);
        assert!(!faults.trip_after_flashblock(id, 2));
        assert!(!faults.is_down());
        assert!(faults.trip_after_flashblock(id, 3));
        assert!(faults.is_down());
        assert_eq!(faults.tripped(), Some((id, 3)));
        assert!(
            !faults.trip_after_flashblock(id, 3),
            "one shot: disarmed once tripped"
        );
        assert_eq!(
            faults.active(),
            vec![Fault::Down, Fault::DownAfterFlashblock(3)],
            "listed while the down it caused lasts"
        );
        faults.set(Fault::DownAfterFlashblock(3), false);
        assert_eq!(faults.active(), vec![]);
        assert!(!faults.is_down(), "clearing lifts the down it caused");
        faults.set(Fault::Down, true);
        faults.set(Fault::DownAfterFlashblock(3), false);
        assert!(faults.is_down(), "a down it did not cause stays");
    }

    #[test]
    fn garbage_hostile_and_late_flashblocks_switch_list_and_clear() {
        let faults = Faults::default();
        faults.set(Fault::Garbage, true);
        faults.set(Fault::FlashblocksHostile, true);
        faults.set(Fault::FlashblocksLate(300), true);
        assert_eq!(
            faults.active(),
            vec![
                Fault::Garbage,
                Fault::FlashblocksHostile,
                Fault::FlashblocksLate(300)
            ]
        );
        assert!(faults.is_garbage() && faults.is_flashblocks_hostile());
        assert_eq!(faults.flashblocks_delay(), Some(Duration::from_millis(300)));
        let turns: Vec<u64> = (0..4).map(|_| faults.next_garbage_turn()).collect();
        assert_eq!(
            turns,
            vec![0, 1, 2, 0],
            "the three kinds of garbage alternate"
        );
        faults.clear();
        assert_eq!(faults.active(), vec![]);
        assert_eq!(faults.flashblocks_delay(), None);
        assert_eq!(
            serde_json::to_string(&Fault::FlashblocksLate(300)).unwrap(),
            r#"{"fault":"flashblocks_late","ms":300}"#
        );
    }

    #[tokio::test]
    async fn hang_is_released_when_switched_off() {
        let faults = std::sync::Arc::new(Faults::default());
        faults.set(Fault::Hang, true);
        let f = faults.clone();
        let call = tokio::spawn(async move { f.before_engine_call().await });
        tokio::task::yield_now().await;
        assert!(!call.is_finished());
        faults.set(Fault::Hang, false);
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap()
            .unwrap();
    }
}
