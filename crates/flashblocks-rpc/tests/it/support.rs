//! Shared helpers: a devnet with flashblocks, a flashblocks-rpc in front of its local engine,
//! a controllable WebSocket relay, JSON-RPC calls, polling with deadlines.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use alloy_consensus::{Eip658Value, Receipt};
use alloy_primitives::{Address, B256, Bloom, Bytes, U256};
use alloy_rpc_types_engine::{JwtSecret, PayloadId};
use clap::Parser;
use devnet::{
    app::{
        MuxWiring, load_genesis, metric_value, start_engine_on, start_engine_with, start_mux,
        unix_now,
    },
    chain::{
        accounts::{funded_dev_signers, raw_transaction, sign_transfer},
        attributes::SequencerParams,
    },
    engine::{
        Role,
        flashblocks::FlashblocksConfig,
        rpc::{EngineServerConfig, RunningEngine},
    },
    node::{DriverConfig, DriverHandle, start_driver},
    spammer::{SpammerConfig, SpammerHandle, start_spammer},
};
use engine_api::{Upstream, UpstreamConfig};
use engine_mux::RunningMux;
use flashblocks_rpc::{Config, Running, cli::Args};
use futures::{SinkExt, StreamExt};
use op_alloy_consensus::OpReceipt;
use op_alloy_rpc_types_engine::{
    OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
    OpFlashblockPayloadMetadata,
};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tokio_tungstenite::tungstenite::Message;

/// Slot length: long enough that "before the block is sealed" is observable.
pub const BLOCK_TIME: Duration = Duration::from_millis(1000);
/// The devnet's builder publishes a flashblock every quarter slot.
pub const FLASHBLOCK_INTERVAL: Duration = Duration::from_millis(250);
/// Per-call deadline.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A plain JSON-RPC client (with a JWT for engine-mux's port).
pub fn client(url: &str, jwt: Option<JwtSecret>) -> Upstream {
    Upstream::new(UpstreamConfig {
        name: "test",
        url: url.parse().unwrap(),
        secret: jwt,
        timeout: CALL_TIMEOUT,
        max_response_bytes: 1 << 24,
    })
}

/// Calls `method` and returns the result as JSON (`null` included; panics on errors).
pub async fn call(rpc: &Upstream, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let res = rpc
        .forward(&headers, body.to_string().into(), CALL_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{method} {params}: {e}"));
    let raw = flashblocks_rpc::rpc::parse_response(res.body())
        .unwrap_or_else(|e| panic!("{method} {params}: {e:?}"));
    serde_json::from_str(raw.get()).unwrap()
}

/// Hex quantity as u64.
pub fn quantity(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a quantity: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// Hex quantity as U256.
pub fn quantity256(v: &Value) -> U256 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a quantity: {v}"))
        .parse()
        .unwrap()
}

/// Starts flashblocks-rpc on an ephemeral port.
pub async fn start_rpc(flashblocks_url: &str, upstream_url: &str, extra: &[&str]) -> Running {
    let mut argv = vec![
        "flashblocks-rpc",
        "--flashblocks-url",
        flashblocks_url,
        "--upstream-url",
        upstream_url,
        "--rpc-addr",
        "127.0.0.1:0",
        "--reconnect-min-ms",
        "50",
        "--reconnect-max-ms",
        "200",
    ];
    argv.extend_from_slice(extra);
    let config = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap();
    flashblocks_rpc::start(config).await.unwrap()
}

/// Reads one metric of a running instance.
pub fn metric(rpc: &Running, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&rpc.metrics_text(), name, labels)
}

/// `Some` when `ours` serves a pending block ahead of the upstream's head read after it
/// (so it cannot be the upstream's own answer racing a new block).
pub async fn pending_ahead(upstream: &Upstream, ours: &Upstream) -> Option<()> {
    let pending = call(ours, "eth_getBlockByNumber", json!(["pending", false])).await;
    let head = quantity(&call(upstream, "eth_blockNumber", json!([])).await);
    (quantity(&pending["number"]) > head).then_some(())
}

