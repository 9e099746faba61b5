//! Preconfirmation telemetry. Per block and builder: how long after op-node's forkchoiceUpdated
//! the first flashblock arrived, the intervals between flashblocks and their jitter, index gaps
//! and out-of-order arrivals, the last flashblock before getPayload, getPayload to the answer;
//! and which re-published (preconfirmed) transactions the block op-node got lacks, with why.
//!
//! Off the hot path: getPayload only notes which builds to report and keeps a reference to the
//! answer it sent; a task computes and records everything after op-node has that answer.

use std::{collections::HashSet, sync::Arc, time::Duration};

use alloy_primitives::Bytes;
use bytes::Bytes as Body;
use engine_api::PayloadId;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    builder::{Builder, payload_ids::BuilderFcu, set::Builders},
    execution_mode::ExecutionMode,
    flashblocks::store::{Arrival, FlashblocksStore},
};

/// What one block's flashblocks stream did, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// op-node's forkchoiceUpdated with attributes to the first flashblock's arrival.
    pub first_delay: Option<Duration>,
    /// Between consecutive arrivals, in arrival order.
    pub intervals: Vec<Duration>,
    /// The largest distance of an interval from the block's median interval: how far the
    /// stream strayed from its own cadence (0 with one interval, none without).
    pub jitter: Option<Duration>,
    /// Arrivals that skipped indexes (index above the highest seen + 1).
    pub gaps: u64,
    /// Arrivals below the highest index already seen (a gap filled late).
    pub out_of_order: u64,
    /// The last flashblock that arrived before getPayload, to getPayload.
    pub last_to_get_payload: Option<Duration>,
    /// op-node's getPayload to engine-mux's answer.
    pub get_payload_to_answer: Duration,
}

/// The figures of one build: `asked_at` is op-node's forkchoiceUpdated, `arrivals` every distinct
/// flashblock delivered (in arrival order), `get_payload_at` and `answered_at` the getPayload.
pub(crate) fn figures(
    asked_at: Instant,
    arrivals: &[Arrival],
    get_payload_at: Instant,
    answered_at: Instant,
) -> Figures {
    let intervals: Vec<Duration> = arrivals
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .collect();
    let jitter = median(&intervals).map(|m| {
        intervals
            .iter()
            .map(|i| i.abs_diff(m))
            .max()
            .unwrap_or_default()
    });
    let (mut gaps, mut out_of_order, mut top) = (0, 0, None::<u64>);
    for a in arrivals {
        let next = top.map_or(0, |t| t + 1);
        if a.index > next {
            gaps += 1;
        }
        if top.is_some_and(|t| a.index < t) {
            out_of_order += 1;
        }
        top = Some(top.map_or(a.index, |t| t.max(a.index)));
    }
    Figures {
        first_delay: arrivals
            .first()
            .map(|a| a.at.saturating_duration_since(asked_at)),
        intervals,
        jitter,
        gaps,
        out_of_order,
        last_to_get_payload: arrivals
            .iter()
            .rev()
            .find(|a| a.at <= get_payload_at)
            .map(|a| get_payload_at - a.at),
        get_payload_to_answer: answered_at.saturating_duration_since(get_payload_at),
    }
}

fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// Re-published transactions that `sealed` (the block op-node got) lacks.
pub(crate) fn not_sealed(published: &[Bytes], sealed: &[Bytes]) -> u64 {
    let sealed: HashSet<&Bytes> = sealed.iter().collect();
    published.iter().filter(|tx| !sealed.contains(tx)).count() as u64
}

/// Why preconfirmed transactions are not in the block op-node got, from what getPayload knew:
/// the mode, and the preconfirming builder's recorded part in the block.
pub(crate) fn reason(mode: ExecutionMode, outcome: &str) -> &'static str {
    if mode != ExecutionMode::Enabled {
        // Published while enabled; the mode changed before the block was decided.
        return "mode_change";
    }
    match outcome {
        // The proposed builder block itself lacks them: what selection must never let through.
        "proposed" => "builder_block",
        "policy" => "policy",
        "dry_run" => "mode_change",
        "timeout" | "error" | "syncing" | "skipped_unhealthy" | "no_builder_payload"
        | "outpaced" => "builder_died",
        "invalid" | "attributes_mismatch" | "state_root_rebuild_refused" | "state_root_retry" => {
            "invalid"
        }
        "validation_timeout" => "late",
        _ => "local_fallback",
    }
}

