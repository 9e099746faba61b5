//! `eth_call`, `eth_estimateGas`, `eth_getLogs`, `eth_feeHistory` and
//! `eth_maxPriorityFeePerGas` through the eth RPC module, answers parsed as alloy's types.

use std::sync::Arc;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, hex};
use alloy_rpc_types_engine::ForkchoiceState;
use alloy_rpc_types_eth::{FeeHistory, Log};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use jsonrpsee::{MethodsError, RpcModule};
use serde_json::{Value, json};

use crate::{
    chain::{
        accounts::funded_dev_signers,
        attributes::{SequencerParams, sequencer_attributes},
        genesis::{ForkOverrides, default_genesis},
    },
    engine::{Engine, EngineVersion, Role, execution_data_of},
};

/// Topic of the log the test contract emits.
const TOPIC: B256 = B256::repeat_byte(0xab);

/// Runtime: with calldata `v`, stores `v` in slot 0, logs it (LOG1, [`TOPIC`]) and returns it;
/// without calldata, reverts with slot 0 as revert data.
fn runtime() -> Vec<u8> {
    let mut code = hex!("3615603a57600035806000556000527f").to_vec();
    code.extend_from_slice(TOPIC.as_slice());
    code.extend_from_slice(&hex!("60206000a160206000f35b60005460005260206000fd"));
    assert_eq!(code.len(), 0x46);
    code
}

fn initcode() -> Bytes {
    let mut code = hex!("604680600b6000396000f3").to_vec();
    code.extend(runtime());
    code.into()
}

struct Chain {
    module: RpcModule<Arc<Engine>>,
    engine: Arc<Engine>,
    signer: PrivateKeySigner,
    nonce: u64,
}

impl Chain {
    fn new() -> Self {
        let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
        let engine = Arc::new(Engine::new(g, Role::Local));
        let signer = funded_dev_signers(&engine.head_state()).unwrap().remove(0);
        let mut module = RpcModule::new(engine.clone());
        super::eth::register(&mut module).unwrap();
        Self {
            module,
            engine,
            signer,
            nonce: 0,
        }
    }

    /// Signs and pools a transaction from the funded signer.
    fn send(&mut self, to: TxKind, input: Bytes, tip: u128) -> B256 {
        let tx = TxEip1559 {
            chain_id: self.engine.spec().chain_id,
            nonce: self.nonce,
            gas_limit: 200_000,
            max_fee_per_gas: 10_000_000_000,
            max_priority_fee_per_gas: tip,
            to,
            value: U256::ZERO,
            access_list: Default::default(),
            input,
        };
        self.nonce += 1;
        let sig = self.signer.sign_hash_sync(&tx.signature_hash()).unwrap();
        let tx = op_alloy_consensus::OpTxEnvelope::Eip1559(tx.into_signed(sig));
        self.engine
            .submit_raw_transaction(&tx.encoded_2718())
            .unwrap()
    }

    /// Builds the next block from the pool and makes it the head.
    fn seal(&self) {
        let head = self.engine.head();
        let attrs = sequencer_attributes(
            self.engine.spec(),
            &SequencerParams::default(),
            head.number() + 1,
            head.header.timestamp + 1,
        );
        let fcs = |hash| ForkchoiceState {
            head_block_hash: hash,
            safe_block_hash: hash,
            finalized_block_hash: hash,
        };
        let fcu = self
            .engine
            .forkchoice_updated(fcs(head.hash), Some(attrs))
            .unwrap();
        let env = self
            .engine
            .get_payload(fcu.payload_id.unwrap(), EngineVersion::V4)
            .unwrap();
        let data = execution_data_of(&env);
        let hash = data.payload.block_hash();
        self.engine.new_payload(data, EngineVersion::V4).unwrap();
        self.engine.forkchoice_updated(fcs(hash), None).unwrap();
    }

