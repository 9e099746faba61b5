//! Stand-ins the carry-over tests and benchmark drive: one stack following a scripted peer
//! stream, the peer stream itself, and one op-node slot asked at once.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use alloy_primitives::B256;
use alloy_rpc_types_engine::{ForkchoiceState, JwtSecret, PayloadStatus};
use alloy_signer_local::PrivateKeySigner;
use engine_api::{Upstream, UpstreamConfig};
use engine_mux::RunningMux;
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

use super::config::STEP_TIMEOUT;
use crate::{
    app::{
        error::DevnetError,
        start::{MuxWiring, load_genesis, start_engine_on, start_mux, unix_now},
    },
    chain::{accounts::funded_dev_signers, genesis::ChainSpec},
    engine::{Role, rpc::RunningEngine},
};

/// One sequencer stack following a [`PeerStreamStandIn`]'s flashblocks, with a client playing its
/// op-node: a local engine, a builder engine and engine-mux on loopback. What the carry-over
/// tests and the carry-over benchmark drive.
#[derive(Debug)]
pub struct FollowingStack {
    /// The local execution engine.
    pub local: RunningEngine,
    /// The builder engine.
    pub builder: RunningEngine,
    /// engine-mux, following `peer`.
    pub mux: RunningMux,
    /// op-node's side: JWT-authenticated calls to engine-mux.
    pub client: Upstream,
    /// The chain both engines run.
    pub spec: ChainSpec,
    /// Funded dev accounts.
    pub signers: Vec<PrivateKeySigner>,
    /// The peer whose flashblocks engine-mux follows.
    pub peer: PeerStreamStandIn,
}

impl FollowingStack {
    /// Starts the stack and waits until engine-mux subscribed to the peer; `mux_args` are extra
    /// engine-mux flags.
    pub async fn start(mux_args: &[String]) -> Result<Self, DevnetError> {
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let genesis = load_genesis(None, unix_now(), None)?;
        let jwt = JwtSecret::random();
        let signers = funded_dev_signers(&genesis.state)?;
        let local = start_engine_on(genesis.clone(), Role::Local, host, 0, 0, jwt).await?;
        let builder = start_engine_on(genesis.clone(), Role::Builder, host, 0, 0, jwt).await?;
        let peer_secret = JwtSecret::random();
        let peer = PeerStreamStandIn::start(host, &peer_secret)
            .await
            .map_err(|e| DevnetError::MuxStart(format!("peer stream stand-in: {e}")))?;
        let mut args = vec![
            format!("--flashblocks-peer-url=ws://{}", peer.addr),
            format!(
                "--flashblocks-peer-secret={}",
                alloy_primitives::hex::encode(peer_secret.as_bytes())
            ),
        ];
        args.extend_from_slice(mux_args);
        let mux = start_mux(
            MuxWiring {
                local_url: local.auth_url(),
                builder_url: builder.auth_url(),
                jwt,
                host,
                port: 0,
                flashblocks: None,
                flashblocks_p2p: None,
            },
            &args,
        )
        .await?;
        peer.subscribed().await;
        let client = Upstream::new(UpstreamConfig {
            name: "op-node",
            url: format!("http://{}", mux.rpc_addr)
                .parse()
                .map_err(|e| DevnetError::MuxStart(format!("engine-mux URL: {e}")))?,
            secret: Some(jwt),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 24,
        });
        Ok(Self {
            local,
            builder,
            mux,
            client,
            spec: genesis.spec,
            signers,
            peer,
        })
    }

    /// Stops engine-mux, then the engines.
    pub async fn stop(self) {
        self.mux.shutdown().await;
        self.builder.stop().await;
        self.local.stop().await;
    }
}

