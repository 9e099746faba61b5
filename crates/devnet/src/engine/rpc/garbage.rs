//! The `garbage` builder fault: an HTTP layer on the auth listener that, while the fault is on,
//! answers every `engine_*` call (and `flashblocks_forkchoiceUpdatedV3`) with garbage, in turn:
//! an HTTP 200 whose body is not JSON, a JSON-RPC response whose `result` has the wrong shape,
//! and the real answer cut short. The call still reaches the engine (a builder whose answers get
//! mangled on the way out, so its flashblocks keep flowing); `eth_*` calls are answered
//! normally.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::BodyExt;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde_json::{Value, json};
use tower::{BoxError, Layer, Service};

use crate::engine::faults::Faults;

/// Mangles the answers to `engine_*` calls while `faults` says `garbage`.
#[derive(Debug, Clone)]
pub struct GarbageLayer {
    faults: Option<Arc<Faults>>,
    max_inspected: usize,
}

impl GarbageLayer {
    /// A layer following `faults` (`None`: never garbage, e.g. the local engine) that reads
    /// request bodies up to `max_inspected` bytes to find the method (the server's own limit).
    pub fn new(faults: Option<Arc<Faults>>, max_inspected: usize) -> Self {
        Self {
            faults,
            max_inspected,
        }
    }
}

impl<S> Layer<S> for GarbageLayer {
    type Service = GarbageService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GarbageService {
            faults: self.faults.clone(),
            max_inspected: self.max_inspected,
            inner,
        }
    }
}

/// See [`GarbageLayer`].
#[derive(Debug, Clone)]
pub struct GarbageService<S> {
    faults: Option<Arc<Faults>>,
    max_inspected: usize,
    inner: S,
}

/// Whether a JSON-RPC request (or batch) calls an Engine API method, and the first call's id.
fn engine_call(body: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let calls = match &value {
        Value::Array(calls) => calls.as_slice(),
        one => std::slice::from_ref(one),
    };
    let is_engine = |c: &Value| {
        c.get("method")
            .and_then(Value::as_str)
            .is_some_and(|m| m.starts_with("engine_") || m.starts_with("flashblocks_"))
    };
    calls
        .iter()
        .find(|c| is_engine(c))
        .map(|c| c.get("id").cloned().unwrap_or(Value::Null))
}

/// The garbage for `turn` (0, 1, 2) in place of `real`, the answer to the call with `id`.
pub fn garbage_body(turn: u64, id: &Value, real: &[u8]) -> Vec<u8> {
    match turn {
        // A proxy's error page where JSON was expected.
        0 => b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
        // Well-formed JSON-RPC, but no payload status, payload id or envelope in it.
        1 => json!({"jsonrpc": "2.0", "id": id, "result": {"garbage": [1, 2, 3]}})
            .to_string()
            .into_bytes(),
        // The real answer cut in half (a sender that died mid-write).
        _ => real[..real.len() / 2].to_vec(),
    }
}

impl<S, B> Service<HttpRequest<B>> for GarbageService<S>
where
    S: Service<HttpRequest<HttpBody>, Response = HttpResponse<HttpBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse<HttpBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        let faults = self.faults.clone().filter(|f| f.is_garbage());
        let max_inspected = self.max_inspected;
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(faults) = faults else {
            return Box::pin(inner.call(req.map(HttpBody::new)));
        };
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = http_body_util::Limited::new(body, max_inspected)
                .collect()
                .await?
                .to_bytes();
            let id = engine_call(&bytes);
            let response = inner
                .call(HttpRequest::from_parts(
                    parts,
                    HttpBody::from(bytes.to_vec()),
                ))
                .await?;
            let Some(id) = id else {
                return Ok(response);
            };
            let real = response.into_body().collect().await?.to_bytes();
            let turn = faults.next_garbage_turn();
            tracing::debug!(turn, "fault garbage: mangling an engine answer");
            let mut out = Response::new(HttpBody::from(garbage_body(turn, &id, &real)));
            *out.status_mut() = StatusCode::OK;
            out.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_engine_calls_are_mangled_and_each_kind_is_not_a_valid_answer() {
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"engine_getPayloadV4","params":["0x01"]}"#;
        assert_eq!(engine_call(call), Some(json!(7)));
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"engine_newPayloadV4"}]"#;
        assert_eq!(engine_call(batch), Some(json!(2)));
        assert_eq!(
            engine_call(br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#),
            None
        );
        assert_eq!(engine_call(b"not json"), None);

        let real = br#"{"jsonrpc":"2.0","id":7,"result":{"payloadStatus":{"status":"VALID"}}}"#;
        let not_json = garbage_body(0, &json!(7), real);
        assert!(serde_json::from_slice::<Value>(&not_json).is_err());
        let wrong_shape: Value = serde_json::from_slice(&garbage_body(1, &json!(7), real)).unwrap();
        assert_eq!(wrong_shape["id"], json!(7));
        assert!(wrong_shape["result"].get("payloadStatus").is_none());
        let truncated = garbage_body(2, &json!(7), real);
        assert!(real.starts_with(&truncated) && truncated.len() < real.len());
        assert!(serde_json::from_slice::<Value>(&truncated).is_err());
    }
}
