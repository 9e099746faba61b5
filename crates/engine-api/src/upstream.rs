//! A client to one upstream execution engine (the local EL or the builder): raw forwarding
//! for the proxy path and typed JSON-RPC calls for the engine path, every request carrying a
//! freshly minted JWT, every call bounded by a deadline and every response body by a size cap.
//! `http://` and `https://` (rustls, see [`crate::tls`]). Answers engine-mux reads itself are
//! requested uncompressed and decoded whatever content coding the upstream chose anyway.

use std::{
    error::Error as StdError,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, header, uri::Scheme};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonrpsee::types::ErrorObjectOwned;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use tower::{Layer, Service};

use crate::{
    auth::{MintLayer, MintService},
    content_encoding,
    jsonrpc::{ResponseEnvelope, request_body},
    secret::JwtSecret,
    tls,
};

/// Default cap on an upstream's response body (a block with many transactions fits easily).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How to reach one upstream.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Short label used in logs and metrics (`l2`, `builder`).
    pub name: &'static str,
    /// Engine API endpoint.
    pub url: Uri,
    /// JWT secret for outbound requests; `None` sends no Authorization header.
    pub secret: Option<JwtSecret>,
    /// Default per-call deadline.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

/// Why a call to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer within the deadline.
    #[error("{upstream}: no answer within {after:?}")]
    Timeout {
        /// Upstream label.
        upstream: &'static str,
        /// The deadline that elapsed.
        after: Duration,
    },
    /// Connection refused, reset or otherwise failed below HTTP.
    #[error("{upstream}: transport error: {detail}")]
    Transport {
        /// Upstream label.
        upstream: &'static str,
        /// What the transport reported.
        detail: String,
    },
    /// HTTP status other than 200 on a JSON-RPC call.
    #[error("{upstream}: HTTP {status}: {body}")]
    Status {
        /// Upstream label.
        upstream: &'static str,
        /// The status code.
        status: u16,
        /// The beginning of the body, for the log.
        body: String,
    },
    /// The upstream answered with a JSON-RPC error object.
    #[error("{upstream}: JSON-RPC error {}: {}", .error.code(), .error.message())]
    Rpc {
        /// Upstream label.
        upstream: &'static str,
        /// The error object as sent.
        error: ErrorObjectOwned,
    },
    /// The body was not the JSON-RPC response or result shape expected.
    #[error("{upstream}: malformed response: {detail}")]
    Malformed {
        /// Upstream label.
        upstream: &'static str,
        /// What did not parse.
        detail: String,
    },
}

