//! The health answers built from the evidence: the JSON op-conductor's "next" health client
//! reads, and the JSON `/healthz` gives people who ask for it (`Accept: application/json`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{HealthStatus, Pending, Tolerance, Upstreams};
use crate::{
    builder::Builder,
    execution_mode::ExecutionMode,
    health::evidence::{BuilderState, LastError, unix_ms},
};

/// The body op-conductor reads with `--rollup-boost.next-enabled`: `rollup_boost_health` is
/// one of `Healthy`, `PartialContent`, `ServiceUnavailable`, always under HTTP 200 (its
/// client refuses any other code). `version` is this build's, as kona-node gave its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NextHealth {
    /// engine-mux's version.
    pub version: String,
    /// The same verdict `/healthz` gives by status code.
    pub rollup_boost_health: HealthStatus,
}

impl NextHealth {
    /// The answer for `status`.
    pub(crate) fn new(status: HealthStatus) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            rollup_boost_health: status,
        }
    }
}

/// `/healthz` for people: the verdict and, for each component, its state, since when and the
/// evidence that put it there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The HTTP status code `/healthz` answers (200, 206, 503).
    pub status: u16,
    /// The same verdict by name.
    pub health: HealthStatus,
    /// What the builders' evidence says that the tolerance is not showing yet, if anything.
    pub pending: Option<PendingReport>,
    /// `--health-degrade-after-ms` / `--health-recover-after-ms`.
    pub tolerance: ToleranceReport,
    /// The execution mode; builders count towards health only when it talks to them.
    pub execution_mode: ModeReport,
    /// The local EL.
    pub local: LocalReport,
    /// The local EL's latest block as the probe last saw it; `null` before that.
    pub unsafe_head: Option<UnsafeHeadReport>,
    /// Each builder.
    pub builders: Vec<BuilderReport>,
}

/// A change the tolerance holds back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReport {
    /// `206` (builders failing, not shown yet) or `200` (builders back, 206 still shown).
    pub towards: u16,
    /// How long until it shows if the evidence holds (milliseconds).
    pub in_ms: u64,
}

/// The tolerance in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToleranceReport {
    /// Builders failing this long before 206 (milliseconds).
    pub degrade_after_ms: u64,
    /// A builder fine this long before 206 clears (milliseconds).
    pub recover_after_ms: u64,
}

/// The execution mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeReport {
    /// `enabled`, `dry_run` or `disabled`.
    pub state: ExecutionMode,
    /// Whether builders count towards health in this mode.
    pub builders_count: bool,
}

/// The local EL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReport {
    /// `healthy` or `failing` (503).
    pub state: LocalState,
    /// When it entered that state (Unix milliseconds).
    pub since_unix_ms: u64,
    /// The last bad thing seen of it, even if it has recovered since; `null` if none.
    pub last_error: Option<LastError>,
}

/// The local EL's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    /// Answering, its head fresh.
    Healthy,
    /// A failed call not yet cleared, or its head stale or unreadable.
    Failing,
}

/// The local EL's latest block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsafeHeadReport {
    /// Its number.
    pub number: u64,
    /// Its timestamp (Unix seconds).
    pub timestamp: u64,
    /// Its age now (seconds; the probe reads it every `--health-check-interval`, faster while
    /// something is unhealthy).
    pub age_s: u64,
    /// `--max-unsafe-interval`: older than this is stale (503).
    pub max_age_s: u64,
}

/// One builder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderReport {
    /// Its configured name (its URL is left out: this port answers without a JWT).
    pub name: String,
    /// Whether it is enabled (`debug_setBuilderEnabled`).
    pub enabled: bool,
    /// Whether it counts towards health now (enabled, and the mode talks to builders).
    pub counted: bool,
    /// `healthy`, `failing` (asked to build, its last block failed) or `skipped`
    /// (unreachable or out of sync).
    pub state: BuilderState,
    /// When it entered that state (Unix milliseconds).
    pub since_unix_ms: u64,
    /// Its part in the last block: `proposed`, `not_chosen`, or the fallback reason
    /// (`timeout`, `invalid`, `attributes_mismatch`, ...); `none` before its first block.
    pub last_outcome: String,
    /// When a block last failed against it (Unix milliseconds); `null` if none has.
    pub last_block_failure_unix_ms: Option<u64>,
    /// The last reachability problem seen of it, even if it has recovered since.
    pub last_error: Option<LastError>,
    /// Its latest block number as last seen; `null` before that.
    pub head: Option<u64>,
    /// How many blocks it was behind the local EL then.
    pub behind: Option<u64>,
    /// Its flashblocks stream, when it has one.
    pub flashblocks: Option<FlashblocksReport>,
}

/// A builder's flashblocks stream, from the metrics it keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashblocksReport {
    /// Whether the WebSocket is connected now; `null` before the first attempt ended.
    pub connected: Option<bool>,
    /// Reconnect attempts so far.
    pub reconnects: u64,
}

