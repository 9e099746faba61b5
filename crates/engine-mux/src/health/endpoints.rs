//! The health endpoints on the engine API port, without a JWT: `/healthz` for op-conductor
//! (200 / 206 / 503), `/livez` and `/readyz` for Kubernetes.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::{HealthStatus, Upstreams};

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res
}

/// The answer for a GET of `path`, if it is a health endpoint.
pub fn respond(upstreams: &Upstreams, path: &str) -> Option<Response<Full<Bytes>>> {
    let live = match path {
        "/livez" => return Some(text(StatusCode::OK, "ok")),
        "/healthz" | "/readyz" => upstreams.status(),
        _ => return None,
    };
    upstreams.metrics.health(live.code());
    Some(match (path, live) {
        ("/readyz", HealthStatus::ServiceUnavailable) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "local execution client unavailable",
        ),
        ("/readyz", _) => text(StatusCode::OK, "ready"),
        _ => text(
            StatusCode::from_u16(live.code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "",
        ),
    })
}
