//! Test doubles for the real peers' HTTP behaviour: op-node's Go client (net/http with its
//! transparent gzip), and a private certificate authority for TLS upstreams.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bytes::Bytes;
use engine_api::JwtSecret;
use engine_mux::RunningMux;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::{
    harness::{attributes, eventually, forkchoice, http_get, start_mux_configured},
    mock_engine::{Compression, MockEngine, MockOptions},
};

/// op-node's engine client as Go's net/http makes it: `Accept-Encoding: gzip` on every
/// request it sends, and a gzipped answer decoded (and its `Content-Encoding` and
/// `Content-Length` dropped) before op-node reads it. Any other coding reaches op-node as is.
pub struct GoClient {
    url: String,
    secret: JwtSecret,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One answer, as it came over the wire and as op-node's code gets it.
pub struct GoResponse {
    pub status: u16,
    /// Headers as received.
    pub headers: HeaderMap,
    /// Body as received.
    pub wire: Bytes,
    /// Body after Go's transparent gzip decoding.
    pub body: Bytes,
}

impl GoResponse {
    pub fn content_encoding(&self) -> Option<&str> {
        self.headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "op-node cannot read the answer ({e}); content-encoding {:?}, body {:?}",
                self.content_encoding(),
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl GoClient {
    pub fn new(addr: SocketAddr, secret: JwtSecret) -> Self {
        Self {
            url: format!("http://{addr}"),
            secret,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// POSTs `body` with Go's default `Accept-Encoding: gzip`.
    pub async fn post(&self, body: String) -> GoResponse {
        self.post_accepting(body, "gzip").await
    }

    /// POSTs `body` with the given `Accept-Encoding` (a client other than op-node's); Go's gzip
    /// decoding only applies when that is `gzip`, as in net/http.
    pub async fn post_accepting(&self, body: String, accept: &str) -> GoResponse {
        let token = engine_api::mint_token(&self.secret).unwrap();
        let req = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("accept-encoding", accept)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
            .await
            .expect("engine-mux answers within 5 s")
            .expect("engine-mux answers");
        let (parts, body) = res.into_parts();
        let wire = body.collect().await.unwrap().to_bytes();
        let gzipped = parts
            .headers
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = if accept == "gzip" && gzipped {
            gunzip(&wire).await
        } else {
            wire.clone()
        };
        GoResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            wire,
            body,
        }
    }

    /// A JSON-RPC call; the result, or the error object.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let res = self
            .post(json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}).to_string())
            .await;
        let mut v = res.json();
        match v.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(v),
        }
    }
}

pub async fn gunzip(data: &[u8]) -> Bytes {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipDecoder::new(data)
        .read_to_end(&mut out)
        .await
        .expect("valid gzip");
    out.into()
}

pub use test_utils::TestCa;

/// A local EL and a builder that behave like given real peers, engine-mux between them, and
/// op-node's Go client in front.
pub struct Peers {
    pub local: MockEngine,
    pub builder: MockEngine,
    pub mux: RunningMux,
    pub op_node: GoClient,
    head: AtomicU64,
}

pub async fn start(local: MockOptions, builder: MockOptions, extra: &[&str]) -> Peers {
    start_configured(local, builder, extra, |_| {}).await
}

/// [`start`] with `edit` applied to engine-mux's parsed configuration.
pub async fn start_configured(
    local: MockOptions,
    builder: MockOptions,
    extra: &[&str],
    edit: impl FnOnce(&mut engine_mux::Config),
) -> Peers {
    let local = MockEngine::start_with("local", 0x03, 0xaa, local).await;
    let builder = MockEngine::start_with("builder", 0x04, 0xbb, builder).await;
    let mux = start_mux_configured(&local, &builder, extra, edit).await;
    let op_node = GoClient::new(mux.rpc_addr, local.secret);
    eventually(Duration::from_secs(3), "first probe", || async {
        mux.state()
            .metrics
            .render()
            .contains("engine_mux_probes_total")
    })
    .await;
    Peers {
        local,
        builder,
        mux,
        op_node,
        head: 100.into(),
    }
}

/// Options for a mock that compresses like `compression`.
pub fn compressing(compression: Compression) -> MockOptions {
    MockOptions {
        compression,
        ..Default::default()
    }
}

impl Peers {
    /// One block as op-node drives it (FCU with attributes, getPayloadV3, newPayloadV3, FCU to
    /// it), every call through op-node's Go client; returns the proposed block's hash.
    pub async fn block(&self) -> String {
        let head = self.head.load(Ordering::Relaxed);
        let fcu = self
            .op_node
            .call(
                "engine_forkchoiceUpdatedV3",
                json!([forkchoice(head), attributes(false)]),
            )
            .await
            .expect("FCU answered");
        let id = fcu["payloadId"].as_str().expect("a payload id").to_string();
        assert!(id.starts_with("0x03"), "op-node sees the local id: {id}");
        let envelope = self
            .op_node
            .call("engine_getPayloadV3", json!([id]))
            .await
            .expect("getPayload answered");
        let payload = envelope["executionPayload"].clone();
        let status = self
            .op_node
            .call(
                "engine_newPayloadV3",
                json!([payload, [], envelope["parentBeaconBlockRoot"]]),
            )
            .await
            .expect("newPayload answered");
        assert_eq!(status["status"], "VALID");
        let head = self.head.fetch_add(1, Ordering::Relaxed) + 1;
        self.op_node
            .call(
                "engine_forkchoiceUpdatedV3",
                json!([forkchoice(head), null]),
            )
            .await
            .expect("FCU answered");
        payload["blockHash"].as_str().unwrap().to_string()
    }

    /// Drives `n` blocks and checks each is the builder's.
    pub async fn builder_blocks(&self, n: u64) {
        for _ in 0..n {
            let number = self.head.load(Ordering::Relaxed) + 1;
            assert_eq!(
                self.block().await,
                self.builder.block_hash(number).to_string(),
                "block {number} is the builder's"
            );
        }
        assert_eq!(
            test_utils::metric(
                &self.mux.metrics_text(),
                r#"engine_mux_blocks_proposed_total{source="builder"}"#
            ),
            n as f64
        );
    }

    pub async fn healthz(&self) -> u16 {
        http_get(self.mux.rpc_addr, "/healthz").await
    }
}