/// The value of the series `name` with `builder="<builder>"` in a Prometheus text exposition.
fn series(text: &str, name: &str, builder: &str) -> Option<f64> {
    let label = format!("builder=\"{builder}\"");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(&label))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn builder_report(b: &Builder, counted: bool, metrics: Option<&str>) -> BuilderReport {
    let h = b.health();
    let (state, since) = h.state();
    let heads = h.heads();
    BuilderReport {
        name: b.name().to_string(),
        enabled: b.enabled(),
        counted,
        state,
        since_unix_ms: unix_ms(since),
        last_outcome: b.last_outcome().to_string(),
        last_block_failure_unix_ms: h.last_block_failure().map(unix_ms),
        last_error: h.last_error(),
        head: heads.map(|x| x.builder),
        behind: heads.map(|x| x.local.saturating_sub(x.builder)),
        flashblocks: b.flashblocks().map(|_| FlashblocksReport {
            connected: metrics
                .and_then(|m| series(m, "engine_mux_flashblocks_connected", b.name()))
                .map(|v| v > 0.0),
            reconnects: metrics
                .and_then(|m| series(m, "engine_mux_flashblocks_reconnects_total", b.name()))
                .map_or(0, |v| v as u64),
        }),
    }
}

fn pending_report(p: Pending) -> PendingReport {
    PendingReport {
        towards: if p.degrading { 206 } else { 200 },
        in_ms: u64::try_from(p.remaining.as_millis()).unwrap_or(u64::MAX),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The report for `status` (as `/healthz` answers it now, with `pending` held back).
pub(crate) fn report(
    up: &Upstreams,
    status: HealthStatus,
    pending: Option<Pending>,
) -> HealthReport {
    let mode = up.mode.get();
    let counts = mode.talks_to_builder();
    let local = up.local.health();
    let verdict = local.verdict();
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Rendered only when a builder has a stream: the gauges live in the metrics books.
    let metrics = up
        .builders
        .iter()
        .any(|b| b.flashblocks().is_some())
        .then(|| up.metrics.render());
    let Tolerance {
        degrade_after,
        recover_after,
    } = up.debounce.tolerance();
    HealthReport {
        status: status.code(),
        health: status,
        pending: pending.map(pending_report),
        tolerance: ToleranceReport {
            degrade_after_ms: ms(degrade_after),
            recover_after_ms: ms(recover_after),
        },
        execution_mode: ModeReport {
            state: mode,
            builders_count: counts,
        },
        local: LocalReport {
            state: if verdict.failing {
                LocalState::Failing
            } else {
                LocalState::Healthy
            },
            since_unix_ms: unix_ms(verdict.since_wall),
            last_error: local.last_error(),
        },
        unsafe_head: local.head().map(|h| UnsafeHeadReport {
            number: h.number,
            timestamp: h.timestamp,
            age_s: now_s.saturating_sub(h.timestamp),
            max_age_s: up.max_unsafe_interval.as_secs(),
        }),
        builders: up
            .builders
            .iter()
            .map(|b| builder_report(b, counts && b.enabled(), metrics.as_deref()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// op-conductor's `RollupBoostNextHealthResponse` (op-conductor/client/rollupboost_next.go
    /// in the optimism monorepo), field for field: Go's decoder matches `version` and
    /// `rollup_boost_health` as strings and ignores anything else.
    #[derive(Deserialize)]
    struct RollupBoostNextHealthResponse {
        version: String,
        rollup_boost_health: String,
    }

    /// The switch op-conductor's `Healthcheck` applies to `rollup_boost_health`.
    fn conductor_reads(body: &[u8]) -> Result<&'static str, String> {
        let p: RollupBoostNextHealthResponse =
            serde_json::from_slice(body).map_err(|e| e.to_string())?;
        assert!(!p.version.is_empty());
        match p.rollup_boost_health.as_str() {
            "Healthy" => Ok("healthy"),
            "PartialContent" => Ok("partial"),
            "ServiceUnavailable" => Ok("unhealthy"),
            other => Err(format!("unexpected rollup_boost_health: {other:?}")),
        }
    }

    #[test]
    fn next_health_is_the_shape_op_conductor_parses() {
        for (status, read) in [
            (HealthStatus::Healthy, "healthy"),
            (HealthStatus::PartialContent, "partial"),
            (HealthStatus::ServiceUnavailable, "unhealthy"),
        ] {
            let body = serde_json::to_vec(&NextHealth::new(status)).unwrap();
            assert_eq!(conductor_reads(&body), Ok(read), "{status:?}");
        }
        assert_eq!(
            serde_json::to_value(NextHealth::new(HealthStatus::PartialContent)).unwrap(),
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "rollup_boost_health": "PartialContent",
            })
        );
    }

    #[test]
    fn series_reads_the_builders_own_line() {
        let text = "# TYPE engine_mux_flashblocks_connected gauge\n\
            engine_mux_flashblocks_connected{builder=\"a\"} 0\n\
            engine_mux_flashblocks_connected{builder=\"b\"} 1\n\
            engine_mux_flashblocks_connected_other{builder=\"c\"} 1\n";
        assert_eq!(
            series(text, "engine_mux_flashblocks_connected", "a"),
            Some(0.0)
        );
        assert_eq!(
            series(text, "engine_mux_flashblocks_connected", "b"),
            Some(1.0)
        );
        assert_eq!(
            series(text, "engine_mux_flashblocks_connected", "c"),
            None,
            "a longer metric name is another series"
        );
    }
}