/// Polls `check` every 10 ms until it returns `Some`, panicking after `deadline`.
pub async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A devnet with builder flashblocks, assembled from the devnet's component API: local and
/// builder engines (the builder streams flashblocks), engine-mux between them (ingesting and
/// re-publishing the flashblocks), the driver
/// playing op-node, and a spammer on every dev account but the first (which the test itself
/// sends from).
pub struct Net {
    pub local_engine: RunningEngine,
    pub builder: RunningEngine,
    pub mux_instance: RunningMux,
    pub driver: DriverHandle,
    pub spammer: SpammerHandle,
    pub mux: Upstream,
    pub local: Upstream,
    pub sender: alloy_signer_local::PrivateKeySigner,
    pub chain_id: u64,
}

impl Net {
    pub async fn start(tx_rate: f64) -> Self {
        let host: IpAddr = Ipv4Addr::LOCALHOST.into();
        let genesis = load_genesis(None, unix_now(), None).unwrap();
        let spec = genesis.spec.clone();
        let mut signers = funded_dev_signers(&genesis.state).unwrap();
        let sender = signers.remove(0);
        let jwt = JwtSecret::random();
        let local_engine = start_engine_on(genesis.clone(), Role::Local, host, 0, 0, jwt)
            .await
            .unwrap();
        let builder = start_engine_with(
            genesis,
            Role::Builder,
            EngineServerConfig {
                auth_addr: SocketAddr::new(host, 0),
                http_addr: SocketAddr::new(host, 0),
                jwt,
                flashblocks: Some(FlashblocksConfig {
                    addr: SocketAddr::new(host, 0),
                    interval: FLASHBLOCK_INTERVAL,
                    max_per_payload: 8,
                }),
            },
        )
        .await
        .unwrap();
        // engine-mux ingests the builder's flashblocks and re-publishes them, as in production.
        let wiring = MuxWiring {
            local_url: local_engine.auth_url(),
            builder_url: builder.auth_url(),
            jwt,
            host,
            port: 0,
            flashblocks: Some((builder.flashblocks_addr.expect("flashblocks on"), 0)),
        };
        let mux_instance = start_mux(wiring, &[]).await.unwrap();
        let mux_url = format!("http://{}", mux_instance.rpc_addr);
        let driver = start_driver(
            DriverConfig {
                engine_url: mux_url.parse().unwrap(),
                jwt,
                block_time: BLOCK_TIME,
                get_payload_lead: BLOCK_TIME / 5,
                call_timeout: Duration::from_secs(2),
                params: SequencerParams::default(),
                max_blocks: None,
            },
            spec.clone(),
        );
        let spammer = start_spammer(
            SpammerConfig {
                rpc_url: mux_url.parse().unwrap(),
                jwt: Some(jwt),
                rate: tx_rate,
                chain_id: spec.chain_id,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                call_timeout: Duration::from_secs(2),
            },
            signers,
        );
        let mux = client(&mux_url, Some(jwt));
        let local = client(&local_engine.http_url(), None);
        Self {
            local_engine,
            builder,
            mux_instance,
            driver,
            spammer,
            mux,
            local,
            sender,
            chain_id: spec.chain_id,
        }
    }

    /// The local engine's plain RPC (the upstream flashblocks-rpc sits in front of).
    pub fn upstream_url(&self) -> String {
        self.local_engine.http_url()
    }

    /// engine-mux's outbound flashblocks WebSocket (what flashblocks-proxy or an RPC node
    /// subscribes to).
    pub fn flashblocks_url(&self) -> String {
        format!(
            "ws://{}",
            self.mux_instance
                .flashblocks_addr
                .expect("engine-mux publishes")
        )
    }

    /// The builder's own flashblocks WebSocket (the bench compares both streams).
    #[allow(dead_code)]
    pub fn builder_flashblocks_url(&self) -> String {
        format!(
            "ws://{}",
            self.builder.flashblocks_addr.expect("flashblocks on")
        )
    }

    /// Signs a transfer from the test's own account and sends it through engine-mux (which
    /// copies it to the builder). Returns its hash.
    pub async fn send_transfer(&self, nonce: u64, to: Address, value: U256) -> B256 {
        let tx = sign_transfer(
            &self.sender,
            self.chain_id,
            nonce,
            to,
            value,
            2_000_000_000,
            1_000_000,
        )
        .unwrap();
        let hash: B256 = self
            .mux
            .call(
                "eth_sendRawTransaction",
                &json!([raw_transaction(&tx)]),
                CALL_TIMEOUT,
            )
            .await
            .unwrap();
        hash
    }

    pub async fn stop(self) {
        self.spammer.stop().await;
        self.driver.stop().await;
        self.mux_instance.shutdown().await;
        self.builder.stop().await;
        self.local_engine.stop().await;
    }
}

