//! The listener: one port for HTTP and WebSocket JSON-RPC. An HTTP middleware sends each
//! request either to the local RPC module (when the pending state will answer it) or, byte
//! for byte, to the upstream; WebSocket connections go to the module.

use std::{
    borrow::Cow,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Instant,
};

use alloy_primitives::{Address, B256};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};
use tokio::{net::TcpListener, sync::watch};
use tower::{Layer, Service};

use crate::{
    context::Context,
    metrics::Source,
    pending::state::PendingNonce,
    rpc::{PENDING_METHODS, WS_FORWARDED, is_pending_tag},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Routes HTTP JSON-RPC requests between the local module and the upstream.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    ctx: Arc<Context>,
}

impl RouteLayer {
    /// A layer over `ctx`.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            ctx: self.ctx.clone(),
        }
    }
}

/// The routing service (see [`RouteLayer`]).
#[derive(Debug, Clone)]
pub struct Route<S> {
    inner: S,
    ctx: Arc<Context>,
}

#[derive(Debug, Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

fn param(params: Option<&RawValue>, i: usize) -> Option<Value> {
    let list: Vec<Value> = serde_json::from_str(params?.get()).ok()?;
    list.into_iter().nth(i)
}

fn parse_param<T: serde::de::DeserializeOwned>(params: Option<&RawValue>, i: usize) -> Option<T> {
    serde_json::from_value(param(params, i)?).ok()
}

/// Whether the pending state answers this call right now.
fn answered_here(ctx: &Context, call: &Probe<'_>) -> bool {
    let now = Instant::now();
    match call.method.as_ref() {
        "op_supportedCapabilities" => true,
        "eth_call" | "eth_estimateGas" => {
            is_pending_tag(param(call.params, 1).as_ref())
                && param(call.params, 2).is_none()
                && !ctx.read().chain(now).is_empty()
        }
        "eth_getBlockByNumber" => {
            is_pending_tag(param(call.params, 0).as_ref()) && ctx.read().tip(now).is_some()
        }
        "eth_getTransactionReceipt" | "eth_getTransactionByHash" => {
            parse_param::<B256>(call.params, 0)
                .is_some_and(|h| ctx.read().find_tx(&h, now).is_some())
        }
        // Any balance, code or storage at pending: the module derives, reads it from the
        // execution of the pending chain or forwards it.
        "eth_getBalance" | "eth_getCode" => {
            is_pending_tag(param(call.params, 1).as_ref()) && !ctx.read().chain(now).is_empty()
        }
        "eth_getStorageAt" => {
            is_pending_tag(param(call.params, 2).as_ref()) && !ctx.read().chain(now).is_empty()
        }
        "eth_getLogs" => parse_param::<alloy_rpc_types_eth::Filter>(call.params, 0)
            .is_some_and(|f| crate::rpc::reaches_pending(ctx, &f)),
        "eth_getTransactionCount" => {
            is_pending_tag(param(call.params, 1).as_ref())
                && parse_param::<Address>(call.params, 0).is_some_and(|a| {
                    matches!(
                        ctx.read().nonce(&a, now),
                        Some(PendingNonce::Known(_) | PendingNonce::Relative { .. })
                    )
                })
        }
        _ => false,
    }
}

/// Whether the module registers `method` (and so can answer or forward it itself).
fn registered(method: &str) -> bool {
    method == "op_supportedCapabilities"
        || PENDING_METHODS.contains(&method)
        || WS_FORWARDED.contains(&method)
}

/// Where a request body goes, and how many calls it holds.
fn route(ctx: &Context, body: &[u8]) -> (bool, usize) {
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let calls: Vec<Probe<'_>> = if batch {
        match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(_) => return (false, 1),
        }
    } else {
        match serde_json::from_slice(body) {
            Ok(c) => vec![c],
            Err(_) => return (false, 1),
        }
    };
    // A batch goes to the module when the pending state answers at least one of its calls and
    // the module knows every method (it forwards the rest one by one); otherwise the whole
    // body is proxied untouched.
    let local =
        calls.iter().all(|c| registered(&c.method)) && calls.iter().any(|c| answered_here(ctx, c));
    (local, calls.len())
}

/// [`route`] for the fuzz targets (`fuzz/`): whether `body` is answered here, and how many
/// calls it holds. Not an API.
#[doc(hidden)]
pub fn fuzz_route(ctx: &Context, body: &[u8]) -> (bool, usize) {
    route(ctx, body)
}