    async fn call<R: serde::de::DeserializeOwned + Clone>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<R, jsonrpsee::types::ErrorObjectOwned> {
        let params = params.as_array().unwrap().clone();
        let mut builder = jsonrpsee::core::params::ArrayParams::new();
        for p in params {
            builder.insert(p).unwrap();
        }
        match self.module.call(method, builder).await {
            Ok(v) => Ok(v),
            Err(MethodsError::JsonRpc(e)) => Err(e),
            Err(e) => panic!("{method}: {e}"),
        }
    }

    /// Deploys the test contract in a block of its own; its address.
    fn deploy(&mut self) -> Address {
        let address = self.signer.address().create(self.nonce);
        self.send(TxKind::Create, initcode(), 1_000_000_000);
        self.seal();
        assert!(
            !self
                .engine
                .head_state()
                .account(&address)
                .unwrap()
                .is_empty_code_hash()
        );
        address
    }
}

fn word(v: u64) -> Bytes {
    B256::from(U256::from(v)).to_vec().into()
}

/// `eth_getCode` / `eth_getStorageAt` at a block: the deployed runtime and the stored word at
/// and after their blocks, nothing before (answers parse as alloy's `Bytes` / `B256`).
#[tokio::test]
async fn code_and_storage_at_a_block() {
    let mut chain = Chain::new();
    let before = json!(format!("{:#x}", chain.engine.head().number()));
    let contract = chain.deploy();
    let deployed = json!(format!("{:#x}", chain.engine.head().number()));
    chain.send(TxKind::Call(contract), word(7), 1_000_000_000);
    chain.seal();
    let code = |at: Value| chain.call::<Bytes>("eth_getCode", json!([contract, at]));
    assert_eq!(code(before.clone()).await.unwrap(), Bytes::new());
    assert_eq!(
        code(deployed.clone()).await.unwrap(),
        Bytes::from(runtime())
    );
    assert_eq!(code(json!("latest")).await.unwrap(), Bytes::from(runtime()));
    let slot = |at: Value| chain.call::<B256>("eth_getStorageAt", json!([contract, "0x0", at]));
    assert_eq!(slot(deployed).await.unwrap(), B256::ZERO);
    assert_eq!(
        slot(json!("latest")).await.unwrap(),
        B256::from(U256::from(7))
    );
    assert_eq!(slot(before).await.unwrap(), B256::ZERO);
}

