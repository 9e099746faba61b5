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
    pending::state::{PendingBalance, PendingNonce},
    rpc::is_pending_tag,
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
        "eth_getBlockByNumber" => {
            is_pending_tag(param(call.params, 0).as_ref()) && ctx.read().tip(now).is_some()
        }
        "eth_getTransactionReceipt" | "eth_getTransactionByHash" => {
            parse_param::<B256>(call.params, 0)
                .is_some_and(|h| ctx.read().find_tx(&h, now).is_some())
        }
        "eth_getBalance" => {
            is_pending_tag(param(call.params, 1).as_ref())
                && parse_param::<Address>(call.params, 0).is_some_and(|a| {
                    matches!(
                        ctx.read().balance(&a, now),
                        Some(PendingBalance::Known(_) | PendingBalance::Relative { .. })
                    )
                })
        }
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
    let local = !calls.is_empty() && calls.iter().all(|c| answered_here(ctx, c));
    (local, calls.len())
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
                        -32600,
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
                    crate::rpc::INTERNAL_ERROR,
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
