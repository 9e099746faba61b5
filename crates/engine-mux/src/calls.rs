//! Calls to an upstream (the local EL or a builder), each traced as a span and timed into the
//! per-upstream latency metrics. Every component that talks to an upstream goes through here.

use std::time::{Duration, Instant};

use bytes::Bytes;
use engine_api::{Upstream, UpstreamError};
use http::{HeaderMap, Response};
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

/// Forwards a request body to `upstream` unchanged. `decoded`: the caller reads the answer
/// itself, so it is asked uncompressed and decoded if compressed anyway; otherwise the answer
/// comes back byte for byte, content coding and all (the raw proxy).
pub(crate) async fn forward(
    metrics: &Metrics,
    upstream: &Upstream,
    method: &'static str,
    headers: &HeaderMap,
    body: Bytes,
    timeout: Duration,
    decoded: bool,
) -> Result<Response<Bytes>, UpstreamError> {
    let started = Instant::now();
    let span = tracing::info_span!("upstream", upstream = upstream.name(), method);
    let res = if decoded {
        upstream
            .forward_decoded(headers, body, timeout)
            .instrument(span)
            .await
    } else {
        upstream
            .forward(headers, body, timeout)
            .instrument(span)
            .await
    };
    let outcome = match &res {
        Ok(r) if r.status().is_success() => "ok",
        Ok(_) => "http",
        Err(e) => e.kind(),
    };
    metrics.upstream_call(upstream.name(), method, outcome, started.elapsed());
    res
}