#[tokio::test]
async fn eth_call_runs_on_the_blocks_state_and_reverts_with_code_3_and_the_revert_data() {
    let mut chain = Chain::new();
    let contract = chain.deploy();
    chain.send(TxKind::Call(contract), word(7), 1_000_000_000);
    chain.seal();
    let at_deploy = json!(format!("{:#x}", chain.engine.head().number() - 1));

    // With calldata: returns it.
    let req = json!({"to": contract, "data": word(42)});
    for tag in [json!("latest"), json!("pending"), at_deploy.clone()] {
        let out: Bytes = chain.call("eth_call", json!([req, tag])).await.unwrap();
        assert_eq!(out, word(42), "at {tag}");
    }
    // Without: reverts with the stored value, 7 at the head, 0 before the store.
    let req = json!({"from": Address::repeat_byte(0x99), "to": contract});
    let e = chain
        .call::<Bytes>("eth_call", json!([req, "latest"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 3);
    assert_eq!(e.message(), "execution reverted");
    let data: Bytes = serde_json::from_str(e.data().unwrap().get()).unwrap();
    assert_eq!(data, word(7));
    let e = chain
        .call::<Bytes>("eth_call", json!([req, at_deploy]))
        .await
        .unwrap_err();
    assert_eq!(
        serde_json::from_str::<Bytes>(e.data().unwrap().get()).unwrap(),
        word(0)
    );

    // A transfer of more than the sender has fails; a bad request is -32602.
    let poor = json!({"from": Address::repeat_byte(0x99), "to": contract, "value": "0x1"});
    let e = chain
        .call::<Bytes>("eth_call", json!([poor]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), -32000, "{e:?}");
    let e = chain
        .call::<Bytes>("eth_call", json!(["nope"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), -32602);
    let e = chain
        .call::<Bytes>("eth_call", json!([{"to": contract}, "0x99"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), -32001);
}

#[tokio::test]
async fn estimate_gas_is_the_least_gas_limit_at_which_the_call_succeeds() {
    let mut chain = Chain::new();
    let contract = chain.deploy();
    let from = chain.signer.address();
    let req = json!({"from": from, "to": contract, "data": word(5)});
    let gas: alloy_primitives::U64 = chain.call("eth_estimateGas", json!([req])).await.unwrap();
    let gas: u64 = gas.to();
    assert!(
        gas > 21_000 + 20_000,
        "a fresh SSTORE costs more than 20k: {gas}"
    );
    let with_gas =
        |g: u64| json!({"from": from, "to": contract, "data": word(5), "gas": format!("{g:#x}")});
    let ok: Result<Bytes, _> = chain.call("eth_call", json!([with_gas(gas)])).await;
    assert_eq!(ok.unwrap(), word(5));
    let short: Result<Bytes, _> = chain.call("eth_call", json!([with_gas(gas - 1)])).await;
    assert!(
        short.is_err(),
        "{gas} - 1 is enough, the estimate is not the least"
    );

    // A plain transfer is 21000; a reverting call is code 3 with the data.
    let transfer = json!({"from": from, "to": Address::repeat_byte(1), "value": "0x1"});
    let gas: alloy_primitives::U64 = chain
        .call("eth_estimateGas", json!([transfer, "pending"]))
        .await
        .unwrap();
    assert_eq!(gas.to::<u64>(), 21_000);
    let e = chain
        .call::<alloy_primitives::U64>("eth_estimateGas", json!([{"to": contract}]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 3);
}

#[tokio::test]
async fn get_logs_filters_by_block_range_address_and_topic() {
    let mut chain = Chain::new();
    let contract = chain.deploy();
    let other = chain.deploy();
    chain.send(TxKind::Call(contract), word(1), 1_000_000_000);
    chain.send(TxKind::Call(other), word(2), 1_000_000_000);
    chain.seal();
    let first = chain.engine.head().number();
    chain.send(TxKind::Call(contract), word(3), 1_000_000_000);
    chain.seal();
    let head = chain.engine.head();

    let logs: Vec<Log> = chain
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "earliest", "toBlock": "latest", "address": contract}]),
        )
        .await
        .unwrap();
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter()
            .all(|l| l.address() == contract && l.topics() == [TOPIC])
    );
    assert_eq!(logs[1].data().data, word(3));
    assert_eq!(logs[1].block_hash, Some(head.hash));
    assert_eq!(logs[1].block_number, Some(head.number()));
    assert_eq!(
        logs[1].transaction_hash,
        Some(head.transactions[1].tx_hash())
    );
    assert_eq!(logs[1].transaction_index, Some(1));
    assert_eq!(logs[1].block_timestamp, Some(head.header.timestamp));

    // Both contracts in the first block, in order, with block-wide log indexes.
    let logs: Vec<Log> = chain
        .call("eth_getLogs", json!([{"fromBlock": format!("{first:#x}"), "toBlock": format!("{first:#x}"), "topics": [TOPIC]}]))
        .await
        .unwrap();
    let seen: Vec<_> = logs.iter().map(|l| (l.address(), l.log_index)).collect();
    assert_eq!(seen, [(contract, Some(0)), (other, Some(1))]);
    let logs: Vec<Log> = chain
        .call(
            "eth_getLogs",
            json!([{"blockHash": head.hash, "topics": [B256::repeat_byte(1)]}]),
        )
        .await
        .unwrap();
    assert!(logs.is_empty());
    let e = chain
        .call::<Vec<Log>>(
            "eth_getLogs",
            json!([{"fromBlock": "0x3", "toBlock": "0x1"}]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), -32602);
}

