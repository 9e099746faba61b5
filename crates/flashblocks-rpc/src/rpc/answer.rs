//! How a method answers: from the pending state (counted as such) or forwarded to the
//! upstream with the caller's params untouched; upstream failures mapped once onto JSON-RPC
//! error objects.

use engine_api::UpstreamError;
use engine_types::codes::{INTERNAL_ERROR, INVALID_PARAMS};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json, value::RawValue};

use crate::{context::Context, metrics::Source};

/// Why a call failed; mapped once onto JSON-RPC error objects.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The upstream answered with an error: passed through unchanged.
    #[error("upstream error")]
    Upstream(ErrorObjectOwned),
    /// The upstream could not be reached or answered garbage.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The subscription kind is not served.
    #[error("unsupported subscription {0:?}")]
    Subscription(String),
}

impl From<UpstreamError> for RpcError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Rpc { error, .. } => Self::Upstream(error),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Upstream(obj) => obj,
            RpcError::Unavailable(_) => {
                ErrorObjectOwned::owned(INTERNAL_ERROR, e.to_string(), None::<()>)
            }
            RpcError::Subscription(_) => {
                ErrorObjectOwned::owned(INVALID_PARAMS, e.to_string(), None::<()>)
            }
        }
    }
}

/// A method's answer: its raw result or the error object.
pub(super) type RpcResult = Result<Box<RawValue>, ErrorObjectOwned>;

/// `v` as a raw result.
pub(super) fn to_raw(v: &Value) -> RpcResult {
    serde_json::value::to_raw_value(v).map_err(|e| RpcError::Unavailable(e.to_string()).into())
}

/// A JSON-RPC response: `result` kept raw (a `null` result is a result, not a missing one).
#[derive(Debug, serde::Deserialize)]
struct Envelope {
    #[serde(default = "null_result")]
    result: Box<RawValue>,
    #[serde(default)]
    error: Option<ErrorObjectOwned>,
}

fn null_result() -> Box<RawValue> {
    RawValue::from_string("null".into()).unwrap_or_default()
}

/// Splits a single JSON-RPC response body into its raw result or its error object.
pub fn parse_response(body: &[u8]) -> Result<Box<RawValue>, RpcError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| RpcError::Unavailable(format!("malformed upstream response: {e}")))?;
    match envelope.error {
        Some(error) => Err(RpcError::Upstream(error)),
        None => Ok(envelope.result),
    }
}

/// Forwards `method` with the caller's params text untouched.
pub async fn forward(ctx: &Context, method: &str, params: &Params<'_>) -> RpcResult {
    let params = params.as_str().unwrap_or("[]");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":{},"params":{params}}}"#,
        json!(method)
    );
    ctx.metrics.answered(Source::Upstream);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let res = ctx
        .upstream
        .forward(&headers, body.into(), ctx.config.upstream.timeout)
        .await
        .map_err(RpcError::from)?;
    if res.status() != http::StatusCode::OK {
        return Err(RpcError::Unavailable(format!("upstream status {}", res.status())).into());
    }
    Ok(parse_response(res.body())?)
}

/// `v` as an answer from the pending state.
pub(super) fn answered(ctx: &Context, v: &Value) -> RpcResult {
    ctx.metrics.answered(Source::Pending);
    to_raw(v)
}

/// Whether a block-tag parameter is `"pending"`.
pub fn is_pending_tag(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str) == Some("pending")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_results_are_results_and_errors_pass_through() {
        let r = parse_response(br#"{"jsonrpc":"2.0","id":1,"result":null}"#).unwrap();
        assert_eq!(r.get(), "null");
        let r = parse_response(br#"{"jsonrpc":"2.0","id":1,"result":{"a":[1, 2]}}"#).unwrap();
        assert_eq!(r.get(), r#"{"a":[1, 2]}"#);
        let e =
            parse_response(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x"}}"#)
                .unwrap_err();
        assert!(matches!(e, RpcError::Upstream(obj) if obj.code() == -32000));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn errors_map_to_spec_codes_and_upstream_errors_pass_through() {
        let upstream = ErrorObjectOwned::owned(-32000, "nonce too low", Some(json!({"x": 1})));
        let mapped: ErrorObjectOwned = RpcError::Upstream(upstream.clone()).into();
        assert_eq!(mapped, upstream);
        let mapped: ErrorObjectOwned = RpcError::Unavailable("down".into()).into();
        assert_eq!(mapped.code(), -32603);
        assert_eq!(mapped.message(), "upstream unavailable: down");
        let mapped: ErrorObjectOwned = RpcError::Subscription("logs".into()).into();
        assert_eq!(mapped.code(), -32602);
        assert_eq!(mapped.message(), "unsupported subscription \"logs\"");
    }
}
