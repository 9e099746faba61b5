//! Resources over time (memory, open sockets/files, tasks) with their fitted slope, and the
//! soak's end report: one figure a line, with the seed to replay.

use std::{fmt, time::Duration};

use super::{checks::Findings, ha::HaTally};

/// One sample of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Since the soak started.
    pub at: Duration,
    /// Resident memory (VmRSS), kB.
    pub rss_kb: u64,
    /// Open file descriptors (sockets included).
    pub fds: u64,
    /// Alive tokio tasks.
    pub tasks: u64,
}

impl Sample {
    /// Reads /proc/self and the current tokio runtime (zeros where unavailable).
    pub fn now(at: Duration) -> Self {
        let rss_kb = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let tasks = tokio::runtime::Handle::try_current()
            .map_or(0, |h| h.metrics().num_alive_tasks() as u64);
        Self {
            at,
            rss_kb,
            fds,
            tasks,
        }
    }
}

/// A least-squares line through `(minutes, value)` points: its slope per minute, or `None`
/// with fewer than two distinct times.
pub fn slope_per_minute(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// One resource after warm-up: first and last value, mean, and fitted slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// First sample after warm-up.
    pub first: f64,
    /// Last sample.
    pub last: f64,
    /// Mean after warm-up.
    pub mean: f64,
    /// Fitted slope per minute.
    pub per_minute: f64,
    /// Minutes the fit spans.
    pub minutes: f64,
}

impl Trend {
    /// Fits `value` over the samples taken at or after `warm_up`.
    pub fn fit(
        samples: &[Sample],
        warm_up: Duration,
        value: impl Fn(&Sample) -> u64,
    ) -> Option<Self> {
        let after: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.at >= warm_up)
            .map(|s| (s.at.as_secs_f64() / 60.0, value(s) as f64))
            .collect();
        let per_minute = slope_per_minute(&after)?;
        let mean = after.iter().map(|p| p.1).sum::<f64>() / after.len() as f64;
        Some(Self {
            first: after[0].1,
            last: after[after.len() - 1].1,
            mean,
            per_minute,
            minutes: after[after.len() - 1].0 - after[0].0,
        })
    }

    /// Flat: the fitted growth over the span stays within `share` of the mean, or within
    /// `floor` in absolute terms (small counts jitter by a few).
    pub fn flat(&self, share: f64, floor: f64) -> bool {
        let growth = self.per_minute * self.minutes;
        growth <= (self.mean * share).max(floor)
    }
}

/// The soak's end report.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// Seed to replay with.
    pub seed: u64,
    /// The command line that replays it.
    pub command: String,
    /// Wall time run.
    pub elapsed: Duration,
    /// The schedule's lines (`b2:Invalid@10..20`, `local_el:restart@40`).
    pub schedule: Vec<String>,
    /// What the checks found.
    pub findings: Findings,
    /// Resources sampled over the run.
    pub samples: Vec<Sample>,
    /// Resources are judged after this much time.
    pub warm_up: Duration,
    /// Transactions the spammer got accepted / refused.
    pub spammer: (u64, u64),
    /// Wallet transfers: sent, landed, send failures.
    pub wallet: (u64, u64, u64),
    /// Blocks by source: from a builder, local.
    pub sources: (u64, u64),
    /// Restarts done: builders, local EL.
    pub restarts: (u64, u64),
    /// Frames of engine-mux's stream the checker lost (its buffer overflowed): non-zero makes
    /// the preconfirmation figures a lower bound.
    pub frames_dropped: u64,
    /// The HA pair's failovers (`None`: not run).
    pub ha: Option<HaTally>,
}

/// Fitted share of the mean memory may grow after warm-up and still be called flat.
const MEMORY_SHARE: f64 = 0.10;

/// Resources are judged (pass or fail) only over at least this long after warm-up: a shorter
/// span cannot tell caches still filling (the engines' chain history, the checker's records)
/// from a leak, so it is reported and not judged.
const JUDGED_SPAN_MIN: f64 = 5.0;

