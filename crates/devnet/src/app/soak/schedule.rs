//! The soak's fault schedule: drawn from a seed, so a run is replayed with the same `--seed`.
//!
//! Builder faults are [`FaultWindow`]s (the all-in-one devnet switches them by height); restarts
//! (a builder from genesis, the local EL on its ports) are one-off events at a height.

use std::time::Duration;

use crate::engine::faults::{Fault, FaultWindow};

/// A seeded xorshift64* generator: a repeatable schedule without another dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Self {
        // splitmix64 once, so nearby seeds give unrelated schedules.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)).max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A one-off event of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Builder `n` (1-based) restarts on its ports: from genesis early in the run (engine-mux
    /// catches it up from the local EL), later with its chain kept (see the soak's event loop).
    RestartBuilder(usize),
    /// The local EL's listeners stop and start again on the same ports, its chain kept (a
    /// process restart with its database).
    RestartLocal,
}

/// An event at a height: it happens right after block `height - 1` is proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The block before which it happens.
    pub height: u64,
    /// What happens.
    pub kind: EventKind,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            EventKind::RestartBuilder(n) => write!(f, "b{n}:restart@{}", self.height),
            EventKind::RestartLocal => write!(f, "local_el:restart@{}", self.height),
        }
    }
}

/// What the schedule is drawn for.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleParams {
    /// Blocks the run lasts.
    pub blocks: u64,
    /// Builders b1..bN.
    pub builders: usize,
    /// Slot length (slow faults are drawn around it).
    pub block_time: Duration,
    /// Blocks at the start with no fault (warm-up).
    pub warm_up: u64,
    /// Blocks at the end with no fault (every preconfirmation lands, health recovers).
    pub cool_down: u64,
    /// Mean blocks between two new faults.
    pub mean_gap: u64,
    /// Longest fault window, in blocks.
    pub max_len: u64,
}

/// The seeded schedule of one soak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Builder fault windows (overlapping, per builder or for every builder).
    pub windows: Vec<FaultWindow>,
    /// Restarts.
    pub events: Vec<Event>,
}

/// Blocks a restarted builder is given to be caught up and trusted again, for explaining health.
pub const RESTART_CATCH_UP: u64 = 30;

impl Schedule {
    /// Draws a schedule: after the warm-up, a new fault every `mean_gap` blocks on average
    /// (several overlap), each on one builder (one in eight on every builder), drawn from the
    /// whole fault matrix; builder restarts and local EL restarts among them.
    pub fn draw(seed: u64, p: ScheduleParams) -> Self {
        let mut rng = Rng::new(seed);
        let mut windows = Vec::new();
        let mut events = Vec::new();
        let last = p.blocks.saturating_sub(p.cool_down);
        let slot_ms = p.block_time.as_millis() as u64;
        let mut at = p.warm_up.max(1);
        while at < last {
            at += rng.range(1, p.mean_gap.max(1) * 2 - 1);
            if at >= last {
                break;
            }
            let builder =
                (rng.range(0, 7) != 0).then(|| rng.range(1, p.builders.max(1) as u64) as usize);
            let len = rng.range(2, p.max_len.max(2));
            let to = (at + len).min(last);
            let fault = match rng.range(0, 17) {
                0 => Fault::Down,
                1 => Fault::Slow(rng.range(slot_ms / 20, slot_ms / 4).max(1)),
                2 => Fault::Slow(rng.range(slot_ms, slot_ms * 2)),
                3 => Fault::Hang,
                4 => Fault::Invalid,
                5 => Fault::WrongAttributes,
                6 => Fault::ZeroStateRoot,
                7 => Fault::Empty,
                8 => Fault::Stale,
                9 => Fault::FlashblocksDown,
                10 => Fault::DropPreconfirmed,
                11 => Fault::DownAfterFlashblock(rng.range(0, 3)),
                12 => Fault::Garbage,
                13 => Fault::FlashblocksHostile,
                // Late by a tenth to half a slot: the last flashblocks of a block miss getPayload.
                14 => Fault::FlashblocksLate(rng.range(slot_ms / 10, slot_ms / 2).max(1)),
                15 => {
                    let n = builder.unwrap_or_else(|| rng.range(1, p.builders as u64) as usize);
                    events.push(Event {
                        height: at,
                        kind: EventKind::RestartBuilder(n),
                    });
                    continue;
                }
                _ => {
                    events.push(Event {
                        height: at,
                        kind: EventKind::RestartLocal,
                    });
                    continue;
                }
            };
            windows.push(FaultWindow {
                fault,
                from: at,
                to,
                builder,
            });
        }
        Self {
            seed,
            windows,
            events,
        }
    }

