//! Routing, exactly as the routing table in docs/architecture.md: the engine methods the multiplexer owns, other
//! engine methods to the local EL only, transaction/miner calls also copied to the builder,
//! everything else proxied byte for byte.

use std::sync::Arc;

use bytes::Bytes;
use engine_api::{
    PayloadVersion, content_encoding,
    jsonrpc::{self, Incoming, RequestEnvelope},
};
use http::{HeaderMap, Response};
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::{error::MuxError, mux::Mux};

/// Where a method goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `engine_forkchoiceUpdatedV3`.
    ForkchoiceUpdated,
    /// `engine_getPayloadV3/V4/V5`.
    GetPayload(PayloadVersion),
    /// `engine_newPayloadV3/V4`.
    NewPayload(&'static str),
    /// Any other `engine_*`: local EL only.
    LocalEngine,
    /// `eth_sendRawTransaction*`, `miner_*`: local EL, copied to the builder.
    ProxyAndCopy,
    /// Everything else: raw proxy to the local EL.
    Proxy,
}

impl Route {
    /// The route of `method`.
    pub fn of(method: &str) -> Self {
        match method {
            "engine_forkchoiceUpdatedV3" => Self::ForkchoiceUpdated,
            "engine_newPayloadV3" => Self::NewPayload("engine_newPayloadV3"),
            "engine_newPayloadV4" => Self::NewPayload("engine_newPayloadV4"),
            m if m.starts_with("engine_") => {
                PayloadVersion::of_get_payload(m).map_or(Self::LocalEngine, Self::GetPayload)
            }
            m if m.starts_with("eth_sendRawTransaction") || m.starts_with("miner_") => {
                Self::ProxyAndCopy
            }
            _ => Self::Proxy,
        }
    }

    /// Low-cardinality metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ForkchoiceUpdated => "engine_forkchoiceUpdatedV3",
            Self::GetPayload(v) => v.get_payload_method(),
            Self::NewPayload(m) => m,
            Self::LocalEngine => "engine_other",
            Self::ProxyAndCopy => "proxy_copied",
            Self::Proxy => "proxy",
        }
    }

    fn is_mux(self) -> bool {
        matches!(
            self,
            Self::ForkchoiceUpdated | Self::GetPayload(_) | Self::NewPayload(_)
        )
    }
}

/// Marks a response with the route it took, for the metrics layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteLabel(pub &'static str);

fn json(body: Bytes, status: http::StatusCode) -> Response<Bytes> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// Answers with a JSON-RPC error for `err`.
pub(crate) fn error_reply(id: Option<&RawValue>, err: &MuxError) -> Response<Bytes> {
    json(
        jsonrpc::error_response(id, &err.to_error_object()),
        err.http_status(),
    )
}

/// Handles one request body (single or batch).
pub(crate) async fn handle(state: &Arc<Mux>, headers: &HeaderMap, body: Bytes) -> Response<Bytes> {
    match jsonrpc::parse_incoming(&body) {
        Err(e) => {
            state.metrics.rejected("malformed");
            let err = match e {
                jsonrpc::EnvelopeError::Parse(m) => MuxError::Parse(m),
                jsonrpc::EnvelopeError::Invalid(m) => MuxError::InvalidRequest(m),
            };
            let mut res = error_reply(None, &err);
            res.extensions_mut().insert(RouteLabel("malformed"));
            res
        }
        Ok(Incoming::Single(req)) => {
            let route = Route::of(&req.method);
            let span = tracing::info_span!("rpc", method = %req.method);
            engine_api::trace_context::continue_from(headers, &span);
            let mut res = single(state, route, &req, headers, body.clone())
                .instrument(span)
                .await;
            res.extensions_mut().insert(RouteLabel(route.label()));
            res
        }
        Ok(Incoming::Batch(items)) => {
            let span = tracing::info_span!("rpc_batch", items = items.len());
            engine_api::trace_context::continue_from(headers, &span);
            let mut res = batch(state, &items, headers, body.clone())
                .instrument(span)
                .await;
            res.extensions_mut().insert(RouteLabel("batch"));
            res
        }
    }
}

async fn single(
    state: &Arc<Mux>,
    route: Route,
    req: &RequestEnvelope<'_>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Bytes> {
    match route {
        Route::ForkchoiceUpdated => {
            state
                .forkchoice_updated(req.id, req.params, headers, body)
                .await
        }
        Route::GetPayload(v) => {
            state
                .get_payload(v, req.id, req.params, headers, body)
                .await
        }
        Route::NewPayload(m) => {
            state
                .new_payload(m, req.id, req.params, headers, body)
                .await
        }
        Route::ProxyAndCopy => {
            state.copy_to_builder(headers, body.clone());
            proxy(state, req.id, headers, body).await
        }
        Route::LocalEngine | Route::Proxy => proxy(state, req.id, headers, body).await,
    }
}

