//! A wallet's view of the all-in-one devnet: flashblocks-rpc (started by the devnet with
//! `--flashblocks`) in front of engine-mux's unauthenticated eth port. A transfer is filled the
//! way viem and cast fill one — nonce, `eth_estimateGas`, `eth_feeHistory`,
//! `eth_maxPriorityFeePerGas` — signed locally and sent with `eth_sendRawTransaction`; nothing
//! about gas or fees comes from the test.

use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U64, U256};
use alloy_rpc_types_eth::FeeHistory;
use alloy_signer::SignerSync;
use devnet::{
    app::{Devnet, DevnetFlashblocks},
    chain::accounts::funded_dev_signers,
};
use engine_api::{Upstream, UpstreamConfig};
use op_alloy_consensus::OpTxEnvelope;
use serde_json::{Value, json};
use test_utils::eventually;

use crate::support::{FLASHBLOCKS_INTERVAL, config};

const TIMEOUT: Duration = Duration::from_secs(2);

async fn call<T: serde::de::DeserializeOwned>(rpc: &Upstream, method: &str, params: Value) -> T {
    rpc.call(method, &params, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_filled_from_estimate_gas_and_fee_answers_is_preconfirmed_then_sealed() {
    let devnet = Devnet::start(devnet::app::DevnetConfig {
        // No spammer: the wallet's account is one of the spammer's.
        tx_rate: 0.0,
        flashblocks: Some(DevnetFlashblocks {
            builder_port: 0,
            interval: FLASHBLOCKS_INTERVAL,
            mux_port: 0,
            rpc_port: Some(0),
        }),
        ..config()
    })
    .await
    .expect("devnet starts");
    let url = devnet
        .flashblocks_rpc
        .as_ref()
        .expect("flashblocks-rpc started")
        .http_url();
    let rpc = Upstream::new(UpstreamConfig {
        name: "wallet",
        url: url.parse().unwrap(),
        secret: None,
        timeout: TIMEOUT,
        max_response_bytes: 1 << 22,
    });
    let signer = funded_dev_signers(&devnet.local.engine.head_state())
        .unwrap()
        .remove(0);
    let from = signer.address();
    let to = Address::repeat_byte(0x5a);
    let value = U256::from(1_000_000_007u64);

    // Fill like a wallet.
    let chain_id: U64 = call(&rpc, "eth_chainId", json!([])).await;
    let nonce: U64 = call(&rpc, "eth_getTransactionCount", json!([from, "pending"])).await;
    let request = json!({"from": from, "to": to, "value": value});
    let gas: U64 = call(&rpc, "eth_estimateGas", json!([request])).await;
    assert_eq!(gas.to::<u64>(), 21_000);
    let history: FeeHistory = call(&rpc, "eth_feeHistory", json!(["0xa", "latest", [20.0]])).await;
    let next_base_fee = *history
        .base_fee_per_gas
        .last()
        .expect("next block's base fee");
    assert!(next_base_fee > 0);
    let tip: U256 = call(&rpc, "eth_maxPriorityFeePerGas", json!([])).await;
    let tip: u128 = tip.to();
    let tx = TxEip1559 {
        chain_id: chain_id.to(),
        nonce: nonce.to(),
        gas_limit: gas.to(),
        max_fee_per_gas: next_base_fee * 2 + tip,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value,
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
    let raw = OpTxEnvelope::Eip1559(tx.into_signed(signature)).encoded_2718();
    let hash: B256 = call(&rpc, "eth_sendRawTransaction", json!([Bytes::from(raw)])).await;

    // The receipt shows up (from the flashblocks first, then sealed) and the value arrives.
    let receipt = std::sync::Mutex::new(Value::Null);
    eventually(
        Duration::from_secs(10),
        "the transfer's receipt",
        || async {
            // A `null` result reads as an error with this client: not there yet.
            let r: Option<Value> = rpc
                .call("eth_getTransactionReceipt", &json!([hash]), TIMEOUT)
                .await
                .ok();
            let found = r.is_some();
            *receipt.lock().unwrap() = r.unwrap_or_default();
            found
        },
    )
    .await;
    assert_eq!(receipt.lock().unwrap()["status"], json!("0x1"));
    eventually(Duration::from_secs(10), "the transfer sealed", || async {
        let balance: U256 = call(&rpc, "eth_getBalance", json!([to, "latest"])).await;
        balance == value
    })
    .await;
    let sealed = devnet
        .local
        .engine
        .with_chain(|c| c.transaction(&hash).map(|(b, _)| b.number()));
    assert!(
        sealed.is_some(),
        "the local engine's chain holds the transfer"
    );
    devnet.stop().await;
}