/// A stand-in for a peer sequencer's flashblocks stream (its engine-mux's outbound port): a
/// WebSocket server sending every connected subscriber the frames it is given, signed with the
/// set's secret as engine-mux signs its peer stream (binary: tag, then the flashblock JSON).
#[derive(Debug)]
pub struct PeerStreamStandIn {
    /// Where it listens.
    pub addr: SocketAddr,
    frames: tokio::sync::broadcast::Sender<Vec<u8>>,
    key: engine_mux::PeerKey,
    subscribers: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl PeerStreamStandIn {
    /// Listens on an ephemeral port of `host`; signs its frames with `secret`, as a peer
    /// engine-mux signs its peer stream.
    pub async fn start(host: IpAddr, secret: &JwtSecret) -> std::io::Result<Self> {
        use futures::SinkExt;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(host, 0)).await?;
        let addr = listener.local_addr()?;
        let (frames, _) = tokio::sync::broadcast::channel::<Vec<u8>>(1024);
        let (count, subscribers) = watch::channel(0usize);
        let sender = frames.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut rx = sender.subscribe();
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    count.send_modify(|n| *n += 1);
                    while let Ok(frame) = rx.recv().await {
                        let message = tokio_tungstenite::tungstenite::Message::Binary(frame.into());
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                    count.send_modify(|n| *n -= 1);
                });
            }
        });
        Ok(Self {
            addr,
            frames,
            key: engine_mux::PeerKey::new(secret),
            subscribers,
            task,
        })
    }

    /// Waits until someone subscribed (engine-mux's peer client connects with a backoff).
    pub async fn subscribed(&self) {
        let mut s = self.subscribers.clone();
        let _ = tokio::time::timeout(STEP_TIMEOUT, s.wait_for(|n| *n > 0)).await;
    }

    /// Sends a flashblock, signed, to every subscriber.
    pub fn publish(&self, fb: &OpFlashblockPayload) {
        if let Ok(text) = serde_json::to_vec(fb) {
            let _ = self.frames.send(self.key.sign(&text));
        }
    }

    /// Sends a flashblock as a stream without the set's secret would: unsigned.
    pub fn publish_unsigned(&self, fb: &OpFlashblockPayload) {
        if let Ok(text) = serde_json::to_vec(fb) {
            let _ = self.frames.send(text);
        }
    }
}

impl Drop for PeerStreamStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One op-node sequencer slot asked without waiting for the slot's end: FCU with `attributes`
/// on `parent`, getPayload right away, newPayload, FCU to the new head. Returns the sealed
/// payload's transactions and the time from the FCU being sent to the getPayload answer.
pub async fn op_node_slot(
    client: &Upstream,
    spec: &ChainSpec,
    parent: B256,
    attributes: &op_alloy_rpc_types_engine::OpPayloadAttributes,
) -> Result<(B256, Vec<alloy_primitives::Bytes>, Duration), String> {
    let state = |h| ForkchoiceState {
        head_block_hash: h,
        safe_block_hash: h,
        finalized_block_hash: h,
    };
    let timeout = Duration::from_secs(5);
    let started = tokio::time::Instant::now();
    let fcu: alloy_rpc_types_engine::ForkchoiceUpdated = client
        .call(
            "engine_forkchoiceUpdatedV3",
            &json!([state(parent), attributes]),
            timeout,
        )
        .await
        .map_err(|e| format!("forkchoiceUpdated: {e}"))?;
    let id = fcu.payload_id.ok_or("no payload id")?;
    let v4 = spec.is_isthmus(attributes.payload_attributes.timestamp);
    let method = if v4 {
        "engine_getPayloadV4"
    } else {
        "engine_getPayloadV3"
    };
    let envelope: Value = client
        .call(method, &json!([id]), timeout)
        .await
        .map_err(|e| format!("getPayload: {e}"))?;
    let elapsed = started.elapsed();
    let payload = envelope["executionPayload"].clone();
    let root = envelope["parentBeaconBlockRoot"].clone();
    let hash: B256 = serde_json::from_value(payload["blockHash"].clone())
        .map_err(|e| format!("blockHash: {e}"))?;
    let txs: Vec<alloy_primitives::Bytes> = serde_json::from_value(payload["transactions"].clone())
        .map_err(|e| format!("transactions: {e}"))?;
    let (method, params) = if v4 {
        (
            "engine_newPayloadV4",
            json!([payload, Vec::<B256>::new(), root, Vec::<String>::new()]),
        )
    } else {
        (
            "engine_newPayloadV3",
            json!([payload, Vec::<B256>::new(), root]),
        )
    };
    let status: PayloadStatus = client
        .call(method, &params, timeout)
        .await
        .map_err(|e| format!("newPayload: {e}"))?;
    if !status.status.is_valid() {
        return Err(format!("newPayload: {}", status.status));
    }
    let _: Value = client
        .call(
            "engine_forkchoiceUpdatedV3",
            &json!([state(hash), Value::Null]),
            timeout,
        )
        .await
        .map_err(|e| format!("forkchoiceUpdated: {e}"))?;
    Ok((hash, txs, elapsed))
}
