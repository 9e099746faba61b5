//! Fault switches for builder mode: what a misbehaving external builder looks like.

use std::{
    str::FromStr,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_rpc_types_engine::PayloadId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One fault a builder can be switched into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fault", content = "ms")]
pub enum Fault {
    /// Delay every engine answer by this many milliseconds.
    Slow(u64),
    /// Close the listener: connections are refused.
    Down,
    /// Accept engine calls and never answer them.
    Hang,
    /// Serve payloads whose state root is wrong (hash recomputed so only re-execution catches it).
    Invalid,
    /// Build blocks with only the attribute (deposit) transactions.
    Empty,
    /// Stop following the chain: FCU and newPayload answer SYNCING and change nothing.
    Stale,
    /// Close the flashblocks WebSocket listener and disconnect every subscriber; the engine API
    /// keeps working and flashblocks keep being built. Re-opened on the same port when cleared.
    FlashblocksDown,
    /// getPayload serves a valid block without the pool transactions its flashblocks
    /// preconfirmed (attribute transactions only): a builder breaking its preconfirmations.
    DropPreconfirmed,
    /// Serve payloads and flashblocks whose state root is zero (hash recomputed), as a builder
    /// that leaves the state root to the sequencer's EL (rollup-boost's external state root).
    ZeroStateRoot,
    /// Armed: the builder dies (`down`, and it publishes no more flashblocks) right after it
    /// built flashblock N of a payload. Listed as active while armed and while the `down` it
    /// caused lasts; clearing it disarms and lifts that `down`.
    DownAfterFlashblock(u64),
    /// Serve payloads whose prevRandao is not the one the attributes asked for (hash
    /// recomputed): a block that re-executes VALID (nothing reads PREVRANDAO) but is not the
    /// block op-node asked for, so only a check against the FCU's attributes catches it.
    WrongAttributes,
    /// Asked again for a payload it already served, answer other contents (its last
    /// transaction dropped) under the block hash served first: a hostile builder counting on
    /// a claimed hash being trusted. op-geth and reth recompute the hash and refuse it.
    SameHashOtherTxs,
    /// Answer engine_* calls with garbage, in turn: an HTTP 200 whose body is not JSON, a
    /// JSON-RPC response whose `result` has the wrong shape, and the real answer truncated.
    Garbage,
    /// Interleave the real flashblocks with frames a consumer must refuse: unparseable text, a
    /// valid-looking frame of another payload, an index that goes backwards, and a binary frame
    /// that is not Brotli. The real frames still flow.
    FlashblocksHostile,
    /// Hold every flashblock back this many milliseconds before sending it (order kept), so
    /// the last ones of a block arrive after getPayload.
    FlashblocksLate(u64),
}

/// Why a fault name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown fault {0:?} (expected slow=MS, down, hang, invalid, wrong_attributes, same_hash_other_txs, zero_state_root, empty, stale, flashblocks_down, drop_preconfirmed, down_after_flashblock=N, garbage, flashblocks_hostile, flashblocks_late=MS)"
)]
pub struct ParseFaultError(pub String);

impl FromStr for Fault {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFaultError(s.to_string());
        match s {
            "down" => Ok(Self::Down),
            "hang" => Ok(Self::Hang),
            "invalid" => Ok(Self::Invalid),
            "wrong_attributes" => Ok(Self::WrongAttributes),
            "same_hash_other_txs" => Ok(Self::SameHashOtherTxs),
            "zero_state_root" => Ok(Self::ZeroStateRoot),
            "empty" => Ok(Self::Empty),
            "stale" => Ok(Self::Stale),
            "flashblocks_down" => Ok(Self::FlashblocksDown),
            "drop_preconfirmed" => Ok(Self::DropPreconfirmed),
            "garbage" => Ok(Self::Garbage),
            "flashblocks_hostile" => Ok(Self::FlashblocksHostile),
            other if other.starts_with("flashblocks_late") => other
                .strip_prefix("flashblocks_late=")
                .or_else(|| other.strip_prefix("flashblocks_late:"))
                .and_then(|n| n.parse().ok())
                .map(Self::FlashblocksLate)
                .ok_or_else(err),
            other if other.starts_with("down_after_flashblock") => other
                .strip_prefix("down_after_flashblock=")
                .or_else(|| other.strip_prefix("down_after_flashblock:"))
                .and_then(|n| n.parse().ok())
                .map(Self::DownAfterFlashblock)
                .ok_or_else(err),
            other => {
                let ms = other
                    .strip_prefix("slow=")
                    .or_else(|| other.strip_prefix("slow:"))
                    .ok_or_else(err)?;
                ms.parse().map(Self::Slow).map_err(|_| err())
            }
        }
    }
}

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

/// A scheduled fault window: `[BUILDER:]FAULT@FROM..TO` on block heights (TO exclusive).
///
/// `BUILDER` is a devnet builder's name (`b2`) or its 1-based index (`2`); without it the window
/// applies to every builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultWindow {
    /// The fault.
    pub fault: Fault,
    /// First height with the fault on.
    pub from: u64,
    /// First height with the fault off again.
    pub to: u64,
    /// The builder it applies to, 1-based (`b1` = 1); `None`: every builder.
    pub builder: Option<usize>,
}