    /// Whether builder `n` (1-based) had a fault that can make engine-mux count it as failing,
    /// or was restarted and not yet caught up, at some height in `from..=to`.
    pub fn builder_troubled(&self, n: usize, from: u64, to: u64) -> bool {
        let window = self
            .windows
            .iter()
            .any(|w| w.targets(n) && affects_health(&w.fault) && w.from <= to && w.to > from);
        let restarted = self.events.iter().any(|e| {
            e.kind == EventKind::RestartBuilder(n)
                && e.height <= to
                && e.height + RESTART_CATCH_UP > from
        });
        window || restarted
    }

    /// Whether builder `n` served a failed block (one engine-mux counts against it until one
    /// of its blocks is proposed again) in a fault window that began at or before `to` and
    /// ended after block `since`: with another builder's blocks winning every slot since,
    /// nothing has shown engine-mux that it recovered.
    pub fn builder_failed_a_block_since(&self, n: usize, since: u64, to: u64) -> bool {
        self.windows
            .iter()
            .any(|w| w.targets(n) && fails_its_block(&w.fault) && w.from <= to && w.to > since)
    }

    /// What was going on for builder `n` at heights `from..=to`, for a report line.
    pub fn describe_builder(&self, n: usize, from: u64, to: u64) -> Vec<String> {
        let mut out: Vec<String> = self
            .windows
            .iter()
            .filter(|w| w.targets(n) && w.from <= to && w.to > from)
            .map(ToString::to_string)
            .collect();
        out.extend(
            self.events
                .iter()
                .filter(|e| {
                    e.kind == EventKind::RestartBuilder(n)
                        && e.height <= to
                        && e.height + RESTART_CATCH_UP > from
                })
                .map(ToString::to_string),
        );
        out
    }

    /// The `--builder-fault`-style lines and the events, for the report.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<(u64, String)> = self
            .windows
            .iter()
            .map(|w| (w.from, w.to_string()))
            .chain(self.events.iter().map(|e| (e.height, e.to_string())))
            .collect();
        out.sort();
        out.into_iter().map(|(_, s)| s).collect()
    }
}

/// Whether a builder fault can make engine-mux count the builder as failing (`/healthz` 206
/// once every builder is): every fault except a valid but emptier block, and flashblocks that
/// are hostile or late (the builder's Engine API still answers well; engine-mux refuses the bad
/// frames, it has no reason to distrust the builder's blocks). `garbage` does: its engine calls
/// fail.
pub fn affects_health(fault: &Fault) -> bool {
    !matches!(
        fault,
        Fault::Empty | Fault::FlashblocksHostile | Fault::FlashblocksLate(_)
    )
}

