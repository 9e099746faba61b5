//! A real op-reth as the local EL (opt-in: `OP_RETH_BIN` names the binary): started on the
//! devnet's genesis on free loopback ports with a temporary datadir, killed on drop; and a tap
//! in front of its HTTP RPC that records every `eth_simulateV1` op-reth refused.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use alloy_rpc_types_engine::JwtSecret;
use bytes::Bytes;
use devnet::chain::genesis::{DEFAULT_GENESIS_JSON, ForkOverrides, effective_genesis_json};
use engine_api::Upstream;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::{CALL_TIMEOUT, client};

/// The environment variable naming the op-reth binary.
pub const OP_RETH_BIN: &str = "OP_RETH_BIN";

/// The op-reth binary `OP_RETH_BIN` names; panics (naming the variable) when it is unset, so an
/// ignored op-reth test run without it fails instead of passing vacuously.
pub fn op_reth_bin() -> PathBuf {
    match std::env::var_os(OP_RETH_BIN) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "{OP_RETH_BIN} is not set: these tests need a real op-reth binary \
             (OP_RETH_BIN=/path/to/op-reth cargo nextest run -p e2e --run-ignored only op_reth)"
        ),
    }
}

/// A running op-reth process (killed on drop; its datadir removed, its log kept when the
/// thread is panicking).
pub struct OpReth {
    child: Child,
    dir: PathBuf,
    /// Its Engine API (JWT) URL.
    pub auth_url: String,
    /// Its plain HTTP JSON-RPC URL.
    pub http_url: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

/// The genesis JSON the devnet runs for `timestamp` (the shipped genesis, its timestamp and
/// fork-format extraData filled in exactly as `devnet::app::load_genesis(None, timestamp, None)`
/// does), for another client to load the same chain.
pub fn devnet_genesis_json(timestamp: u64) -> Value {
    effective_genesis_json(DEFAULT_GENESIS_JSON, timestamp, ForkOverrides::default()).unwrap()
}

impl OpReth {
    /// Starts `bin` on `genesis` (written to a temp file) with `jwt` on its auth port, waits
    /// for its HTTP RPC and checks that its genesis block is `genesis_hash` (the devnet's):
    /// panics, naming both hashes and the log, when not.
    pub async fn start(bin: &Path, genesis: &Value, jwt: JwtSecret, genesis_hash: B256) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "e2e-op-reth-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let genesis_path = dir.join("genesis.json");
        std::fs::write(&genesis_path, serde_json::to_vec_pretty(genesis).unwrap()).unwrap();
        let jwt_path = dir.join("jwt.hex");
        std::fs::write(&jwt_path, hex::encode(jwt.as_bytes())).unwrap();
        let log = dir.join("op-reth.log");
        let out = std::fs::File::create(&log).unwrap();
        let (auth_port, http_port) = (test_utils::free_port(), test_utils::free_port());
        let mut cmd = Command::new(bin);
        cmd.arg("node")
            .arg("--chain")
            .arg(&genesis_path)
            .arg("--datadir")
            .arg(dir.join("data"))
            .args(["--authrpc.addr", "127.0.0.1", "--authrpc.port"])
            .arg(auth_port.to_string())
            .arg("--authrpc.jwtsecret")
            .arg(&jwt_path)
            .args(["--http", "--http.addr", "127.0.0.1", "--http.port"])
            .arg(http_port.to_string())
            .args(["--http.api", "eth,net,web3,debug,txpool"])
            // Several instances on one machine: no IPC socket at the shared default path, no
            // peers, no log files under the home directory.
            .args(["--ipcdisable", "--disable-discovery", "--nat", "none"])
            .args(["--addr", "127.0.0.1", "--port", "0"])
            .args(["--log.file.max-files", "0", "--color", "never"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        eprintln!("op-reth: {} (log {})", bin.display(), log.display());
        let mut me = Self {
            child,
            dir,
            auth_url: format!("http://127.0.0.1:{auth_port}"),
            http_url: format!("http://127.0.0.1:{http_port}"),
            log,
        };
        let rpc = client(&me.http_url, None);
        let started = Instant::now();
        let genesis_block = loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!(
                    "op-reth exited ({status}) at startup; log {}",
                    me.log.display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "op-reth's HTTP RPC did not come up in 120 s; log {}",
                me.log.display()
            );
            match rpc
                .call::<Value>("eth_getBlockByNumber", &json!(["0x0", false]), CALL_TIMEOUT)
                .await
            {
                Ok(b) if !b.is_null() => break b,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let theirs: B256 = serde_json::from_value(genesis_block["hash"].clone()).unwrap();
        assert_eq!(
            theirs,
            genesis_hash,
            "op-reth's genesis hash differs from the devnet's: not the same chain \
             (op-reth's genesis block {genesis_block}); log {}",
            me.log.display()
        );
        // The auth port is up once the node is (same startup), but wait for it explicitly.
        let auth_ready = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", auth_port)).is_err() {
            assert!(
                auth_ready.elapsed() < Duration::from_secs(30),
                "op-reth's auth RPC is not listening; log {}",
                me.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        me
    }
}

impl Drop for OpReth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        if std::thread::panicking() {
            eprintln!("op-reth log kept: {}", self.log.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One `eth_simulateV1` exchange op-reth answered with an error.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The request body as sent.
    pub request: Value,
    /// op-reth's answer.
    pub response: Value,
}

/// An HTTP JSON-RPC tap in front of an upstream: forwards every request unchanged and keeps
/// the `eth_simulateV1` exchanges the upstream answered with an error (single requests; the
/// overlay does not batch its simulations).
pub struct Tap {
    /// Where clients connect.
    pub addr: SocketAddr,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    simulations: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    /// A tap of `upstream_url` on a free loopback port.
    pub async fn start(upstream_url: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream: Arc<Upstream> = Arc::new(client(upstream_url, None));
        let refusals: Arc<Mutex<Vec<Refusal>>> = Arc::default();
        let simulations: Arc<Mutex<u64>> = Arc::default();
        let (r, s) = (refusals.clone(), simulations.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (upstream, r, s) = (upstream.clone(), r.clone(), s.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (upstream, r, s) = (upstream.clone(), r.clone(), s.clone());
                        async move { relay(&upstream, req, &r, &s).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            refusals,
            simulations,
            task,
        }
    }

    /// The tap's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The refused `eth_simulateV1` exchanges so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.refusals.lock().unwrap().clone()
    }

    /// The `eth_simulateV1` requests relayed so far.
    pub fn simulations(&self) -> u64 {
        *self.simulations.lock().unwrap()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    upstream: &Upstream,
    req: Request<Incoming>,
    refusals: &Mutex<Vec<Refusal>>,
    simulations: &Mutex<u64>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(400)),
    };
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let simulate = request
        .as_ref()
        .is_some_and(|r| r["method"] == "eth_simulateV1");
    let Ok(res) = upstream
        .forward_decoded(&headers, body.clone(), CALL_TIMEOUT)
        .await
    else {
        return Ok(status(502));
    };
    if simulate {
        *simulations.lock().unwrap() += 1;
        let response: Value = serde_json::from_slice(res.body()).unwrap_or(Value::Null);
        if response.get("error").is_some() || response.get("result").is_none() {
            refusals.lock().unwrap().push(Refusal {
                request: request.unwrap_or_default(),
                response,
            });
        }
    }
    let (parts, body) = res.into_parts();
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
    r
}