/// One build to report once op-node has its answer.
struct Pending {
    builder: Arc<Builder>,
    store: Arc<FlashblocksStore>,
    builder_id: PayloadId,
    asked_at: Instant,
    /// Only the elected builder's flashblocks are re-published; its part in the block.
    outcome: &'static str,
}

/// The block op-node got, as far as telemetry reads it.
#[derive(Deserialize)]
struct Answer {
    result: Option<Sealed>,
}

#[derive(Deserialize)]
struct Sealed {
    #[serde(rename = "executionPayload")]
    payload: SealedPayload,
}

#[derive(Deserialize)]
struct SealedPayload {
    transactions: Vec<Bytes>,
}

/// After getPayload for op-node's `local_id` (asked at `get_payload_at`, in `mode`) answered with
/// `body`: reports every asked builder's flashblocks for that block, in a task of its own. On
/// the hot path only the builds are looked up and the body's reference count raised.
pub(crate) fn after_get_payload(
    builders: &Builders,
    local_id: PayloadId,
    mode: ExecutionMode,
    get_payload_at: Instant,
    body: &Body,
) {
    let answered_at = Instant::now();
    let pending: Vec<Pending> = builders
        .iter()
        .filter_map(|b| {
            let store = b.flashblocks()?.clone();
            let slot = b.slot(&local_id)?;
            let Some(BuilderFcu::Building(builder_id)) = slot.outcome() else {
                return None;
            };
            Some(Pending {
                builder: b.clone(),
                store,
                builder_id,
                asked_at: slot.asked_at,
                outcome: if slot.elected {
                    b.last_outcome()
                } else {
                    "not_chosen"
                },
            })
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    let body = body.clone();
    tokio::spawn(async move {
        report(pending, mode, get_payload_at, answered_at, &body);
    });
}

fn report(
    pending: Vec<Pending>,
    mode: ExecutionMode,
    get_payload_at: Instant,
    answered_at: Instant,
    body: &Body,
) {
    let mut sealed: Option<Option<Vec<Bytes>>> = None;
    for p in pending {
        let Some(timeline) = p.store.timeline(&p.builder_id) else {
            continue;
        };
        let metrics = p.builder.metrics();
        if !timeline.arrivals.is_empty() {
            metrics.preconfirmation_stream(&figures(
                p.asked_at,
                &timeline.arrivals,
                get_payload_at,
                answered_at,
            ));
        }
        if timeline.published.is_empty() {
            continue;
        }
        // Parsed once, and only when something was preconfirmed.
        let sealed = sealed.get_or_insert_with(|| {
            serde_json::from_slice::<Answer>(body)
                .ok()
                .and_then(|a| a.result)
                .map(|s| s.payload.transactions)
        });
        let (missing, why) = match sealed {
            Some(txs) => (
                not_sealed(&timeline.published, txs),
                reason(mode, p.outcome),
            ),
            // op-node got no block at all.
            None => (timeline.published.len() as u64, "no_block"),
        };
        metrics.preconfirmed_not_sealed(missing, why);
        if missing > 0 {
            tracing::warn!(
                builder = p.builder.name(),
                payload_id = %p.builder_id,
                missing,
                preconfirmed = timeline.published.len(),
                reason = why,
                "preconfirmed transactions are not in the block op-node got"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::PRECONFIRMED_NOT_SEALED_REASONS as REASONS;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Arrivals of `(index, ms after t0)`, in this order.
    fn arrivals(t0: Instant, list: &[(u64, u64)]) -> Vec<Arrival> {
        list.iter()
            .enumerate()
            .map(|(seq, &(index, at))| Arrival {
                index,
                seq: seq as u64,
                at: t0 + ms(at),
            })
            .collect()
    }

    #[test]
    fn a_regular_stream() {
        let t0 = Instant::now();
        let a = arrivals(t0, &[(0, 200), (1, 400), (2, 600), (3, 800)]);
        let f = figures(t0, &a, t0 + ms(950), t0 + ms(970));
        assert_eq!(
            f,
            Figures {
                first_delay: Some(ms(200)),
                intervals: vec![ms(200); 3],
                jitter: Some(ms(0)),
                gaps: 0,
                out_of_order: 0,
                last_to_get_payload: Some(ms(150)),
                get_payload_to_answer: ms(20),
            }
        );
    }

    #[test]
    fn late_first_irregular_gap_and_out_of_order() {
        let t0 = Instant::now();
        // First at 700 ms; 2 jumps over 1, which arrives after it; 5 jumps over 4 for good.
        let a = arrivals(t0, &[(0, 700), (2, 800), (1, 900), (3, 1300), (5, 1400)]);
        let f = figures(t0, &a, t0 + ms(1350), t0 + ms(1500));
        assert_eq!(f.first_delay, Some(ms(700)));
        assert_eq!(f.intervals, vec![ms(100), ms(100), ms(400), ms(100)]);
        // Median 100 ms; the 400 ms stall is 300 ms off the cadence.
        assert_eq!(f.jitter, Some(ms(300)));
        assert_eq!((f.gaps, f.out_of_order), (2, 1));
        // Index 5 came after getPayload: the last before it is index 3.
        assert_eq!(f.last_to_get_payload, Some(ms(50)));
        assert_eq!(f.get_payload_to_answer, ms(150));
    }

    #[test]
    fn one_flashblock_and_none() {
        let t0 = Instant::now();
        let f = figures(t0, &arrivals(t0, &[(0, 300)]), t0 + ms(200), t0 + ms(250));
        assert_eq!(f.intervals, Vec::<Duration>::new());
        assert_eq!(f.jitter, None);
        assert_eq!(f.last_to_get_payload, None, "it came after getPayload");
        let f = figures(t0, &[], t0, t0);
        assert_eq!(f.first_delay, None);
        let a = arrivals(t0, &[(1, 10), (0, 20)]);
        let f = figures(t0, &a, t0 + ms(30), t0 + ms(30));
        assert_eq!((f.gaps, f.out_of_order), (1, 1), "index 0 after index 1");
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[ms(100), ms(300)]), Some(ms(200)));
        let t0 = Instant::now();
        let a = arrivals(t0, &[(0, 0), (1, 100), (2, 400)]);
        assert_eq!(figures(t0, &a, t0, t0).jitter, Some(ms(100)));
    }

    #[test]
    fn not_sealed_counts_published_transactions_the_block_lacks() {
        let tx = |b: u8| Bytes::from(vec![b]);
        let published = [tx(1), tx(2), tx(3)];
        assert_eq!(not_sealed(&published, &[tx(0), tx(1), tx(2), tx(3)]), 0);
        assert_eq!(not_sealed(&published, &[tx(0), tx(2)]), 2);
        assert_eq!(not_sealed(&[], &[tx(1)]), 0);
    }

    #[test]
    fn every_reason_is_exported_from_the_start() {
        let outcomes = [
            "none",
            "proposed",
            "dry_run",
            "policy",
            "not_chosen",
            "timeout",
            "error",
            "invalid",
            "syncing",
            "attributes_mismatch",
            "no_builder_payload",
            "skipped_unhealthy",
            "outpaced",
            "state_root_rebuild_failed",
            "state_root_rebuild_refused",
            "validation_timeout",
            "validation_error",
            "validation_syncing",
            "state_root_retry",
        ];
        for mode in [
            ExecutionMode::Enabled,
            ExecutionMode::DryRun,
            ExecutionMode::Disabled,
        ] {
            for outcome in outcomes {
                let r = reason(mode, outcome);
                assert!(REASONS.contains(&r), "{r} ({mode:?}, {outcome})");
            }
        }
        assert!(REASONS.contains(&"no_block"));
    }

    #[test]
    fn reasons() {
        let on = ExecutionMode::Enabled;
        assert_eq!(reason(ExecutionMode::DryRun, "proposed"), "mode_change");
        assert_eq!(reason(on, "proposed"), "builder_block");
        assert_eq!(reason(on, "policy"), "policy");
        assert_eq!(reason(on, "timeout"), "builder_died");
        assert_eq!(reason(on, "invalid"), "invalid");
        assert_eq!(reason(on, "validation_timeout"), "late");
        assert_eq!(reason(on, "validation_error"), "local_fallback");
    }
}
