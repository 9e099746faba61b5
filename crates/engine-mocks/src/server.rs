//! The HTTP server plumbing of a mock: the listener, TLS, the JWT layer (engine-api's, with the
//! mock's own secret), and the compression of answers as op-geth, reth or a proxy does it,
//! keeping the bytes that went on the wire.

use std::sync::Arc;

use alloy_rpc_types_engine::JwtSecret;
use bytes::Bytes;
use engine_api::AuthLayer;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use parking_lot::Mutex;
use tokio::{net::TcpListener, task::JoinSet};
use tower::{ServiceBuilder, service_fn};
use tower_http::compression::{CompressionLayer, Predicate, predicate::DefaultPredicate};

use crate::{handler::handle, options::Compression, state::Inner};

/// The accept task and the connection tasks, so `down` can drop them all.
pub(crate) type Listening = (tokio::task::JoinHandle<()>, Arc<Mutex<JoinSet<()>>>);

/// Serves `inner` on `listener`: each connection (TLS when the options say so) through
/// reth's compression layer when the mock stands for reth, the JWT check with `secret`, the
/// handler, then the mock's own compression.
pub(crate) fn serve(listener: TcpListener, inner: Arc<Inner>, secret: JwtSecret) -> Listening {
    let conns = Arc::new(Mutex::new(JoinSet::new()));
    let conns2 = conns.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let inner = inner.clone();
            let reth = inner.options.compression == Compression::Reth;
            let tls = inner.options.tls.clone();
            let svc = ServiceBuilder::new()
                // Off (predicate false) unless this mock stands for reth.
                .layer(
                    CompressionLayer::new().compress_when(DefaultPredicate::new().and(
                        move |_: StatusCode,
                              _: http::Version,
                              _: &http::HeaderMap,
                              _: &http::Extensions| reth,
                    )),
                )
                .layer(AuthLayer::new(secret))
                .service(service_fn(move |req: Request<Incoming>| {
                    let inner = inner.clone();
                    async move {
                        let accept = req.headers().get("accept-encoding").cloned();
                        let res = match refuse_content_type(&req) {
                            Some(refused) => refused,
                            None => handle(inner.clone(), req).await,
                        };
                        Ok::<_, std::convert::Infallible>(compress(&inner, accept, res).await)
                    }
                }));
            conns2.lock().spawn(async move {
                let svc = TowerToHyperService::new(svc);
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                    None => {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            });
        }
    });
    (task, conns)
}

/// op-geth's check before it reads a POST body (go-ethereum `rpc/http.go`, `validateRequest`):
/// a content type other than JSON's is refused with 415 and this text; reth refuses it with 415
/// too. A client that leaves the header out is refused, as the real clients refuse it.
fn refuse_content_type(req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    if req.method() != http::Method::POST {
        return None;
    }
    let json = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            matches!(
                v.as_str(),
                "application/json" | "application/json-rpc" | "application/jsonrequest"
            )
        });
    (!json).then(|| {
        let mut res = Response::new(Full::new(Bytes::from_static(
            b"invalid content type, only application/json is supported\n",
        )));
        *res.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        res
    })
}

/// Applies the mock's own compression (op-geth's gzip handler, or a compressing proxy) and
/// keeps the bytes that go on the wire.
async fn compress(
    inner: &Inner,
    accept: Option<http::HeaderValue>,
    res: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let accepts_gzip = accept
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let coding = match inner.options.compression {
        Compression::Geth if accepts_gzip => Some("gzip"),
        Compression::Always(coding) => Some(coding),
        _ => None,
    };
    let (mut parts, body) = res.into_parts();
    let mut body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(coding) = coding {
        body = encode(coding, &body).await;
        parts
            .headers
            .insert("content-encoding", coding.parse().unwrap());
        parts.headers.remove("content-length");
    }
    let mut sent = inner.wire_bodies.lock();
    if sent.len() == 256 {
        sent.pop_front();
    }
    sent.push_back(body.clone());
    drop(sent);
    Response::from_parts(parts, Full::new(body))
}

/// `data` in the HTTP content coding `coding` (HTTP's deflate is the zlib format).
pub async fn encode(coding: &str, data: &[u8]) -> Bytes {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    match coding {
        "gzip" => GzipEncoder::new(data).read_to_end(&mut out).await,
        "deflate" => ZlibEncoder::new(data).read_to_end(&mut out).await,
        "br" => BrotliEncoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdEncoder::new(data).read_to_end(&mut out).await,
        other => panic!("mock cannot encode {other}"),
    }
    .unwrap();
    out.into()
}
