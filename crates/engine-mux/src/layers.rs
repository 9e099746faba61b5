//! Tower layers for the inbound engine API: request metrics and the body-size limit.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower::{Layer, Service};

use crate::{
    error::MuxError,
    metrics::Metrics,
    router::{RouteLabel, error_reply},
};

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Records each request's latency under the route label the router put on the response.
#[derive(Clone, Debug)]
pub struct InboundMetricsLayer {
    metrics: Arc<Metrics>,
}

impl InboundMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
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
pub struct InboundMetrics<S> {
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
pub struct BodyLimitLayer {
    limit: usize,
    metrics: Arc<Metrics>,
}

impl BodyLimitLayer {
    /// Limits bodies to `limit` bytes.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
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
pub struct BodyLimit<S> {
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