#[tokio::test]
async fn fee_history_and_priority_fee_follow_the_blocks_tips() {
    let mut chain = Chain::new();
    chain.send(
        TxKind::Call(Address::repeat_byte(1)),
        Bytes::new(),
        1_000_000_000,
    );
    chain.send(
        TxKind::Call(Address::repeat_byte(1)),
        Bytes::new(),
        3_000_000_000,
    );
    chain.seal();
    chain.seal();
    let history: FeeHistory = chain
        .call("eth_feeHistory", json!(["0x2", "latest", [10.0, 90.0]]))
        .await
        .unwrap();
    let head = chain.engine.head();
    assert_eq!(history.oldest_block, 1);
    assert_eq!(history.base_fee_per_gas.len(), 3);
    assert_eq!(
        history.base_fee_per_gas[1],
        u128::from(head.header.base_fee_per_gas.unwrap())
    );
    let next = crate::chain::fees::next_base_fee(chain.engine.spec(), &head.header).unwrap();
    assert_eq!(history.base_fee_per_gas[2], u128::from(next));
    assert_eq!(history.gas_used_ratio.len(), 2);
    let reward = history.reward.unwrap();
    assert_eq!(reward[0], [1_000_000_000, 3_000_000_000]);
    assert_eq!(reward[1], [0, 0], "block 2 has no tipping transactions");
    // A number works as blockCount too (cast sends one).
    let again: FeeHistory = chain
        .call("eth_feeHistory", json!([1, "0x1", []]))
        .await
        .unwrap();
    assert_eq!(again.oldest_block, 1);
    let e = chain
        .call::<FeeHistory>("eth_feeHistory", json!(["0x1", "latest", [90.0, 10.0]]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), -32602);

    // The head block (2) is empty: the floor. After block 1 alone: its median tip.
    let fee: U256 = chain
        .call("eth_maxPriorityFeePerGas", json!([]))
        .await
        .unwrap();
    assert_eq!(fee, U256::from(super::fees::MIN_SUGGESTED_PRIORITY_FEE));
    for tip in [2_000_000_000, 5_000_000_000, 9_000_000_000] {
        chain.send(TxKind::Call(Address::repeat_byte(1)), Bytes::new(), tip);
    }
    chain.seal();
    let fee: U256 = chain
        .call("eth_maxPriorityFeePerGas", json!([]))
        .await
        .unwrap();
    assert_eq!(
        fee,
        U256::from(5_000_000_000u64),
        "the head block's median tip"
    );
}

#[tokio::test]
async fn simulate_runs_calls_on_the_state_the_calls_before_them_left() {
    let mut chain = Chain::new();
    let contract = chain.deploy();
    let from = chain.signer.address();
    let store = |v| json!({"from": from, "to": contract, "data": word(v)});
    let read = json!({"from": from, "to": contract});
    let payload = json!({"blockStateCalls": [
        {"calls": [read, store(9), read]},
        {"calls": [read]},
    ]});
    let blocks: Vec<Value> = chain
        .call("eth_simulateV1", json!([payload, "latest"]))
        .await
        .unwrap();
    let head = chain.engine.head().number();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["number"], json!(format!("{:#x}", head + 1)));
    let calls = &blocks[0]["calls"];
    // Before the store the slot is 0, after it 9, also in the next block.
    assert_eq!(calls[0]["status"], json!("0x0"));
    assert_eq!(calls[0]["error"]["code"], json!(3));
    assert_eq!(calls[0]["returnData"], json!(word(0)));
    assert_eq!(calls[1]["status"], json!("0x1"));
    assert_eq!(calls[1]["returnData"], json!(word(9)));
    let logs: Vec<alloy_primitives::Log> =
        serde_json::from_value(calls[1]["logs"].clone()).unwrap();
    assert_eq!(logs[0].address, contract);
    // op-reth puts the revert data in `returnData` only.
    assert_eq!(calls[2]["returnData"], json!(word(9)));
    assert_eq!(calls[2]["error"]["code"], json!(3));
    assert_eq!(blocks[1]["calls"][0]["returnData"], json!(word(9)));
    // As geth and reth report: a reverted call used gas (at least the 21,000 base), and the
    // block's gas is the sum over its calls, reverted ones included.
    let gas =
        |v: &Value| u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(
        gas(&calls[0]["gasUsed"]) > 21_000,
        "{}",
        calls[0]["gasUsed"]
    );
    assert_eq!(
        gas(&blocks[0]["gasUsed"]),
        (0..3).map(|i| gas(&calls[i]["gasUsed"])).sum::<u64>()
    );
    // The chain itself is untouched.
    let e = chain
        .call::<Bytes>("eth_call", json!([read]))
        .await
        .unwrap_err();
    assert_eq!(
        serde_json::from_str::<Bytes>(e.data().unwrap().get()).unwrap(),
        word(0)
    );
    let e = chain
        .call::<Value>(
            "eth_simulateV1",
            json!([{"blockStateCalls": [{"calls": [], "stateOverrides": {contract.to_string(): {"balance": "0x1"}}}]}]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), -32602);
}

