//! Tower layers for the inbound engine API: request metrics, the body-size limit and the
//! method-aware JWT check.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use engine_api::{
    JwtSecret, check_bearer,
    jsonrpc::{self, Incoming, RequestEnvelope},
};
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower::{Layer, Service};

use super::router::{RouteLabel, error_reply};
use crate::{error::MuxError, metrics::Metrics};

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Records each request's latency under the route label the router put on the response.
#[derive(Clone, Debug)]
pub(crate) struct InboundMetricsLayer {
    metrics: Arc<Metrics>,
}

impl InboundMetricsLayer {
    /// Records into `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for InboundMetricsLayer {
    type Service = InboundMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InboundMetrics {
            metrics: self.metrics.clone(),
            inner,
        }
    }
}

/// Service produced by [`InboundMetricsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct InboundMetrics<S> {
    metrics: Arc<Metrics>,
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for InboundMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let label = match res.extensions().get::<RouteLabel>() {
                Some(RouteLabel(l)) => l,
                None if res.status() == http::StatusCode::UNAUTHORIZED => {
                    metrics.rejected("unauthorized");
                    "unauthorized"
                }
                None => "rejected",
            };
            metrics.inbound(label, started.elapsed());
            Ok(res)
        })
    }
}

/// Reads the whole request body, refusing more than `limit` bytes with HTTP 413 and a
/// JSON-RPC error; the inner service gets the body as [`Bytes`].
#[derive(Clone, Debug)]
pub(crate) struct BodyLimitLayer {
    limit: usize,
    metrics: Arc<Metrics>,
}

impl BodyLimitLayer {
    /// Limits bodies to `limit` bytes.
    pub(crate) fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        Self { limit, metrics }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            limit: self.limit,
            metrics: self.metrics.clone(),
            inner,
        }
    }
}

/// Service produced by [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub(crate) struct BodyLimit<S> {
    limit: usize,
    metrics: Arc<Metrics>,
    inner: S,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<Bytes>, Response = Response<Full<Bytes>>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = self.limit;
        let metrics = self.metrics.clone();
        // Take the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    let err = if e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        metrics.rejected("body_too_large");
                        MuxError::BodyTooLarge { limit }
                    } else {
                        metrics.rejected("body_read");
                        MuxError::Body(e.to_string())
                    };
                    return Ok(error_reply(None, &err).map(Full::new));
                }
            };
            inner.call(Request::from_parts(parts, bytes)).await
        })
    }
}

/// Which requests need op-node's JWT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthScope {
    /// Requests carrying an `engine_*` call (alone or anywhere in a batch), and requests whose
    /// methods cannot be read. Other calls pass without a token, as they do with rollup-boost:
    /// the rollup's RPC nodes forward `eth_sendRawTransaction` and tools read the chain
    /// through this port without the secret.
    EngineOnly,
    /// Every request (`--require-auth-all`).
    All,
}

/// Checks op-node's JWT depending on what the (already read) body calls; placed after
/// [`BodyLimitLayer`] and before the router. A token that is present is always validated,
/// whatever the method: a caller that sends one means to authenticate, and a wrong or stale
/// one (wrong secret, clock skew, forgery) must surface at once instead of passing as
/// anonymous until its first engine call.
#[derive(Clone)]
pub(crate) struct MethodAuthLayer {
    secret: JwtSecret,
    scope: AuthScope,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for MethodAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodAuthLayer")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl MethodAuthLayer {
    /// Validates tokens against `secret`, requiring one for `scope`.
    pub(crate) fn new(secret: JwtSecret, scope: AuthScope, metrics: Arc<Metrics>) -> Self {
        Self {
            secret,
            scope,
            metrics,
        }
    }
}

impl<S> Layer<S> for MethodAuthLayer {
    type Service = MethodAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MethodAuth {
            secret: self.secret,
            scope: self.scope,
            metrics: self.metrics.clone(),
            inner,
        }
    }
}

/// Service produced by [`MethodAuthLayer`].
#[derive(Clone)]
pub(crate) struct MethodAuth<S> {
    secret: JwtSecret,
    scope: AuthScope,
    metrics: Arc<Metrics>,
    inner: S,
}

impl<S> std::fmt::Debug for MethodAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodAuth")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn is_engine_method(method: &str) -> bool {
    // Case-insensitive: a spelling no EL would route is refused rather than trusted.
    method
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("engine_"))
}

/// Whether an unauthenticated body may pass: only when every request in it parses and none
/// is an engine call. Anything unreadable needs the token too, since the raw proxy forwards
/// some bodies to the local EL as they are (signed with engine-mux's own JWT), and the EL's
/// parser might read a method where ours could not.
pub(crate) fn needs_token_for_engine_calls(body: &[u8]) -> bool {
    let engine = |r: &RequestEnvelope<'_>| is_engine_method(&r.method);
    match jsonrpc::parse_incoming(body) {
        Err(_) => true,
        Ok(Incoming::Single(r)) => engine(&r),
        Ok(Incoming::Batch(items)) => items.iter().any(|i| {
            serde_json::from_str::<RequestEnvelope<'_>>(i.get()).map_or(true, |r| engine(&r))
        }),
    }
}

fn unauthorized(reason: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(reason)));
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl<S> Service<Request<Bytes>> for MethodAuth<S>
where
    S: Service<Request<Bytes>, Response = Response<Full<Bytes>>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let header = req.headers().get(AUTHORIZATION);
        let refused = if header.is_some() {
            check_bearer(&self.secret, header).err()
        } else if self.scope == AuthScope::All {
            Some("missing Authorization header".to_string())
        } else if needs_token_for_engine_calls(req.body()) {
            Some("missing Authorization header (engine_* methods need op-node's JWT)".to_string())
        } else {
            self.metrics.unauthenticated_passed();
            None
        };
        match refused {
            None => Box::pin(self.inner.call(req)),
            Some(reason) => {
                tracing::warn!(%reason, "rejected unauthenticated request");
                Box::pin(async move { Ok(unauthorized(reason)) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_bodies_need_a_token() {
        let needs = |b: &str| needs_token_for_engine_calls(b.as_bytes());
        assert!(!needs(
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#
        ));
        assert!(!needs(
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x02"]}"#
        ));
        assert!(!needs(
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"}]"#
        ));
        assert!(needs(
            r#"{"jsonrpc":"2.0","id":1,"method":"engine_forkchoiceUpdatedV3","params":[]}"#
        ));
        assert!(needs(
            r#"{"jsonrpc":"2.0","id":1,"method":"engine_exchangeCapabilities","params":[]}"#
        ));
        assert!(needs(
            r#"{"jsonrpc":"2.0","id":1,"method":"ENGINE_getPayloadV3"}"#
        ));
        assert!(needs(
            r#"{"jsonrpc":"2.0","id":1,"method":"engine\u005fgetPayloadV3"}"#
        ));
        assert!(needs(
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"engine_getPayloadV4","params":["0x01"]}]"#
        ));
        // Unreadable items: the proxy would forward the batch as is, so no free pass.
        assert!(needs(
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"id":2,"method":"eth_x","method":"engine_newPayloadV4"}]"#
        ));
        assert!(needs(
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},42]"#
        ));
        assert!(needs("not json"));
        assert!(needs("[]"));
    }
}