impl UpstreamError {
    /// A stable, low-cardinality label for metrics (`timeout`, `transport`, `http`, `rpc`, `malformed`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Status { .. } => "http",
            Self::Rpc { .. } => "rpc",
            Self::Malformed { .. } => "malformed",
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client to one upstream; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Upstream {
    name: &'static str,
    url: Uri,
    timeout: Duration,
    max_response_bytes: usize,
    /// `Err`: no TLS configuration could be built for an `https` URL; every call says why.
    service: Result<MintService<HttpClient>, std::sync::Arc<str>>,
    next_id: std::sync::Arc<AtomicU64>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Asks the upstream not to compress: on loopback compression only costs CPU on the hot path.
const IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// Request headers never forwarded: hop-by-hop ones, and auth (we mint our own).
fn skip_request_header(name: &header::HeaderName) -> bool {
    matches!(
        name,
        &header::HOST
            | &header::AUTHORIZATION
            | &header::CONNECTION
            | &header::TRANSFER_ENCODING
            | &header::CONTENT_LENGTH
            | &header::TE
            | &header::UPGRADE
            | &header::PROXY_AUTHORIZATION
    ) || name.as_str() == "keep-alive"
}

/// Response headers not copied back: hop-by-hop ones; the length is set from the body.
fn skip_response_header(name: &header::HeaderName) -> bool {
    matches!(
        name,
        &header::CONNECTION
            | &header::TRANSFER_ENCODING
            | &header::CONTENT_LENGTH
            | &header::UPGRADE
    ) || name.as_str() == "keep-alive"
}

impl Upstream {
    /// Builds the client, trusting the roots `SSL_CERT_FILE` / `SSL_CERT_DIR` name, or the
    /// system's (see [`Self::with_roots`]).
    pub fn new(config: UpstreamConfig) -> Self {
        Self::with_roots(config, &tls::TrustedRoots::from_env())
    }

    /// Builds the client; no connection is made until the first call. For an `https` URL the
    /// trusted `roots` are loaded now; if none can be, every call fails saying so.
    pub fn with_roots(config: UpstreamConfig, roots: &tls::TrustedRoots) -> Self {
        let tls = if config.url.scheme() == Some(&Scheme::HTTPS) {
            tls::client_config(roots)
        } else {
            // A plain-http upstream never starts TLS; the connector still wants a configuration.
            tls::client_config_with_roots(tls::RootCertStore::empty())
        };
        let service = match tls {
            Ok(tls) => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                http.set_connect_timeout(Some(config.timeout));
                // The TLS connector below decides per scheme; the TCP connector must let https through.
                http.enforce_http(false);
                let connector = HttpsConnectorBuilder::new()
                    .with_tls_config((*tls).clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build(connector);
                Ok(MintLayer::new(config.secret).layer(client))
            }
            Err(e) => {
                tracing::error!(upstream = config.name, url = %config.url, error = %e, "no TLS configuration: every call to this upstream will fail");
                Err(format!("TLS to {} is unavailable: {e}", config.url).into())
            }
        };
        Self {
            name: config.name,
            url: config.url,
            timeout: config.timeout,
            max_response_bytes: config.max_response_bytes,
            service,
            next_id: std::sync::Arc::new(AtomicU64::new(1)),
        }
    }

    /// The upstream's label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The configured default deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoint.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// The cap on a response body (decoded or not).
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Sends `body` as-is and returns status, headers and body exactly as the upstream sent
    /// them (minus hop-by-hop headers), compressed if the caller's `Accept-Encoding` allowed it
    /// and the upstream chose to. Used by the raw proxy path.
    pub async fn forward(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        self.forward_with(headers, body, timeout, false).await
    }

    /// Like [`Self::forward`], for answers the caller reads itself: the caller's
    /// `Accept-Encoding` is replaced by `identity`, and a body the upstream compressed anyway
    /// comes back decoded, without `Content-Encoding` (the length is set from the new body).
    pub async fn forward_decoded(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        self.forward_with(headers, body, timeout, true).await
    }

    async fn forward_with(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
        decode: bool,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone());
        for (name, value) in headers {
            let replaced = decode && name == header::ACCEPT_ENCODING;
            if !skip_request_header(name) && !replaced {
                req = req.header(name, value);
            }
        }
        if decode {
            req = req.header(header::ACCEPT_ENCODING, IDENTITY);
        }
        let req = req.body(Full::new(body)).map_err(|e| self.transport(e))?;
        let res = self.send(req, timeout, decode).await?;
        let mut out = Response::builder().status(res.status());
        for (name, value) in res.headers() {
            if !skip_response_header(name) {
                out = out.header(name, value);
            }
        }
        out.body(res.into_body()).map_err(|e| self.transport(e))
    }

    /// Sends a JSON-RPC request body (already serialized) and returns the raw result.
    pub async fn call_body(
        &self,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(header::ACCEPT_ENCODING, IDENTITY)
            .body(Full::new(body))
            .map_err(|e| self.transport(e))?;
        let res = self.send(req, timeout, true).await?;
        if res.status() != http::StatusCode::OK {
            let snippet =
                String::from_utf8_lossy(&res.body()[..res.body().len().min(256)]).into_owned();
            return Err(UpstreamError::Status {
                upstream: self.name,
                status: res.status().as_u16(),
                body: snippet,
            });
        }
        let envelope: ResponseEnvelope =
            serde_json::from_slice(res.body()).map_err(|e| UpstreamError::Malformed {
                upstream: self.name,
                detail: e.to_string(),
            })?;
        match (envelope.result, envelope.error) {
            (_, Some(error)) => Err(UpstreamError::Rpc {
                upstream: self.name,
                error,
            }),
            (Some(result), None) => Ok(result),
            (None, None) => Err(UpstreamError::Malformed {
                upstream: self.name,
                detail: "response has neither result nor error".into(),
            }),
        }
    }

    /// Calls `method` with `params` and returns the raw result.
    pub async fn call_raw(
        &self,
        method: &str,
        params: &impl Serialize,
        timeout: Duration,
    ) -> Result<Box<RawValue>, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = request_body(id, method, params).map_err(|e| UpstreamError::Malformed {
            upstream: self.name,
            detail: e.to_string(),
        })?;
        self.call_body(body, timeout).await
    }

