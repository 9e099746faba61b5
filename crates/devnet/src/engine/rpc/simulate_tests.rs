//! The devnet engine's `eth_simulateV1` against op-reth's: every request recorded from a reth
//! v1.10.2-based OP node (testdata/real-peers/op-reth.simulate-v1.jsonl) gets op-reth's
//! verdict, and the rules behind those verdicts (pricing of calls without fee fields, stated
//! gas added up per block, the gas limit cap, validation) one test each.

use std::sync::Arc;

use alloy_primitives::{Address, address};
use jsonrpsee::RpcModule;
use serde_json::{Value, json};

use crate::{
    chain::{
        accounts::funded_dev_signers,
        genesis::{ForkOverrides, default_genesis, load_genesis_str},
    },
    engine::{Engine, Role},
};

const RECORDED: &str = include_str!("../../../../../testdata/real-peers/op-reth.simulate-v1.jsonl");
const RECORDED_GENESIS: &str = include_str!("../../../../../testdata/real-peers/genesis.json");
/// The recording's genesis timestamp (testdata/real-peers/README.md).
const RECORDED_GENESIS_TIMESTAMP: u64 = 1_796_131_951;
/// The L1-attributes depositor: no balance on any chain.
const DEPOSITOR: Address = address!("deaddeaddeaddeaddeaddeaddeaddeaddead0001");

fn module(engine: Arc<Engine>) -> RpcModule<Arc<Engine>> {
    let mut module = RpcModule::new(engine);
    super::eth::register(&mut module).unwrap();
    module
}

/// The engine on the recording's genesis.
fn recorded_chain() -> RpcModule<Arc<Engine>> {
    let g = load_genesis_str(
        RECORDED_GENESIS,
        RECORDED_GENESIS_TIMESTAMP,
        ForkOverrides::default(),
    )
    .unwrap();
    module(Arc::new(Engine::new(g, Role::Local)))
}

/// `eth_simulateV1(params)`: the result, or the error's code and message.
async fn simulate(module: &RpcModule<Arc<Engine>>, params: Value) -> Result<Value, (i32, String)> {
    let mut builder = jsonrpsee::core::params::ArrayParams::new();
    for p in params.as_array().unwrap().clone() {
        builder.insert(p).unwrap();
    }
    module
        .call::<_, Value>("eth_simulateV1", builder)
        .await
        .map_err(|e| match e {
            jsonrpsee::MethodsError::JsonRpc(e) => (e.code(), e.message().to_string()),
            other => panic!("{other}"),
        })
}

/// Every recorded request, its `blockHash` (a block of the recording's chain) replaced by the
/// devnet's head, gets op-reth's answer: the same error code and message for the 24 refused
/// (-38014 for the L1-attributes deposit run as a call without fees from the empty depositor
/// under base fee 1, -38015 for the estimates stating the whole block gas limit), and for the
/// accepted variant (first block at base fee 0) the same blocks and call results where they do
/// not depend on the recorded chain's history.
#[tokio::test]
async fn op_reth_recorded_simulations_get_op_reths_verdicts() {
    let chain = recorded_chain();
    let mut verdicts = (0, 0, 0);
    for (i, line) in RECORDED.lines().enumerate() {
        let recorded: Value = serde_json::from_str(line).unwrap();
        let mut params = recorded["request"]["params"].clone();
        assert!(params[1]["blockHash"].is_string(), "line {i}");
        params[1] = json!("latest");
        let answer = simulate(&chain, params).await;
        let expected = &recorded["response"];
        if let Some(e) = expected.get("error") {
            let code = e["code"].as_i64().unwrap() as i32;
            let message = e["message"].as_str().unwrap().to_string();
            assert_eq!(answer, Err((code, message)), "line {i}");
            match code {
                -38014 => verdicts.0 += 1,
                -38015 => verdicts.1 += 1,
                other => panic!("unexpected recorded code {other}"),
            }
            continue;
        }
        verdicts.2 += 1;
        let ours = answer.unwrap_or_else(|e| panic!("line {i} refused: {e:?}"));
        let theirs = expected["result"].as_array().unwrap();
        let ours = ours.as_array().unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (o, t) in ours.iter().zip(theirs) {
            for field in ["number", "gasLimit", "baseFeePerGas", "miner"] {
                assert_eq!(o[field], t[field], "{field}");
            }
            let (oc, tc) = (
                o["calls"].as_array().unwrap(),
                t["calls"].as_array().unwrap(),
            );
            assert_eq!(oc.len(), tc.len());
            for (a, b) in oc.iter().zip(tc) {
                assert_eq!(a["status"], b["status"]);
            }
        }
        // The second block without a time override is 12 s after the first, as reth's.
        assert_eq!(ours[0]["timestamp"], theirs[0]["timestamp"]);
        assert_eq!(ours[1]["timestamp"], theirs[1]["timestamp"]);
        // The pending transaction's call: intrinsic gas of its calldata, as op-reth's.
        assert_eq!(
            ours[0]["calls"][1]["gasUsed"],
            theirs[0]["calls"][1]["gasUsed"]
        );
        assert_eq!(ours[0]["calls"][1]["gasUsed"], json!("0x5460"));
        // Balances read by the probes: the depositor's (0), L1Block's (genesis 1) and the zero
        // address's (genesis 1) are chain-independent and match; 0x7099…'s is the devnet's
        // genesis balance (the recorded chain had charged it fees for earlier blocks).
        let probes = &ours[1]["calls"];
        for i in [0, 1, 3] {
            assert_eq!(
                probes[i]["returnData"], theirs[1]["calls"][i]["returnData"],
                "probe {i}"
            );
        }
        assert_eq!(
            probes[2]["returnData"],
            json!(format!("0x{:064x}", 0x21e19e0c9bab2400000u128))
        );
    }
    assert_eq!(verdicts, (21, 3, 1), "(-38014, -38015, accepted)");
}

