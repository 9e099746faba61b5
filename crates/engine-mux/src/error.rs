//! The errors engine-mux itself answers with, mapped once to JSON-RPC codes.

use engine_api::{UpstreamError, codes};
use jsonrpsee::types::ErrorObjectOwned;

/// An error engine-mux answers op-node (or an RPC client) with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MuxError {
    /// The body is not JSON.
    #[error("parse error: {0}")]
    Parse(String),
    /// The body is JSON but not a JSON-RPC request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The body exceeds --max-request-body-bytes.
    #[error("request body exceeds the {limit}-byte limit (--max-request-body-bytes)")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request body could not be read.
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// An upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl MuxError {
    /// The JSON-RPC error object for this error.
    pub(crate) fn to_error_object(&self) -> ErrorObjectOwned {
        match self {
            Self::Parse(_) => {
                ErrorObjectOwned::owned(codes::PARSE_ERROR, self.to_string(), None::<()>)
            }
            Self::InvalidRequest(_) | Self::BodyTooLarge { .. } | Self::Body(_) => {
                ErrorObjectOwned::owned(codes::INVALID_REQUEST, self.to_string(), None::<()>)
            }
            // An upstream's own JSON-RPC error is passed through untouched.
            Self::Upstream(UpstreamError::Rpc { error, .. }) => error.clone(),
            Self::Upstream(e) => {
                ErrorObjectOwned::owned(codes::INTERNAL_ERROR, e.to_string(), None::<()>)
            }
        }
    }

    /// The HTTP status to answer with.
    pub(crate) fn http_status(&self) -> http::StatusCode {
        match self {
            Self::BodyTooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::OK,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn mapping_is_pinned() {
        let cases: Vec<(MuxError, i32, http::StatusCode)> = vec![
            (MuxError::Parse("x".into()), -32700, http::StatusCode::OK),
            (
                MuxError::InvalidRequest("x".into()),
                -32600,
                http::StatusCode::OK,
            ),
            (
                MuxError::BodyTooLarge { limit: 10 },
                -32600,
                http::StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                MuxError::Body("reset".into()),
                -32600,
                http::StatusCode::BAD_REQUEST,
            ),
            (
                MuxError::Upstream(UpstreamError::Timeout {
                    upstream: "l2",
                    after: Duration::from_secs(1),
                }),
                -32603,
                http::StatusCode::OK,
            ),
            (
                MuxError::Upstream(UpstreamError::Transport {
                    upstream: "l2",
                    detail: "refused".into(),
                }),
                -32603,
                http::StatusCode::OK,
            ),
            (
                MuxError::Upstream(UpstreamError::Rpc {
                    upstream: "l2",
                    error: ErrorObjectOwned::owned(-38001, "Unknown payload", None::<()>),
                }),
                -38001,
                http::StatusCode::OK,
            ),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.to_error_object().code(), code, "{err}");
            assert_eq!(err.http_status(), status, "{err}");
        }
        assert_eq!(
            MuxError::BodyTooLarge { limit: 10 }
                .to_error_object()
                .message(),
            "request body exceeds the 10-byte limit (--max-request-body-bytes)"
        );
    }
}
