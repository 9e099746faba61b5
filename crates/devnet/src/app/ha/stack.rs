//! The HA set's two sequencer stacks (local engine, builder with flashblocks, engine-mux
//! following the other stack) and a follower op-node's import of sealed blocks.

use std::{net::SocketAddr, time::Duration};

use alloy_primitives::B256;
use alloy_rpc_types_engine::{ExecutionPayloadV3, ForkchoiceState, JwtSecret, PayloadStatus};
use alloy_signer_local::PrivateKeySigner;
use engine_api::{Upstream, UpstreamConfig};
use engine_mux::RunningMux;
use op_alloy_rpc_types_engine::OpExecutionPayloadV4;
use serde_json::{Value, json};

use super::config::HaConfig;
use crate::{
    app::{
        config::DevnetFlashblocks,
        error::DevnetError,
        start::{MuxWiring, start_engine_on, start_engine_with, start_mux},
    },
    chain::genesis::{ChainSpec, LoadedGenesis},
    engine::{
        Engine, Role,
        flashblocks::FlashblocksConfig,
        rpc::{EngineServerConfig, RunningEngine},
        store::ChainBlock,
    },
};

/// The op-conductor stand-in's view of one stack.
pub(super) struct Stack {
    pub(super) name: &'static str,
    pub(super) local: RunningEngine,
    pub(super) builder: RunningEngine,
    pub(super) mux: RunningMux,
    pub(super) client: Upstream,
}

/// What both stacks share.
pub(super) struct Shared {
    pub(super) genesis: LoadedGenesis,
    pub(super) jwt: JwtSecret,
    /// The secret the set's engine-muxes sign their peer streams with.
    pub(super) peer_secret: JwtSecret,
    pub(super) config: HaConfig,
    pub(super) signers: Vec<PrivateKeySigner>,
    /// Each stack's engine-mux outbound flashblocks port (kept across restarts, so the peer's
    /// `--flashblocks-peer-url` stays right).
    pub(super) ports: [u16; 2],
}

impl Shared {
    pub(super) fn spec(&self) -> &ChainSpec {
        &self.genesis.spec
    }

    pub(super) fn client(&self, name: &'static str, addr: SocketAddr) -> Upstream {
        Upstream::new(UpstreamConfig {
            name,
            url: format!("http://{addr}")
                .parse()
                .expect("a socket address is a valid authority"),
            secret: Some(self.jwt),
            timeout: Duration::from_secs(5),
            max_response_bytes: engine_api::upstream::DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Starts stack `index` empty (genesis), its engine-mux following the other stack.
    pub(super) async fn start_stack(&self, index: usize) -> Result<Stack, DevnetError> {
        let host = self.config.host;
        let name = ["a", "b"][index];
        let local =
            start_engine_on(self.genesis.clone(), Role::Local, host, 0, 0, self.jwt).await?;
        let builder = start_engine_with(
            self.genesis.clone(),
            Role::Builder,
            EngineServerConfig {
                auth_addr: SocketAddr::new(host, 0),
                http_addr: SocketAddr::new(host, 0),
                jwt: self.jwt,
                flashblocks: Some(FlashblocksConfig {
                    addr: SocketAddr::new(host, 0),
                    interval: self.config.flashblocks_interval,
                    max_per_payload: DevnetFlashblocks {
                        interval: self.config.flashblocks_interval,
                        ..Default::default()
                    }
                    .max_per_payload(self.config.block_time),
                }),
            },
        )
        .await?;
        let mut args = self.config.mux_args.clone();
        // Every engine-mux of the set signs what it serves its peers (and, following them,
        // accepts only what they signed).
        args.push(format!(
            "--flashblocks-peer-secret={}",
            alloy_primitives::hex::encode(self.peer_secret.as_bytes())
        ));
        if self.config.carry_over {
            args.push(format!(
                "--flashblocks-peer-url=ws://{}",
                SocketAddr::new(host, self.ports[1 - index])
            ));
            args.push("--flashblocks-peer-max-reconnect-ms=100".into());
        }
        let mux = start_mux(
            MuxWiring {
                local_url: local.auth_url(),
                builder_url: builder.auth_url(),
                jwt: self.jwt,
                host,
                port: 0,
                flashblocks: builder.flashblocks_addr.map(|ws| (ws, self.ports[index])),
                flashblocks_p2p: None,
            },
            &args,
        )
        .await?;
        let client = self.client("ha-op-node", mux.rpc_addr);
        Ok(Stack {
            name,
            local,
            builder,
            mux,
            client,
        })
    }
}

/// `engine_newPayload` params of a sealed block, as op-node sends them.
pub(super) fn new_payload_call(spec: &ChainSpec, block: &ChainBlock) -> (&'static str, Value) {
    let b = block.to_consensus_block();
    let v3 = ExecutionPayloadV3::from_block_unchecked(block.hash, &b);
    let root = b.header.parent_beacon_block_root.unwrap_or_default();
    if spec.is_isthmus(b.header.timestamp) {
        let v4 = OpExecutionPayloadV4::from_v3_with_withdrawals_root(
            v3,
            b.header.withdrawals_root.unwrap_or_default(),
        );
        (
            "engine_newPayloadV4",
            json!([v4, Vec::<B256>::new(), root, Vec::<String>::new()]),
        )
    } else {
        ("engine_newPayloadV3", json!([v3, Vec::<B256>::new(), root]))
    }
}

/// A follower op-node's import: every canonical block of `from` above the follower's head,
/// `newPayload` each, then `forkchoiceUpdated` to the last, through the follower's engine-mux.
pub(super) async fn import(spec: &ChainSpec, from: &Engine, to: &Stack) -> Result<u64, String> {
    let mut n = to.local.engine.head().number();
    let target = from.head().number();
    let mut last = None;
    while n < target {
        n += 1;
        let Some(block) = from.with_chain(|c| c.canonical_block(n)) else {
            return Err(format!("leader has no canonical block {n}"));
        };
        let (method, params) = new_payload_call(spec, &block);
        let status: PayloadStatus = to
            .client
            .call(method, &params, Duration::from_secs(5))
            .await
            .map_err(|e| format!("newPayload {n} on {}: {e}", to.name))?;
        if !status.status.is_valid() {
            return Err(format!("newPayload {n} on {}: {}", to.name, status.status));
        }
        last = Some(block.hash);
    }
    if let Some(head) = last {
        let state = ForkchoiceState {
            head_block_hash: head,
            safe_block_hash: head,
            finalized_block_hash: head,
        };
        let _: Value = to
            .client
            .call(
                "engine_forkchoiceUpdatedV3",
                &json!([state, Value::Null]),
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| format!("forkchoiceUpdated on {}: {e}", to.name))?;
    }
    Ok(n)
}