/// The call without fee fields is priced at the block's base fee, so its sender must hold
/// `gas * base fee` even without validation; stating zero fees (or base fee 0) is accepted.
#[tokio::test]
async fn call_without_fees_pays_the_overridden_base_fee_like_op_reth() {
    let chain = recorded_chain();
    let call = |fees: bool| {
        let mut c = json!({"from": DEPOSITOR, "to": DEPOSITOR, "gas": "0x5208"});
        if fees {
            c["maxFeePerGas"] = json!("0x0");
            c["maxPriorityFeePerGas"] = json!("0x0");
        }
        c
    };
    let block = |base_fee: &str, fees| json!([{"blockStateCalls": [{"blockOverrides": {"baseFeePerGas": base_fee}, "calls": [call(fees)]}]}]);
    assert_eq!(
        simulate(&chain, block("0x2", false)).await,
        Err((
            -38014,
            "insufficient funds for gas * price + value: have 0 want 42000".into()
        ))
    );
    for (base_fee, fees) in [("0x2", true), ("0x0", false)] {
        let r = simulate(&chain, block(base_fee, fees)).await.unwrap();
        assert_eq!(r[0]["calls"][0]["status"], json!("0x1"));
        assert_eq!(r[0]["calls"][0]["gasUsed"], json!("0x5208"));
    }
    // Without a base fee override and without validation the block runs at base fee 0.
    let r = simulate(
        &chain,
        json!([{"blockStateCalls": [{"calls": [call(false)]}]}]),
    )
    .await
    .unwrap();
    assert_eq!(r[0]["baseFeePerGas"], json!("0x0"));
}

/// op-reth adds up the gas the calls of a block state before running any (geth instead checks
/// each call against the gas used so far): limits that add up to more than the block's are
/// refused even if the calls would use little; calls without `gas` share what is left.
#[tokio::test]
async fn stated_gas_of_a_block_adds_up_to_its_gas_limit_at_most() {
    let chain = recorded_chain();
    let transfer = |gas: Option<&str>| {
        let mut c = json!({"from": DEPOSITOR, "to": DEPOSITOR});
        if let Some(g) = gas {
            c["gas"] = json!(g);
        }
        c
    };
    let limit = json!({"gasLimit": "0xc350"}); // 50_000
    let over = json!([{"blockStateCalls": [{"blockOverrides": limit,
        "calls": [transfer(Some("0x61a8")), transfer(Some("0x61a9"))]}]}]);
    assert_eq!(
        simulate(&chain, over).await,
        Err((
            -38015,
            "Block gas limit exceeded by the block's transactions".into()
        ))
    );
    // 50_000 - 21_000 stated leaves 29_000, 14_500 each for two calls without gas: too little.
    let shared = json!([{"blockStateCalls": [{"blockOverrides": limit,
        "calls": [transfer(Some("0x5208")), transfer(None), transfer(None)]}]}]);
    assert_eq!(
        simulate(&chain, shared).await,
        Err((-38013, "intrinsic gas too low".into()))
    );
    let fits = json!([{"blockStateCalls": [{"blockOverrides": limit,
        "calls": [transfer(Some("0x5208")), transfer(None)]}]}]);
    let r = simulate(&chain, fits).await.unwrap();
    assert_eq!(r[0]["gasUsed"], json!("0xa410"));
}

/// A gas limit override above both the parent's gas limit and op-reth's RPC gas cap (50M) is
/// refused (-38026); up to the cap it is taken.
#[tokio::test]
async fn gas_limit_override_above_the_rpc_gas_cap_is_refused() {
    let chain = recorded_chain();
    let with_limit = |g: u64| json!([{"blockStateCalls": [{"blockOverrides": {"gasLimit": format!("{g:#x}")}, "calls": []}]}]);
    assert_eq!(
        simulate(&chain, with_limit(50_000_001)).await,
        Err((-38026, "Client adjustable limit reached".into()))
    );
    let r = simulate(&chain, with_limit(50_000_000)).await.unwrap();
    assert_eq!(r[0]["gasLimit"], json!("0x2faf080"));
}

/// With `validation: true` nonces and the base fee (the next block's, from the parent) are
/// checked, as op-reth does.
#[tokio::test]
async fn validation_checks_nonce_and_base_fee() {
    let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
    let engine = Arc::new(Engine::new(g, Role::Local));
    let from = funded_dev_signers(&engine.head_state()).unwrap()[0].address();
    let chain = module(engine);
    let call = |nonce: &str, max_fee: &str| {
        json!({"from": from, "to": DEPOSITOR, "gas": "0x5208", "nonce": nonce,
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": "0x0"})
    };
    let run = |c: Value, validation: bool| json!([{"blockStateCalls": [{"calls": [c]}], "validation": validation}]);
    assert_eq!(
        simulate(&chain, run(call("0x1", "0x174876e800"), true)).await,
        Err((-38011, "nonce too high".into()))
    );
    assert_eq!(
        simulate(&chain, run(call("0x0", "0x0"), true)).await,
        Err((-38012, "max fee per gas less than block base fee".into()))
    );
    let r = simulate(&chain, run(call("0x0", "0x174876e800"), true))
        .await
        .unwrap();
    assert_ne!(
        r[0]["baseFeePerGas"],
        json!("0x0"),
        "the next block's base fee"
    );
    // Without validation neither is checked.
    let r = simulate(&chain, run(call("0x7", "0x0"), false))
        .await
        .unwrap();
    assert_eq!(r[0]["calls"][0]["status"], json!("0x1"));
}
