//! The health endpoints on the engine API port, without a JWT: `/healthz` for op-conductor
//! (200 / 206 / 503; with `Accept: application/json`, the same code and a report for
//! people), [`NEXT_HEALTH_PATH`] for op-conductor's JSON health client, `/livez` and
//! `/readyz` for Kubernetes.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use super::{
    HealthStatus, Upstreams,
    report::{NextHealth, report},
};

/// Where op-conductor's `--rollup-boost.next-enabled` client reads its JSON
/// (`--rollup-boost.next-healthcheck-url=http://<engine-mux>:<rpc-port>/kona-rollup-boost/healthz`):
/// the path kona-node's embedded rollup-boost served the same shape on, so a URL written for
/// kona-node only needs its host and port changed.
pub(crate) const NEXT_HEALTH_PATH: &str = "/kona-rollup-boost/healthz";

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    // Plain data with string keys: cannot fail; answer the code alone if it ever does.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Whether the client asked for JSON by name (`*/*` and no `Accept` keep the plain answer
/// op-conductor's status-code client gets).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let is_json = parts
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/json"));
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>() == Ok(0.0)
                })
            });
            is_json && !refused
        })
}

fn code(status: HealthStatus) -> StatusCode {
    StatusCode::from_u16(status.code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// The answer for a GET of `path` with `headers`, if it is a health endpoint.
pub(crate) fn respond(
    upstreams: &Upstreams,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response<Full<Bytes>>> {
    let (live, pending) = match path {
        "/livez" => return Some(text(StatusCode::OK, "ok")),
        "/healthz" | "/readyz" | NEXT_HEALTH_PATH => upstreams.status_and_pending(),
        _ => return None,
    };
    upstreams.metrics.health(live.code());
    Some(match (path, live) {
        ("/readyz", HealthStatus::ServiceUnavailable) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "local execution client unavailable",
        ),
        ("/readyz", _) => text(StatusCode::OK, "ready"),
        (NEXT_HEALTH_PATH, _) => json(StatusCode::OK, &NextHealth::new(live)),
        _ if wants_json(headers) => json(code(live), &report(upstreams, live, pending)),
        _ => text(code(live), ""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn json_only_when_asked_for_by_name() {
        assert!(
            !wants_json(&HeaderMap::new()),
            "op-conductor sends no Accept"
        );
        assert!(!wants_json(&accept("*/*")), "curl's default");
        assert!(!wants_json(&accept("text/plain")));
        assert!(wants_json(&accept("application/json")));
        assert!(wants_json(&accept("text/html, Application/JSON;q=0.9")));
        assert!(!wants_json(&accept("application/json;q=0")), "refused");
        assert!(!wants_json(&accept("application/jsonx")));
    }
}