/// Parses a builder prefix: `b2` or `2` (1-based). Anything else (e.g. `slow` in the older
/// `slow:300` spelling) is not a prefix.
fn builder_prefix(s: &str) -> Option<usize> {
    let digits = s.strip_prefix('b').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl FromStr for FaultWindow {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFaultError(s.to_string());
        let (builder, rest) = match s.split_once(':') {
            Some((prefix, rest)) => match builder_prefix(prefix) {
                Some(0) => return Err(err()),
                Some(n) => (Some(n), rest),
                None => (None, s),
            },
            None => (None, s),
        };
        let (fault, range) = rest.split_once('@').ok_or_else(err)?;
        let (from, to) = range.split_once("..").ok_or_else(err)?;
        Ok(Self {
            fault: fault.parse()?,
            from: from.parse().map_err(|_| err())?,
            to: to.parse().map_err(|_| err())?,
            builder,
        })
    }
}

impl FaultWindow {
    /// Whether the fault is on at `height`.
    pub fn covers(&self, height: u64) -> bool {
        (self.from..self.to).contains(&height)
    }

    /// Whether the window applies to the builder at 1-based `index`.
    pub fn targets(&self, index: usize) -> bool {
        self.builder.is_none_or(|b| b == index)
    }
}

impl std::fmt::Display for FaultWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(b) = self.builder {
            write!(f, "b{b}:")?;
        }
        write!(f, "{:?}@{}..{}", self.fault, self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_faults_and_windows() {
        assert_eq!("slow=250".parse::<Fault>(), Ok(Fault::Slow(250)));
        assert_eq!("stale".parse::<Fault>(), Ok(Fault::Stale));
        assert!("slow=x".parse::<Fault>().is_err());
        let w: FaultWindow = "down@20..30".parse().unwrap();
        assert_eq!(
            w,
            FaultWindow {
                fault: Fault::Down,
                from: 20,
                to: 30,
                builder: None,
            }
        );
        assert!(w.covers(20) && w.covers(29) && !w.covers(30));
        assert!("down@20".parse::<FaultWindow>().is_err());
        assert_eq!(
            "flashblocks_down".parse::<Fault>(),
            Ok(Fault::FlashblocksDown)
        );
        assert_eq!(
            "down_after_flashblock=3".parse::<Fault>(),
            Ok(Fault::DownAfterFlashblock(3))
        );
        assert!("down_after_flashblock".parse::<Fault>().is_err());
        assert_eq!("zero_state_root".parse::<Fault>(), Ok(Fault::ZeroStateRoot));
        assert_eq!(
            "wrong_attributes".parse::<Fault>(),
            Ok(Fault::WrongAttributes)
        );
        assert_eq!(
            "same_hash_other_txs".parse::<Fault>(),
            Ok(Fault::SameHashOtherTxs)
        );
        assert_eq!(
            "drop_preconfirmed".parse::<Fault>(),
            Ok(Fault::DropPreconfirmed)
        );
        assert!("down_after_flashblock=x".parse::<Fault>().is_err());
        assert_eq!("garbage".parse::<Fault>(), Ok(Fault::Garbage));
        assert_eq!(
            "flashblocks_hostile".parse::<Fault>(),
            Ok(Fault::FlashblocksHostile)
        );
        assert_eq!(
            "flashblocks_late=300".parse::<Fault>(),
            Ok(Fault::FlashblocksLate(300))
        );
        assert_eq!(
            "flashblocks_late:300".parse::<Fault>(),
            Ok(Fault::FlashblocksLate(300))
        );
        assert!("flashblocks_late".parse::<Fault>().is_err());
        let w: FaultWindow = "b2:flashblocks_late=250@5..9".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::FlashblocksLate(250), Some(2)));
        assert_eq!(w.to_string(), "b2:FlashblocksLate(250)@5..9");
        let w: FaultWindow = "down_after_flashblock=3@10..12".parse().unwrap();
        assert_eq!(w.fault, Fault::DownAfterFlashblock(3));
        assert_eq!(w.builder, None);
    }

    #[test]
    fn windows_take_an_optional_builder_prefix_and_keep_the_old_colon_spellings() {
        let w: FaultWindow = "b2:invalid@10..20".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::Invalid, Some(2)));
        assert!(w.targets(2) && !w.targets(1));
        let w: FaultWindow = "3:slow=300@1..5".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::Slow(300), Some(3)));
        // `slow:MS` and `down_after_flashblock:N` are fault spellings, not builder prefixes.
        let w: FaultWindow = "slow:300@1..5".parse().unwrap();
        assert_eq!((w.fault, w.builder), (Fault::Slow(300), None));
        assert!(w.targets(1) && w.targets(7), "no prefix: every builder");
        let w: FaultWindow = "b1:down_after_flashblock:3@4..6".parse().unwrap();
        assert_eq!(
            (w.fault, w.builder),
            (Fault::DownAfterFlashblock(3), Some(1))
        );
        assert_eq!(w.to_string(), "b1:DownAfterFlashblock(3)@4..6");
        for bad in [
            "b0:down@1..2",
            "0:down@1..2",
            "bx:down@1..2",
            "b2:@1..2",
            "b2:down",
        ] {
            assert!(bad.parse::<FaultWindow>().is_err(), "{bad}");
        }
    }

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
    fn serde_shape_is_stable() {
        assert_eq!(
            serde_json::to_string(&Fault::Slow(5)).unwrap(),
            r#"{"fault":"slow","ms":5}"#
        );
        assert_eq!(
            serde_json::to_string(&Fault::Down).unwrap(),
            r#"{"fault":"down"}"#
        );
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
