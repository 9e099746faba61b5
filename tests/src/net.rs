//! A devnet with builder flashblocks and engine-mux between the engines, assembled from the
//! devnet's component API.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_rpc_types_engine::JwtSecret;
use alloy_signer::SignerSync;
use devnet::{
    app::{MuxWiring, load_genesis, start_engine_on, start_engine_with, start_mux, unix_now},
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
use engine_api::Upstream;
use engine_mux::RunningMux;
use op_alloy_consensus::OpTxEnvelope;
use serde_json::{Value, json};
use test_utils::eventually_some;

use crate::{
    CALL_TIMEOUT, call, client,
    op_reth::{OpReth, devnet_genesis_json, op_reth_bin},
    quantity,
};

/// Slot length: long enough that "before the block is sealed" is observable.
pub const BLOCK_TIME: Duration = Duration::from_millis(1000);
/// The devnet's builder publishes a flashblock every quarter slot.
pub const FLASHBLOCK_INTERVAL: Duration = Duration::from_millis(250);
/// The sequencer's local EL in a [`Net`].
pub enum LocalEl {
    /// The devnet's revm engine.
    Devnet(RunningEngine),
    /// A real op-reth process on the same genesis ([`Net::start_on_op_reth`]).
    OpReth(OpReth),
}

/// A devnet with builder flashblocks, assembled from the devnet's component API: a local EL
/// (the devnet engine, or a real op-reth) and a builder engine (streaming flashblocks),
/// engine-mux between them (ingesting and re-publishing the flashblocks), the driver
/// playing op-node, and a spammer on every dev account but the first (which the test itself
/// sends from).
pub struct Net {
    /// The local EL (op-node's): the devnet engine, or a real op-reth.
    pub local_el: LocalEl,
    /// The builder engine, streaming flashblocks.
    pub builder: RunningEngine,
    /// engine-mux between them.
    pub mux_instance: RunningMux,
    /// The op-node stand-in.
    pub driver: DriverHandle,
    /// Background transactions.
    pub spammer: SpammerHandle,
    /// A client of engine-mux's port.
    pub mux: Upstream,
    /// A client of the local engine's eth RPC.
    pub local: Upstream,
    /// The dev account the test sends from.
    pub sender: alloy_signer_local::PrivateKeySigner,
    /// The chain id.
    pub chain_id: u64,
}

impl Net {
    /// Starts every part, the spammer at `tx_rate` transactions per second.
    pub async fn start(tx_rate: f64) -> Self {
        Self::start_with(tx_rate, None).await
    }

    /// [`Net::start`] with a real op-reth (the binary `OP_RETH_BIN` names; panics when unset)
    /// as the local EL, on the devnet's genesis: engine-mux sits between the driver and
    /// op-reth + the devnet builder as before, and [`Net::upstream_url`] is op-reth's HTTP RPC.
    pub async fn start_on_op_reth(tx_rate: f64) -> Self {
        Self::start_with(tx_rate, Some(op_reth_bin())).await
    }

    async fn start_with(tx_rate: f64, op_reth: Option<std::path::PathBuf>) -> Self {
        let host: IpAddr = Ipv4Addr::LOCALHOST.into();
        let timestamp = unix_now();
        let genesis = load_genesis(None, timestamp, None).unwrap();
        let spec = genesis.spec.clone();
        let mut signers = funded_dev_signers(&genesis.state).unwrap();
        let sender = signers.remove(0);
        let jwt = JwtSecret::random();
        let local_el = match op_reth {
            None => LocalEl::Devnet(
                start_engine_on(genesis.clone(), Role::Local, host, 0, 0, jwt)
                    .await
                    .unwrap(),
            ),
            Some(bin) => LocalEl::OpReth(
                OpReth::start(
                    &bin,
                    &devnet_genesis_json(timestamp),
                    jwt,
                    genesis.header.hash_slow(),
                )
                .await,
            ),
        };
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
            local_url: local_el.auth_url(),
            builder_url: builder.auth_url(),
            jwt,
            host,
            port: 0,
            flashblocks: Some((builder.flashblocks_addr.expect("flashblocks on"), 0)),
            flashblocks_p2p: None,
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
        let local = client(&local_el.http_url(), None);
        Self {
            local_el,
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
        self.local_el.http_url()
    }

    /// Where op-reth's output goes, when the local EL is op-reth (a failing test prints it).
    pub fn op_reth_log(&self) -> Option<&std::path::Path> {
        match &self.local_el {
            LocalEl::OpReth(r) => Some(&r.log),
            LocalEl::Devnet(_) => None,
        }
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

    /// Signs an EIP-1559 call (or, with `TxKind::Create`, a deployment) from the test's own
    /// account with a 300k gas limit and sends it through engine-mux. Returns its hash.
    pub async fn send_call(&self, nonce: u64, to: TxKind, value: U256, input: Bytes) -> B256 {
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: 300_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000,
            to,
            value,
            access_list: Default::default(),
            input,
        };
        let signature = self.sender.sign_hash_sync(&tx.signature_hash()).unwrap();
        let raw = raw_transaction(&OpTxEnvelope::Eip1559(tx.into_signed(signature)));
        serde_json::from_value(call(&self.mux, "eth_sendRawTransaction", json!([raw])).await)
            .unwrap()
    }

    /// The number of the block `hash` is sealed in, waiting for it (the local engine's receipt).
    pub async fn sealed_in(&self, hash: B256) -> u64 {
        eventually_some(8 * BLOCK_TIME, "the block sealed", || async {
            let r: Value = call(&self.local, "eth_getTransactionReceipt", json!([hash])).await;
            (!r.is_null()).then(|| quantity(&r["blockNumber"]))
        })
        .await
    }

    /// Stops every part.
    pub async fn stop(self) {
        self.spammer.stop().await;
        self.driver.stop().await;
        self.mux_instance.shutdown().await;
        self.builder.stop().await;
        match self.local_el {
            LocalEl::Devnet(e) => e.stop().await,
            // Killed (and its datadir removed) on drop.
            LocalEl::OpReth(r) => drop(r),
        }
    }
}

impl LocalEl {
    /// Its Engine API URL.
    pub fn auth_url(&self) -> String {
        match self {
            Self::Devnet(e) => e.auth_url(),
            Self::OpReth(r) => r.auth_url.clone(),
        }
    }

    /// Its plain eth RPC URL.
    pub fn http_url(&self) -> String {
        match self {
            Self::Devnet(e) => e.http_url(),
            Self::OpReth(r) => r.http_url.clone(),
        }
    }
}