/// Faults whose block engine-mux refuses as the builder's failure (not lateness or
/// unreachability, which its next offer in time clears): only a proposed block of that builder
/// clears them.
pub fn fails_its_block(fault: &Fault) -> bool {
    matches!(
        fault,
        Fault::Invalid
            | Fault::ZeroStateRoot
            | Fault::WrongAttributes
            | Fault::SameHashOtherTxs
            | Fault::Garbage
            | Fault::DropPreconfirmed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(blocks: u64) -> ScheduleParams {
        ScheduleParams {
            blocks,
            builders: 3,
            block_time: Duration::from_millis(500),
            warm_up: 10,
            cool_down: 15,
            mean_gap: 4,
            max_len: 12,
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let a = Schedule::draw(7, params(400));
        assert_eq!(a, Schedule::draw(7, params(400)));
        assert_ne!(a.windows, Schedule::draw(8, params(400)).windows);
        assert!(!a.windows.is_empty() && !a.events.is_empty(), "{a:?}");
    }

    #[test]
    fn faults_overlap_stay_between_warm_up_and_cool_down_and_cover_the_matrix() {
        let s = Schedule::draw(42, params(2000));
        assert!(
            s.windows
                .iter()
                .all(|w| w.from >= 10 && w.to <= 1985 && w.from < w.to),
            "{:?}",
            s.windows
        );
        assert!(s.events.iter().all(|e| e.height >= 10 && e.height < 1985));
        let overlapping = s.windows.iter().enumerate().any(|(i, a)| {
            s.windows[i + 1..]
                .iter()
                .any(|b| a.from < b.to && b.from < a.to)
        });
        assert!(overlapping, "several faults at once");
        let kinds: std::collections::HashSet<_> = s
            .windows
            .iter()
            .map(|w| std::mem::discriminant(&w.fault))
            .collect();
        assert_eq!(kinds.len(), 14, "every builder fault kind is drawn");
        for (name, fault) in [
            ("garbage", Fault::Garbage),
            ("flashblocks_hostile", Fault::FlashblocksHostile),
        ] {
            assert!(s.windows.iter().any(|w| w.fault == fault), "{name} drawn");
        }
        assert!(
            s.windows
                .iter()
                .any(|w| matches!(w.fault, Fault::FlashblocksLate(25..=250))),
            "flashblocks_late drawn, within half a slot"
        );
        assert!(s.events.iter().any(|e| e.kind == EventKind::RestartLocal));
        assert!(
            s.events
                .iter()
                .any(|e| matches!(e.kind, EventKind::RestartBuilder(1..=3)))
        );
        assert!(s.windows.iter().any(|w| w.builder.is_none()));
        assert!(
            s.windows
                .iter()
                .all(|w| w.builder.is_none_or(|b| (1..=3).contains(&b)))
        );
    }

    #[test]
    fn a_builder_is_troubled_only_while_a_health_fault_or_a_restart_covers_it() {
        let s = Schedule {
            seed: 0,
            windows: vec![
                "b1:invalid@10..20".parse().unwrap(),
                "b2:empty@10..20".parse().unwrap(),
                "down@50..52".parse().unwrap(),
                "b3:flashblocks_hostile@60..70".parse().unwrap(),
                "b3:flashblocks_late=200@60..70".parse().unwrap(),
                "b3:garbage@80..90".parse().unwrap(),
            ],
            events: vec![Event {
                height: 100,
                kind: EventKind::RestartBuilder(2),
            }],
        };
        assert!(s.builder_troubled(1, 15, 15));
        assert!(!s.builder_troubled(1, 20, 25), "window over");
        assert!(
            !s.builder_troubled(2, 10, 19),
            "empty blocks are valid blocks"
        );
        assert!(s.builder_troubled(2, 51, 51) && s.builder_troubled(3, 45, 50));
        assert!(
            !s.builder_troubled(3, 60, 69),
            "hostile or late flashblocks do not make a builder fail"
        );
        assert!(s.builder_troubled(3, 85, 85), "garbage answers do");
        assert!(s.builder_troubled(2, 100 + RESTART_CATCH_UP - 1, 200));
        assert!(!s.builder_troubled(2, 100 + RESTART_CATCH_UP, 200));
        assert_eq!(s.describe_builder(2, 0, 1000).len(), 3);
    }
}