/// A WebSocket relay between a flashblocks source and flashblocks-rpc that a test can cut
/// (closing every connection and refusing new ones) and restore.
pub struct Relay {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(source: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, up_rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if !*up_rx.borrow() {
                    drop(stream);
                    continue;
                }
                let source = source.clone();
                let mut up_rx = up_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut downstream) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let Ok((mut upstream, _)) = tokio_tungstenite::connect_async(source).await
                    else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            msg = upstream.next() => match msg {
                                Some(Ok(m)) if m.is_text() || m.is_binary() => {
                                    if downstream.send(m).await.is_err() { break; }
                                }
                                Some(Ok(_)) => {}
                                _ => break,
                            },
                            _ = cut(&mut up_rx) => break,
                        }
                    }
                    let _ = downstream.close(None).await;
                });
            }
        });
        Self { addr, up, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        let _ = self.up.send(true);
    }
}

/// Resolves once the relay is cut.
async fn cut(up: &mut watch::Receiver<bool>) {
    loop {
        if !*up.borrow_and_update() {
            return;
        }
        if up.changed().await.is_err() {
            return;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts that every field the upstream sent is present in `ours` with the same value
/// (recursively; arrays element by element). `ours` may carry extra fields (the OP receipt
/// fee fields the devnet does not emit).
pub fn assert_covers(what: &str, upstream: &Value, ours: &Value) {
    match (upstream, ours) {
        (Value::Object(u), Value::Object(o)) => {
            for (k, v) in u {
                let Some(mine) = o.get(k) else {
                    panic!("{what}: missing field {k:?} (upstream {v})");
                };
                assert_covers(&format!("{what}.{k}"), v, mine);
            }
        }
        (Value::Array(u), Value::Array(o)) => {
            assert_eq!(u.len(), o.len(), "{what}: lengths differ");
            for (i, (a, b)) in u.iter().zip(o).enumerate() {
                assert_covers(&format!("{what}[{i}]"), a, b);
            }
        }
        (u, o) => assert_eq!(u, o, "{what}"),
    }
}

/// Serves whatever frames the test pushes to every connection it accepts (one at a time).
pub async fn scripted_server() -> (String, mpsc::Sender<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(m) = rx.recv().await {
            if ws.send(m).await.is_err() {
                return;
            }
        }
    });
    (url, tx)
}

/// One crafted flashblock carrying `txs` (raw, hash) that each use 21000 gas.
pub fn flashblock(
    payload: u8,
    index: u64,
    number: u64,
    parent: B256,
    prior_txs: u64,
    txs: &[(Bytes, B256)],
    hash: B256,
) -> Message {
    let base = (index == 0).then(|| OpFlashblockPayloadBase {
        parent_beacon_block_root: B256::ZERO,
        parent_hash: parent,
        fee_recipient: Address::repeat_byte(0xfe),
        prev_randao: B256::ZERO,
        block_number: number,
        gas_limit: 30_000_000,
        timestamp: unix_now(),
        extra_data: Bytes::new(),
        base_fee_per_gas: U256::from(1_000_000_000u64),
    });
    let receipts = txs
        .iter()
        .enumerate()
        .map(|(i, (_, h))| {
            let receipt = Receipt {
                status: Eip658Value::Eip658(true),
                cumulative_gas_used: 21_000 * (prior_txs + i as u64 + 1),
                logs: Vec::new(),
            };
            (*h, OpReceipt::Eip1559(receipt))
        })
        .collect();
    let fb = OpFlashblockPayload {
        payload_id: PayloadId::new([payload; 8]),
        index,
        base,
        diff: OpFlashblockPayloadDelta {
            state_root: B256::repeat_byte(1),
            receipts_root: B256::repeat_byte(2),
            logs_bloom: Bloom::ZERO,
            gas_used: 21_000 * (prior_txs + txs.len() as u64),
            block_hash: hash,
            transactions: txs.iter().map(|(raw, _)| raw.clone()).collect(),
            withdrawals: Vec::new(),
            withdrawals_root: B256::ZERO,
            blob_gas_used: None,
        },
        metadata: OpFlashblockPayloadMetadata {
            block_number: number,
            new_account_balances: Default::default(),
            receipts,
        },
    };
    Message::Text(serde_json::to_string(&fb).unwrap().into())
}