fn json_response(status: StatusCode, body: String) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from(body))
        .unwrap_or_else(|_| Response::new(HttpBody::from(String::new())))
}

fn rpc_error(status: StatusCode, code: i32, message: &str) -> HttpResponse {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    json_response(status, body.to_string())
}

impl<S, B> Service<HttpRequest<B>> for Route<S>
where
    S: Service<Request<Full<Bytes>>, Response = HttpResponse, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let is_upgrade = parts.headers.contains_key(header::UPGRADE);
            if parts.method != http::Method::POST || is_upgrade {
                // WebSocket handshakes and anything not a JSON-RPC POST: the module's server.
                let empty = Request::from_parts(parts, Full::new(Bytes::new()));
                return inner.call(empty).await;
            }
            let limit = ctx.config.max_request_bytes as usize;
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return Ok(rpc_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        engine_types::codes::INVALID_REQUEST,
                        "request body too large or unreadable",
                    ));
                }
            };
            let (local, calls) = route(&ctx, &bytes);
            if local {
                return inner
                    .call(Request::from_parts(parts, Full::new(bytes)))
                    .await;
            }
            for _ in 0..calls {
                ctx.metrics.answered(Source::Upstream);
            }
            match ctx
                .upstream
                .forward(&parts.headers, bytes, ctx.config.upstream.timeout)
                .await
            {
                Ok(res) => {
                    let (parts, body) = res.into_parts();
                    Ok(Response::from_parts(parts, HttpBody::new(Full::new(body))))
                }
                Err(e) => Ok(rpc_error(
                    StatusCode::BAD_GATEWAY,
                    engine_types::codes::INTERNAL_ERROR,
                    &format!("upstream unavailable: {e}"),
                )),
            }
        })
    }
}

/// Serves `GET /metrics` until `stop` flips.
pub async fn serve_metrics(
    listener: TcpListener,
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%e, "metrics accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move {
                    let res = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(ctx.metrics.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::new()))
                    };
                    Ok::<_, Infallible>(res.unwrap_or_default())
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Address a listener bound to, for logs.
pub fn bound(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use engine_api::{Upstream, UpstreamConfig};

    use super::*;
    use crate::{cli::Args, config::Config};

    fn ctx() -> Arc<Context> {
        let config = Config::try_from(Args::try_parse_from(["flashblocks-rpc"]).unwrap()).unwrap();
        let upstream = Upstream::new(UpstreamConfig {
            name: "upstream",
            url: config.upstream.url.clone(),
            secret: config.upstream.jwt,
            timeout: config.upstream.timeout,
            max_response_bytes: 1024,
        });
        Context::new(config, upstream)
    }

    fn body(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn requests_route_to_the_module_only_when_pending_state_answers() {
        let ctx = ctx();
        let call = |method: &str, params: serde_json::Value| serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let caps = call("op_supportedCapabilities", serde_json::json!([]));
        let receipt = call("eth_getTransactionReceipt", serde_json::json!([B256::ZERO]));
        let pending_block = call(
            "eth_getBlockByNumber",
            serde_json::json!(["pending", false]),
        );
        let eth_call = call("eth_call", serde_json::json!([{}, "latest"]));
        let trace = call("debug_traceTransaction", serde_json::json!([B256::ZERO]));
        // No pending state: pending questions are the upstream's.
        assert_eq!(route(&ctx, &body(receipt.clone())), (false, 1));
        assert_eq!(route(&ctx, &body(pending_block)), (false, 1));
        assert_eq!(route(&ctx, &body(caps.clone())), (true, 1));
        for method in ["eth_call", "eth_estimateGas"] {
            let at_pending = call(method, serde_json::json!([{}, "pending"]));
            assert_eq!(route(&ctx, &body(at_pending)), (false, 1), "{method}");
        }
        // A batch with one local answer and only known methods: the module (which forwards
        // the rest); with an unknown method: proxied whole.
        assert_eq!(
            route(
                &ctx,
                &body(serde_json::json!([caps.clone(), eth_call.clone()]))
            ),
            (true, 2)
        );
        assert_eq!(
            route(&ctx, &body(serde_json::json!([caps, trace]))),
            (false, 2)
        );
        assert_eq!(
            route(&ctx, &body(serde_json::json!([receipt, eth_call]))),
            (false, 2)
        );
        assert_eq!(route(&ctx, b"not json"), (false, 1));
        assert_eq!(route(&ctx, b"[]"), (false, 0));
    }
}