    /// Calls `method` with `params` and deserializes the result.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        params: &impl Serialize,
        timeout: Duration,
    ) -> Result<R, UpstreamError> {
        let raw = self.call_raw(method, params, timeout).await?;
        self.decode(&raw)
    }

    /// Deserializes a raw result, mapping failure to [`UpstreamError::Malformed`].
    pub fn decode<R: DeserializeOwned>(&self, raw: &RawValue) -> Result<R, UpstreamError> {
        serde_json::from_str(raw.get()).map_err(|e| UpstreamError::Malformed {
            upstream: self.name,
            detail: e.to_string(),
        })
    }

    /// One exchange within `timeout`; with `decode`, the body comes back without its content
    /// coding (and without `Content-Encoding`), decoded under the same size cap.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
        decode: bool,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let mut service = match &self.service {
            Ok(service) => service.clone(),
            Err(why) => {
                return Err(UpstreamError::Transport {
                    upstream: self.name,
                    detail: why.to_string(),
                });
            }
        };
        let limit = self.max_response_bytes;
        let exchange = async move {
            let again = clone_request(&req);
            let res = match service.call(req).await {
                // A kept-alive connection the upstream closed without answering (it restarted
                // or dropped idle connections): the request is sent once more on a new
                // connection. Engine API and JSON-RPC calls are safe to repeat.
                Err(e) if closed_before_answer(&e) => {
                    tracing::debug!(upstream = self.name, error = %e, "connection closed before the answer; sending once more");
                    service.call(again).await
                }
                res => res,
            }
            .map_err(|e| self.transport(e))?;
            let (mut parts, body) = res.into_parts();
            let mut body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| UpstreamError::Transport {
                    upstream: self.name,
                    detail: format!("reading body: {e}"),
                })?
                .to_bytes();
            if decode {
                let coding = parts.headers.remove(header::CONTENT_ENCODING);
                body = content_encoding::decode(coding.as_ref(), body, limit)
                    .await
                    .map_err(|e| UpstreamError::Malformed {
                        upstream: self.name,
                        detail: e.to_string(),
                    })?;
            }
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout {
                upstream: self.name,
                after: timeout,
            })?
    }

    fn transport(&self, e: impl StdError + 'static) -> UpstreamError {
        if let Some(tls) = tls::failure(&e) {
            return UpstreamError::Transport {
                upstream: self.name,
                detail: format!("TLS with {} failed: {}", self.url, tls::explain(tls)),
            };
        }
        // hyper's top-level errors say little ("client error (Connect)"); the cause chain says why.
        let mut detail = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        UpstreamError::Transport {
            upstream: self.name,
            detail,
        }
    }
}

/// The same request again (its body is in memory).
fn clone_request(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut again = Request::new(req.body().clone());
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// Whether `e` is a connection that closed before any answer came (hyper's incomplete message:
/// what a pooled connection to an upstream that restarted gives on its first use).
fn closed_before_answer(e: &(dyn StdError + 'static)) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connection_refused_says_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = Upstream::new(UpstreamConfig {
            name: "builder",
            url: format!("http://127.0.0.1:{port}").parse().unwrap(),
            secret: None,
            timeout: Duration::from_secs(1),
            max_response_bytes: 1024,
        });
        let err = up
            .call_raw("eth_chainId", &(), up.timeout())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "transport");
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    }

    /// An upstream that restarts while a call is in flight: the first connection reads the
    /// request and closes without answering (what a kept-alive connection to a restarting
    /// op-geth or reth gives: hyper's "connection closed before message completed"); the call is
    /// sent once more on a new connection and answered. A second close is an error.
    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_retried_once_on_a_new_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closes, served) = (
            std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1)),
            std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        );
        let (c, s) = (closes.clone(), served.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                if c.load(Ordering::SeqCst) > 0 {
                    c.fetch_sub(1, Ordering::SeqCst);
                    drop(sock);
                    continue;
                }
                s.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"jsonrpc":"2.0","id":1,"result":"0x385"}"#;
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
            }
        });
        let up = Upstream::new(UpstreamConfig {
            name: "l2",
            url: format!("http://{addr}").parse().unwrap(),
            secret: None,
            timeout: Duration::from_secs(2),
            max_response_bytes: 1024,
        });
        let id: String = up.call("eth_chainId", &(), up.timeout()).await.unwrap();
        assert_eq!(id, "0x385");
        assert_eq!(served.load(Ordering::SeqCst), 1);

        closes.store(2, Ordering::SeqCst);
        let err = up
            .call::<String>("eth_chainId", &(), up.timeout())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "transport", "{err}");
        assert!(
            err.to_string().contains("closed before message completed"),
            "{err}"
        );
    }

    /// A CA file that cannot be read (what a wrong `SSL_CERT_FILE` gives) leaves no trusted root.
    #[tokio::test]
    async fn https_without_any_trusted_root_fails_every_call_saying_why() {
        let roots = tls::TrustedRoots::ca_file("/nonexistent/engine-api-test-ca.pem");
        let up = Upstream::with_roots(
            UpstreamConfig {
                name: "builder",
                url: "https://127.0.0.1:1".parse().unwrap(),
                secret: None,
                timeout: Duration::from_secs(1),
                max_response_bytes: 1024,
            },
            &roots,
        );
        let err = up
            .call_raw("eth_chainId", &(), up.timeout())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "transport");
        let text = err.to_string();
        assert!(text.contains("https://127.0.0.1:1"), "{text}");
        assert!(text.contains("no trusted root certificate"), "{text}");
    }
}