impl SoakReport {
    fn trends(&self) -> [(&'static str, Option<Trend>, f64, f64); 3] {
        [
            (
                "memory (VmRSS kB)",
                Trend::fit(&self.samples, self.warm_up, |s| s.rss_kb),
                MEMORY_SHARE,
                8_192.0,
            ),
            (
                "open fds",
                Trend::fit(&self.samples, self.warm_up, |s| s.fds),
                0.10,
                16.0,
            ),
            (
                "tokio tasks",
                Trend::fit(&self.samples, self.warm_up, |s| s.tasks),
                0.10,
                16.0,
            ),
        ]
    }

    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        let f = &self.findings;
        f.missed_count == 0
            && f.wrong_block_count == 0
            && f.lost_count == 0
            && f.out_of_order_count == 0
            && f.unexplained_health() == 0
            && f.proposed > 0
            && self
                .ha
                .as_ref()
                .is_none_or(|h| h.lost == 0 && h.errors.is_empty())
            && self.trends().iter().all(|(_, t, share, floor)| {
                t.is_none_or(|t| t.minutes < JUDGED_SPAN_MIN || t.flat(*share, *floor))
            })
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let f = &self.findings;
        writeln!(out, "soak seed: {} (replay: {})", self.seed, self.command)?;
        writeln!(out, "elapsed: {:.0}s", self.elapsed.as_secs_f64())?;
        writeln!(out, "faults scheduled: {}", self.schedule.len())?;
        writeln!(out, "blocks proposed: {}", f.proposed)?;
        writeln!(
            out,
            "blocks by source: builder {} local {}",
            self.sources.0, self.sources.1
        )?;
        writeln!(
            out,
            "restarts: builders {} local EL {}",
            self.restarts.0, self.restarts.1
        )?;
        writeln!(out, "missed slots: {}", f.missed_count)?;
        writeln!(
            out,
            "blocks not VALID on local EL or not asked for: {}",
            f.wrong_block_count
        )?;
        writeln!(out, "preconfirmed transactions: {}", f.preconfirmed)?;
        writeln!(out, "lost preconfirmations: {}", f.lost_count)?;
        writeln!(
            out,
            "preconfirmations out of order: {}",
            f.out_of_order_count
        )?;
        writeln!(
            out,
            "stream frames the checker dropped: {}",
            self.frames_dropped
        )?;
        writeln!(
            out,
            "spammer transactions: accepted {} refused {}",
            self.spammer.0, self.spammer.1
        )?;
        writeln!(
            out,
            "wallet transfers: sent {} landed {} send failures {}",
            self.wallet.0, self.wallet.1, self.wallet.2
        )?;
        if let Some(h) = &self.ha {
            writeln!(out, "ha failovers: {}", h.failovers)?;
            writeln!(out, "ha preconfirmed at failover: {}", h.preconfirmed)?;
            writeln!(out, "ha carried over: {}", h.carried)?;
            writeln!(out, "ha lost preconfirmations: {}", h.lost)?;
            writeln!(
                out,
                "ha episodes: {} (failed: {})",
                h.episodes,
                h.errors.len()
            )?;
        }
        writeln!(out, "health changes: {}", f.health.len())?;
        writeln!(
            out,
            "unexplained health changes: {}",
            f.unexplained_health()
        )?;
        for (name, trend, share, floor) in self.trends() {
            match trend {
                Some(t) => writeln!(
                    out,
                    "{name}: {:.0} -> {:.0} after warm-up, slope {:+.1}/min over {:.1} min ({})",
                    t.first,
                    t.last,
                    t.per_minute,
                    t.minutes,
                    match (t.minutes < JUDGED_SPAN_MIN, t.flat(share, floor)) {
                        (true, true) => "flat; not judged: under 5 min after warm-up",
                        (true, false) => "growing; not judged: under 5 min after warm-up",
                        (false, true) => "flat",
                        (false, false) => "GROWING",
                    }
                )?,
                None => writeln!(out, "{name}: too few samples")?,
            }
        }
        writeln!(
            out,
            "result: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        for (n, why) in &f.missed {
            writeln!(out, "  missed slot {n}: {why}")?;
        }
        for w in &f.wrong_blocks {
            writeln!(out, "  wrong block: {w}")?;
        }
        for l in &f.lost {
            writeln!(out, "  lost: {l}")?;
        }
        for o in &f.out_of_order {
            writeln!(out, "  out of order: {o}")?;
        }
        if let Some(h) = &self.ha {
            for e in &h.errors {
                writeln!(out, "  ha episode failed: {e}")?;
            }
            for l in &h.lost_examples {
                writeln!(out, "  ha lost: {l}")?;
            }
        }
        for c in &f.health {
            writeln!(
                out,
                "  health {} -> {} at {:.1}s (block {}): {}",
                c.from,
                c.to,
                c.at.as_secs_f64(),
                c.height,
                c.explained_by.as_deref().unwrap_or("UNEXPLAINED")
            )?;
            if c.explained_by.is_none()
                && let Some(e) = &c.evidence
            {
                writeln!(out, "    engine-mux said: {e}")?;
            }
        }
        write!(out, "  schedule: {}", self.schedule.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: impl Fn(u64) -> u64) -> Vec<Sample> {
        (0..=30)
            .map(|i| Sample {
                at: Duration::from_secs(i * 10),
                rss_kb: rss(i),
                fds: 40 + i % 3,
                tasks: 100,
            })
            .collect()
    }

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0 + 2.0 * i as f64)).collect();
        assert!((slope_per_minute(&line).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(slope_per_minute(&[(1.0, 1.0)]), None);
        assert_eq!(slope_per_minute(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn growth_after_warm_up_is_flagged_and_warm_up_growth_is_not() {
        let warm = Duration::from_secs(60);
        // Grows during the first minute only.
        let flat =
            Trend::fit(&samples(|i| 100_000 + 5_000 * i.min(6)), warm, |s| s.rss_kb).unwrap();
        assert!(flat.flat(MEMORY_SHARE, 8_192.0), "{flat:?}");
        // Keeps growing by 2 MB every 10 s.
        let leak = Trend::fit(&samples(|i| 100_000 + 2_000 * i), warm, |s| s.rss_kb).unwrap();
        assert!((leak.per_minute - 12_000.0).abs() < 1.0, "{leak:?}");
        assert!(!leak.flat(MEMORY_SHARE, 8_192.0));
        let fds = Trend::fit(&samples(|_| 0), warm, |s| s.fds).unwrap();
        assert!(fds.flat(0.1, 16.0), "jitter of a few fds is flat");
    }
}
