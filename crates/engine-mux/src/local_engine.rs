//! The local execution client as engine-mux uses it: JSON-RPC calls and forwarded request
//! bodies, each within a deadline, answered or failed with an [`UpstreamError`]. Beside the EL
//! (the sidecar) it is an [`engine_api::Upstream`] over HTTP with JWT, TLS and compression; a
//! node that links engine-mux and has its own engine in process (a reth-based sequencer) passes
//! its own implementation and saves the hop to the EL.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use bytes::Bytes;
use engine_api::{
    Upstream, UpstreamError,
    jsonrpc::{self, Incoming, RequestEnvelope},
    upstream::DEFAULT_MAX_RESPONSE_BYTES,
};
use http::{HeaderMap, Response};
use serde_json::value::RawValue;

/// What a [`LocalEngine`] call returns: boxed so the trait stays object-safe.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, UpstreamError>> + Send + 'a>>;

/// The label the local EL carries in errors, logs and metrics (rollup-boost's `l2`).
pub const LOCAL_LABEL: &str = "l2";

/// A JSON-RPC answer engine-mux composed itself.
pub(crate) fn json_response(body: Bytes) -> Response<Bytes> {
    let mut res = Response::new(body);
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// How the answer to a forwarded request comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// engine-mux reads it (engine calls): asked uncompressed, decoded if compressed anyway.
    Read,
    /// Handed to the caller byte for byte (the raw proxy): status, headers, content coding.
    Verbatim,
}

/// A request body op-node (or any caller of the RPC port) sent, forwarded unchanged.
#[derive(Debug)]
pub struct Forward<'a> {
    /// The method, for logs (`proxy` for the raw proxy).
    pub method: &'static str,
    /// The caller's headers (hop-by-hop and `Authorization` are not forwarded over HTTP).
    pub headers: &'a HeaderMap,
    /// The JSON-RPC body as the caller sent it (one request or a batch).
    pub body: Bytes,
    /// The deadline for the whole exchange.
    pub timeout: Duration,
    /// Whether engine-mux reads the answer or passes it on verbatim.
    pub answer: Answer,
}

/// The local execution client engine-mux talks to: every engine call, validation of builder
/// blocks, the raw proxy, health probes and builder catch-up reads go through it.
///
/// Implementations answer within the timeout they are given; engine-mux also bounds every
/// call by it, so a slow implementation costs a [`UpstreamError::Timeout`], never a missed slot.
/// A JSON-RPC error answer is [`UpstreamError::Rpc`] (spec errors such as -38001 are the EL
/// working as specified); anything else that fails is evidence against the local EL's health.
pub trait LocalEngine: fmt::Debug + Send + Sync + 'static {
    /// Calls `method` with `params` (a JSON array, exactly as sent) and returns its `result`.
    fn call<'a>(
        &'a self,
        method: &'a str,
        params: &'a RawValue,
        timeout: Duration,
    ) -> LocalFuture<'a, Box<RawValue>>;

    /// Forwards a JSON-RPC body unchanged and returns the answer as an HTTP response. The
    /// default parses the body (one request or a batch), answers each request through
    /// [`Self::call`] and composes the JSON-RPC response, which is what an in-process engine
    /// needs; a failure other than a JSON-RPC error fails the whole request.
    fn forward<'a>(&'a self, request: Forward<'a>) -> LocalFuture<'a, Response<Bytes>> {
        Box::pin(dispatch(self, request))
    }

    /// The default per-call deadline (`--l2-timeout`).
    fn timeout(&self) -> Duration;

    /// The cap on one answer's size, also when engine-mux decodes a compressed one.
    fn max_response_bytes(&self) -> usize {
        DEFAULT_MAX_RESPONSE_BYTES
    }
}

impl LocalEngine for Upstream {
    fn call<'a>(
        &'a self,
        method: &'a str,
        params: &'a RawValue,
        timeout: Duration,
    ) -> LocalFuture<'a, Box<RawValue>> {
        Box::pin(async move { Upstream::call_raw(self, method, &params, timeout).await })
    }

    fn forward<'a>(&'a self, request: Forward<'a>) -> LocalFuture<'a, Response<Bytes>> {
        match request.answer {
            Answer::Read => Box::pin(Upstream::forward_decoded(
                self,
                request.headers,
                request.body,
                request.timeout,
            )),
            Answer::Verbatim => Box::pin(Upstream::forward(
                self,
                request.headers,
                request.body,
                request.timeout,
            )),
        }
    }

    fn timeout(&self) -> Duration {
        Upstream::timeout(self)
    }

    fn max_response_bytes(&self) -> usize {
        Upstream::max_response_bytes(self)
    }
}

