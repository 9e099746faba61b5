//! Calls to a builder, each traced as a span and timed into the per-upstream latency metrics.
//! Every component that talks to a builder goes through here; the local EL's calls are traced
//! and timed the same way behind its `LocalEngine` (`local.rs`).

use std::time::{Duration, Instant};

use engine_api::{Upstream, UpstreamError};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::metrics::Metrics;

/// A typed JSON-RPC call to `upstream`.
pub(crate) async fn call<R: DeserializeOwned>(
    metrics: &Metrics,
    upstream: &Upstream,
    method: &'static str,
    params: &(impl Serialize + ?Sized),
    timeout: Duration,
) -> Result<R, UpstreamError> {
    timed(
        metrics,
        upstream,
        method,
        upstream.call(method, &params, timeout),
    )
    .await
}

/// A JSON-RPC call to `upstream` whose result is kept as the upstream sent it: read once,
/// not parsed again into a second copy (what `call::<Box<RawValue>>` would do).
pub(crate) async fn call_raw(
    metrics: &Metrics,
    upstream: &Upstream,
    method: &'static str,
    params: &(impl Serialize + ?Sized),
    timeout: Duration,
) -> Result<Box<RawValue>, UpstreamError> {
    timed(
        metrics,
        upstream,
        method,
        upstream.call_raw(method, &params, timeout),
    )
    .await
}

/// Runs one call to `upstream` in its span and times it into the metrics.
async fn timed<R>(
    metrics: &Metrics,
    upstream: &Upstream,
    method: &'static str,
    call: impl Future<Output = Result<R, UpstreamError>>,
) -> Result<R, UpstreamError> {
    let started = Instant::now();
    let res = call
        .instrument(tracing::info_span!(
            "upstream",
            upstream = upstream.name(),
            method
        ))
        .await;
    let outcome = match &res {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics.upstream_call(upstream.name(), method, outcome, started.elapsed());
    res
}