/// flashblocks-rpc simulates pending blocks with their header fields as block overrides and
/// reads pending storage by replacing a contract's code in a later simulated block (geth's
/// `stateOverrides` `code`: storage, balance and nonce stay).
#[tokio::test]
async fn simulate_applies_block_overrides_and_code_overrides_keep_storage() {
    let mut chain = Chain::new();
    let contract = chain.deploy();
    let from = chain.signer.address();
    // NUMBER, COINBASE, BASEFEE, TIMESTAMP as four words.
    let env_reader = Bytes::from_static(&hex!("435f5241602052486040524260605260805ff3"));
    // Returns storage slot `calldata[0..32]`.
    let slot_reader = Bytes::from_static(&hex!("5f35545f5260205ff3"));
    let probe = Address::repeat_byte(0x77);
    let coinbase = Address::repeat_byte(0x42);
    let head = chain.engine.head().number();
    let payload = json!({"blockStateCalls": [
        {"calls": [{"from": from, "to": contract, "data": word(5)}]},
        {
            "blockOverrides": {"number": format!("{:#x}", head + 5), "time": "0x7000000000",
                "feeRecipient": coinbase, "baseFeePerGas": "0x3b9aca00", "gasLimit": "0x1c9c380"},
            "stateOverrides": {probe.to_string(): {"code": env_reader}, contract.to_string(): {"code": slot_reader}},
            // Zero fees stated: op-reth prices a call without fee fields at the base fee, and
            // the zero address has nothing to pay it with.
            "calls": [{"to": probe, "maxFeePerGas": "0x0", "maxPriorityFeePerGas": "0x0"},
                {"to": contract, "data": word(0), "maxFeePerGas": "0x0", "maxPriorityFeePerGas": "0x0"}],
        },
        // No base fee override: geth and reth simulate at base fee 0 without validation.
        {"calls": [{"to": probe}]},
    ]});
    let blocks: Vec<Value> = chain
        .call("eth_simulateV1", json!([payload, "latest"]))
        .await
        .unwrap();
    let env: Bytes = serde_json::from_value(blocks[1]["calls"][0]["returnData"].clone()).unwrap();
    assert_eq!(env[..32], word(head + 5)[..]);
    assert_eq!(env[44..64], coinbase[..]);
    assert_eq!(env[64..96], word(1_000_000_000)[..]);
    assert_eq!(env[96..128], word(0x70_0000_0000)[..]);
    assert_eq!(blocks[1]["gasLimit"], json!("0x1c9c380"));
    // The store of the first block is read through the replaced code.
    assert_eq!(blocks[1]["calls"][1]["returnData"], json!(word(5)));
    let env: Bytes = serde_json::from_value(blocks[2]["calls"][0]["returnData"].clone()).unwrap();
    assert_eq!(
        env[64..96],
        word(0)[..],
        "base fee of a block without override"
    );
}