/// Byte-for-byte proxy to the local EL: its status, headers and body come back unchanged.
async fn proxy(
    state: &Mux,
    id: Option<&RawValue>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Bytes> {
    match state.proxy(headers, body).await {
        Ok(res) => res,
        Err(e) => {
            tracing::warn!(error = %e, "proxying to the local execution client failed");
            error_reply(id, &MuxError::Upstream(e))
        }
    }
}

async fn batch(
    state: &Arc<Mux>,
    items: &[&RawValue],
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Bytes> {
    let parsed: Vec<Result<RequestEnvelope<'_>, _>> = items
        .iter()
        .map(|i| serde_json::from_str::<RequestEnvelope<'_>>(i.get()))
        .collect();
    let any_mux = parsed
        .iter()
        .any(|p| p.as_ref().is_ok_and(|r| Route::of(&r.method).is_mux()));
    if !any_mux {
        // No engine call the multiplexer owns: the whole batch goes through untouched, and
        // the transaction/miner items are copied to the builder as a batch of their own.
        let copies: Vec<&RawValue> = items
            .iter()
            .zip(&parsed)
            .filter(|(_, p)| {
                p.as_ref()
                    .is_ok_and(|r| Route::of(&r.method) == Route::ProxyAndCopy)
            })
            .map(|(i, _)| *i)
            .collect();
        if !copies.is_empty()
            && let Ok(b) = serde_json::to_vec(&copies)
        {
            state.copy_to_builder(headers, Bytes::from(b));
        }
        return proxy(state, None, headers, body).await;
    }
    // Engine calls inside a batch are handled one by one, in order, like single requests.
    // engine-mux reads every item's answer, so none is asked compressed (and any is decoded).
    let mut headers = headers.clone();
    headers.remove(http::header::ACCEPT_ENCODING);
    let headers = &headers;
    let mut out = Vec::with_capacity(items.len());
    for (item, req) in items.iter().zip(parsed) {
        let res = match req {
            Ok(req) => {
                let route = Route::of(&req.method);
                single(
                    state,
                    route,
                    &req,
                    headers,
                    Bytes::copy_from_slice(item.get().as_bytes()),
                )
                .await
            }
            Err(e) => error_reply(None, &MuxError::InvalidRequest(e.to_string())),
        };
        let (parts, body) = res.into_parts();
        let body = content_encoding::decode(
            parts.headers.get(http::header::CONTENT_ENCODING),
            body,
            state.local.max_response_bytes(),
        )
        .await;
        match body.map(|b| serde_json::from_slice::<Box<RawValue>>(&b)) {
            Ok(Ok(v)) => out.push(v),
            _ => {
                let err = MuxError::InvalidRequest(
                    "upstream answered a batch item with a non-JSON body".into(),
                );
                if let Ok(v) = RawValue::from_string(
                    String::from_utf8_lossy(&jsonrpc::error_response(None, &err.to_error_object()))
                        .into_owned(),
                ) {
                    out.push(v);
                }
            }
        }
    }
    json(
        Bytes::from(serde_json::to_vec(&out).unwrap_or_default()),
        http::StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table() {
        assert_eq!(
            Route::of("engine_forkchoiceUpdatedV3"),
            Route::ForkchoiceUpdated
        );
        assert_eq!(
            Route::of("engine_getPayloadV3"),
            Route::GetPayload(PayloadVersion::V3)
        );
        assert_eq!(
            Route::of("engine_getPayloadV4"),
            Route::GetPayload(PayloadVersion::V4)
        );
        assert_eq!(
            Route::of("engine_getPayloadV5"),
            Route::GetPayload(PayloadVersion::V5)
        );
        assert_eq!(
            Route::of("engine_newPayloadV3"),
            Route::NewPayload("engine_newPayloadV3")
        );
        assert_eq!(
            Route::of("engine_newPayloadV4"),
            Route::NewPayload("engine_newPayloadV4")
        );
        assert_eq!(Route::of("engine_exchangeCapabilities"), Route::LocalEngine);
        assert_eq!(Route::of("engine_forkchoiceUpdatedV2"), Route::LocalEngine);
        assert_eq!(Route::of("eth_sendRawTransaction"), Route::ProxyAndCopy);
        assert_eq!(
            Route::of("eth_sendRawTransactionConditional"),
            Route::ProxyAndCopy
        );
        assert_eq!(Route::of("miner_setMaxDASize"), Route::ProxyAndCopy);
        assert_eq!(Route::of("eth_getBlockByNumber"), Route::Proxy);
        assert_eq!(Route::of("debug_traceTransaction"), Route::Proxy);
    }
}