/// [`LocalEngine::forward`] for an engine that only answers calls: each request in the body
/// through [`LocalEngine::call`], answered as an EL's JSON-RPC server would (a body that is
/// not JSON-RPC gets the spec's parse or invalid-request error, with HTTP 200).
async fn dispatch<E: LocalEngine + ?Sized>(
    engine: &E,
    request: Forward<'_>,
) -> Result<Response<Bytes>, UpstreamError> {
    let body = match jsonrpc::parse_incoming(&request.body) {
        Ok(Incoming::Single(req)) => one(engine, &req, request.timeout).await?,
        Ok(Incoming::Batch(items)) => {
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                let answer = match serde_json::from_str::<RequestEnvelope<'_>>(item.get()) {
                    Ok(req) => one(engine, &req, request.timeout).await?,
                    Err(e) => jsonrpc::error_response(
                        None,
                        &jsonrpc::EnvelopeError::Invalid(e.to_string()).to_error_object(),
                    ),
                };
                answers.push(answer);
            }
            let mut out = Vec::from(&b"["[..]);
            for (i, answer) in answers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(answer);
            }
            out.push(b']');
            Bytes::from(out)
        }
        Err(e) => jsonrpc::error_response(None, &e.to_error_object()),
    };
    Ok(json_response(body))
}

/// One request's JSON-RPC answer; `Err` for a failure that is not a JSON-RPC error.
async fn one<E: LocalEngine + ?Sized>(
    engine: &E,
    req: &RequestEnvelope<'_>,
    timeout: Duration,
) -> Result<Bytes, UpstreamError> {
    // No params reads as none at all, which is what an EL's server makes of it.
    static NONE: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    let none = NONE.get_or_init(|| RawValue::from_string("[]".into()).expect("valid JSON"));
    let params = req.params.unwrap_or(none);
    match engine.call(&req.method, params, timeout).await {
        Ok(result) => Ok(jsonrpc::ok_response(req.id, &result)),
        Err(UpstreamError::Rpc { error, .. }) => Ok(jsonrpc::error_response(req.id, &error)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An engine answering `eth_chainId`, refusing `engine_getPayloadV3` with -38001 as
    /// op-geth does for an unknown id, and failing anything else below JSON-RPC.
    #[derive(Debug, Default)]
    struct Calls(Mutex<Vec<(String, String)>>);

    impl LocalEngine for Calls {
        fn call<'a>(
            &'a self,
            method: &'a str,
            params: &'a RawValue,
            _timeout: Duration,
        ) -> LocalFuture<'a, Box<RawValue>> {
            self.0
                .lock()
                .unwrap()
                .push((method.to_string(), params.get().to_string()));
            Box::pin(async move {
                match method {
                    "eth_chainId" => Ok(RawValue::from_string("\"0x385\"".into()).unwrap()),
                    "engine_getPayloadV3" => Err(UpstreamError::Rpc {
                        upstream: LOCAL_LABEL,
                        error: jsonrpsee::types::ErrorObjectOwned::owned(
                            engine_api::codes::UNKNOWN_PAYLOAD,
                            "Unknown payload",
                            None::<()>,
                        ),
                    }),
                    _ => Err(UpstreamError::Transport {
                        upstream: LOCAL_LABEL,
                        detail: "engine stopped".into(),
                    }),
                }
            })
        }

        fn timeout(&self) -> Duration {
            Duration::from_secs(1)
        }
    }

    async fn forward(engine: &Calls, body: &str) -> Result<serde_json::Value, UpstreamError> {
        let headers = HeaderMap::new();
        let res = engine
            .forward(Forward {
                method: "proxy",
                headers: &headers,
                body: Bytes::from(body.to_string()),
                timeout: Duration::from_secs(1),
                answer: Answer::Verbatim,
            })
            .await?;
        assert_eq!(res.status(), http::StatusCode::OK);
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        Ok(serde_json::from_slice(res.body()).unwrap())
    }

    #[tokio::test]
    async fn an_in_process_engine_answers_forwarded_bodies_as_a_json_rpc_server() {
        let engine = Calls::default();
        let single = forward(
            &engine,
            r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}"#,
        )
        .await
        .unwrap();
        assert_eq!(
            single,
            serde_json::json!({"jsonrpc":"2.0","id":7,"result":"0x385"})
        );

        // A batch: each item answered in order, the spec error kept as the item's error.
        let batch = forward(
            &engine,
            r#"[{"jsonrpc":"2.0","id":"a","method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"engine_getPayloadV3","params":["0x01"]},{"nope":1}]"#,
        )
        .await
        .unwrap();
        assert_eq!(batch[0]["result"], "0x385");
        assert_eq!(batch[0]["id"], "a");
        assert_eq!(batch[1]["id"], 2);
        assert_eq!(batch[1]["error"]["code"], -38001);
        assert_eq!(
            batch[2]["error"]["code"],
            engine_api::codes::INVALID_REQUEST
        );
        assert_eq!(
            *engine.0.lock().unwrap(),
            vec![
                ("eth_chainId".to_string(), "[]".to_string()),
                ("eth_chainId".to_string(), "[]".to_string()),
                ("engine_getPayloadV3".to_string(), "[\"0x01\"]".to_string()),
            ]
        );

        let garbage = forward(&engine, "{not json").await.unwrap();
        assert_eq!(garbage["error"]["code"], engine_api::codes::PARSE_ERROR);

        // A failure below JSON-RPC fails the request, as a transport error over HTTP would.
        let err = forward(
            &engine,
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), "transport");
    }
}
