//! A lone local engine at genesis (no builder, no engine-mux): the upstream the scripted-stream
//! scenarios point flashblocks-rpc at.

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rpc_types_engine::JwtSecret;
use alloy_signer_local::PrivateKeySigner;
use devnet::{
    app::{load_genesis, start_engine_on, unix_now},
    chain::accounts::{funded_dev_signers, raw_transaction, sign_transfer},
    engine::{Role, rpc::RunningEngine},
};
use engine_api::Upstream;
use serde_json::json;

use crate::rpc::{call, client};

/// A devnet engine at genesis, a client of its eth RPC, and what a test signs with.
pub struct LoneEngine {
    /// The engine.
    pub engine: RunningEngine,
    /// A client of its unauthenticated eth RPC.
    pub upstream: Upstream,
    /// The funded dev accounts.
    pub signers: Vec<PrivateKeySigner>,
    /// The chain id.
    pub chain_id: u64,
    /// The genesis block's hash (the head).
    pub head_hash: B256,
}

impl LoneEngine {
    /// Starts an engine on a fresh genesis on a free loopback port.
    pub async fn start() -> Self {
        let genesis = load_genesis(None, unix_now(), None).unwrap();
        let signers = funded_dev_signers(&genesis.state).unwrap();
        let chain_id = genesis.spec.chain_id;
        let engine = start_engine_on(
            genesis,
            Role::Local,
            "127.0.0.1".parse().unwrap(),
            0,
            0,
            JwtSecret::random(),
        )
        .await
        .unwrap();
        let upstream = client(&engine.http_url(), None);
        let head = call(&upstream, "eth_getBlockByNumber", json!(["latest", false])).await;
        let head_hash = serde_json::from_value(head["hash"].clone()).unwrap();
        Self {
            engine,
            upstream,
            signers,
            chain_id,
            head_hash,
        }
    }
}

/// A 1-wei transfer to `0x0707…07` from `signer` with `nonce` (2 gwei max fee, 1 Mwei tip):
/// its raw bytes and hash, as the scripted-stream scenarios preconfirm it.
pub fn transfer(signer: &PrivateKeySigner, chain_id: u64, nonce: u64) -> (Bytes, B256) {
    let tx = sign_transfer(
        signer,
        chain_id,
        nonce,
        Address::repeat_byte(7),
        U256::from(1),
        2_000_000_000,
        1_000_000,
    )
    .unwrap();
    (raw_transaction(&tx), tx.tx_hash())
}
