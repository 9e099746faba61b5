//! One engine's RPC surface over real sockets: JWT, spec error codes, fault control.

use std::{net::Ipv4Addr, time::Duration};

use alloy_rpc_types_engine::{ForkchoiceState, ForkchoiceUpdated, JwtSecret, PayloadStatusEnum};
use devnet::{
    app::{load_genesis, start_engine_on, unix_now},
    engine::{Role, rpc::RunningEngine},
};
use engine_api::{Upstream, UpstreamConfig, UpstreamError};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(2);

async fn engine(role: Role, jwt: JwtSecret) -> RunningEngine {
    let genesis = load_genesis(None, unix_now(), None).unwrap();
    start_engine_on(genesis, role, Ipv4Addr::LOCALHOST.into(), 0, 0, jwt)
        .await
        .unwrap()
}

fn client(url: String, jwt: Option<JwtSecret>) -> Upstream {
    Upstream::new(UpstreamConfig {
        name: "test",
        url: url.parse().unwrap(),
        secret: jwt,
        timeout: TIMEOUT,
        max_response_bytes: 1 << 20,
    })
}

#[tokio::test]
async fn auth_port_requires_jwt_and_answers_spec_codes() {
    let jwt = JwtSecret::random();
    let running = engine(Role::Local, jwt).await;
    let authed = client(running.auth_url(), Some(jwt));

    let caps: Vec<String> = authed
        .call(
            "engine_exchangeCapabilities",
            &json!([["engine_getPayloadV4"]]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(caps.contains(&"engine_newPayloadV4".to_string()));

    match authed
        .call::<Value>(
            "engine_getPayloadV4",
            &json!(["0x0000000000000001"]),
            TIMEOUT,
        )
        .await
    {
        Err(UpstreamError::Rpc { error, .. }) => assert_eq!(error.code(), -38001),
        other => panic!("expected -38001, got {other:?}"),
    }

    for bad in [None, Some(JwtSecret::random())] {
        match client(running.auth_url(), bad)
            .call::<Value>("eth_chainId", &json!([]), TIMEOUT)
            .await
        {
            Err(UpstreamError::Status { status, .. }) => assert_eq!(status, 401),
            other => panic!("expected 401, got {other:?}"),
        }
    }

    // The plain port needs no token and serves the same chain.
    let plain = client(running.http_url(), None);
    let id: String = plain
        .call("eth_chainId", &json!([]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(id, "0x385");
    let genesis: Value = plain
        .call("eth_getBlockByNumber", &json!(["latest", false]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(genesis["hash"], json!(running.engine.head().hash));
    running.stop().await;
}

#[tokio::test]
async fn builder_fault_control_down_stale_and_back() {
    let jwt = JwtSecret::random();
    let running = engine(Role::Builder, jwt).await;
    let authed = client(running.auth_url(), Some(jwt));
    let control = client(running.http_url(), None);
    let head = running.engine.head().hash;
    let fcs = ForkchoiceState {
        head_block_hash: head,
        safe_block_hash: head,
        finalized_block_hash: head,
    };

    let _: Value = control
        .call("devnet_setFault", &json!(["down", true]), TIMEOUT)
        .await
        .unwrap();
    let auth = running.auth_url();
    eventually(
        Duration::from_secs(5),
        "auth port refuses connections",
        || {
            let c = client(auth.clone(), Some(jwt));
            async move {
                matches!(
                    c.call::<Value>("eth_chainId", &json!([]), TIMEOUT).await,
                    Err(UpstreamError::Transport { .. })
                )
            }
        },
    )
    .await;

    let _: Value = control
        .call("devnet_setFault", &json!(["down", false]), TIMEOUT)
        .await
        .unwrap();
    let _: Value = control
        .call("devnet_setFault", &json!(["stale", true]), TIMEOUT)
        .await
        .unwrap();
    let auth = running.auth_url();
    eventually(Duration::from_secs(5), "auth port back", || {
        let c = client(auth.clone(), Some(jwt));
        async move {
            c.call::<Value>("eth_chainId", &json!([]), TIMEOUT)
                .await
                .is_ok()
        }
    })
    .await;
    let out: ForkchoiceUpdated = authed
        .call(
            "engine_forkchoiceUpdatedV3",
            &json!([fcs, Value::Null]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        out.payload_status.status,
        PayloadStatusEnum::Syncing,
        "stale builder ignores FCU"
    );

    let active: Value = control
        .call("devnet_clearFaults", &json!([]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(active, json!([]));
    let out: ForkchoiceUpdated = authed
        .call(
            "engine_forkchoiceUpdatedV3",
            &json!([fcs, Value::Null]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(out.payload_status.status, PayloadStatusEnum::Valid);
    assert_eq!(out.payload_status.latest_valid_hash, Some(head));

    match control
        .call::<Value>("devnet_setFault", &json!(["explode", true]), TIMEOUT)
        .await
    {
        Err(UpstreamError::Rpc { error, .. }) => assert_eq!(error.code(), -32602),
        other => panic!("expected invalid params, got {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn eth_rpc_reports_included_transactions_receipts_and_balances() {
    use alloy_primitives::{Address, B256, U256};
    use devnet::{
        chain::{
            accounts::{funded_dev_signers, raw_transaction, sign_transfer},
            attributes::{SequencerParams, sequencer_attributes},
        },
        engine::{EngineVersion, execution_data_of},
    };

    let jwt = JwtSecret::random();
    let running = engine(Role::Local, jwt).await;
    let rpc = client(running.http_url(), None);
    let engine = running.engine.clone();
    let signers = funded_dev_signers(&engine.head_state()).unwrap();
    let from = signers[0].address();
    let to = Address::repeat_byte(0x42);
    let tx = sign_transfer(&signers[0], 901, 0, to, U256::from(1234), 1_000_000_000, 7).unwrap();
    let hash: B256 = rpc
        .call(
            "eth_sendRawTransaction",
            &json!([raw_transaction(&tx)]),
            TIMEOUT,
        )
        .await
        .unwrap();
    let pending: Value = rpc
        .call("eth_getTransactionByHash", &json!([hash]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        pending["blockHash"],
        Value::Null,
        "pooled, not yet included"
    );
    let nonce: String = rpc
        .call(
            "eth_getTransactionCount",
            &json!([from, "pending"]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(nonce, "0x1");

    let head = engine.head();
    let fcs = ForkchoiceState {
        head_block_hash: head.hash,
        safe_block_hash: head.hash,
        finalized_block_hash: head.hash,
    };
    let attrs = sequencer_attributes(
        engine.spec(),
        &SequencerParams::default(),
        1,
        head.header.timestamp + 1,
    );
    let id = engine
        .forkchoice_updated(fcs, Some(attrs))
        .unwrap()
        .payload_id
        .unwrap();
    let data = execution_data_of(&engine.get_payload(id, EngineVersion::V4).unwrap());
    let block_hash = data.payload.block_hash();
    assert_eq!(
        engine.new_payload(data, EngineVersion::V4).unwrap().status,
        PayloadStatusEnum::Valid
    );
    let fcs = ForkchoiceState {
        head_block_hash: block_hash,
        ..fcs
    };
    engine.forkchoice_updated(fcs, None).unwrap();

    let receipt: Value = rpc
        .call("eth_getTransactionReceipt", &json!([hash]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(receipt["blockNumber"], "0x1");
    assert_eq!(receipt["blockHash"], json!(block_hash));
    assert_eq!(
        receipt["transactionIndex"], "0x1",
        "after the L1-info deposit"
    );
    assert_eq!(receipt["gasUsed"], "0x5208");
    assert_eq!(receipt["from"], json!(from));
    // What is served reads back as op-alloy's receipt, with the fields wallets show.
    let typed: rpc_objects::OpTransactionReceipt =
        serde_json::from_value(receipt.clone()).expect("an OP RPC receipt");
    assert!(
        typed.l1_block_info.l1_fee.is_some_and(|fee| fee > 0),
        "a transfer pays an L1 data fee: {receipt}"
    );
    assert!(typed.l1_block_info.l1_gas_used.is_some_and(|gas| gas > 0));
    assert!(typed.inner.effective_gas_price > 0);
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        receipt,
        "nothing lost"
    );
    let deposit: Value = rpc
        .call("eth_getBlockByNumber", &json!(["latest", true]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(deposit["hash"], json!(block_hash));
    assert_eq!(deposit["transactions"][1]["hash"], json!(hash));
    assert_eq!(deposit["transactions"][0]["type"], "0x7e");
    let typed: rpc_objects::Block =
        serde_json::from_value(deposit.clone()).expect("an RPC block of OP transactions");
    assert_eq!(typed.header.hash, block_hash);
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        deposit,
        "nothing lost"
    );
    let deposit_hash = deposit["transactions"][0]["hash"].clone();
    let deposit_receipt: Value = rpc
        .call("eth_getTransactionReceipt", &json!([deposit_hash]), TIMEOUT)
        .await
        .unwrap();
    assert!(
        deposit_receipt["depositNonce"].is_string(),
        "deposit receipts carry the nonce"
    );
    assert_eq!(deposit_receipt["depositReceiptVersion"], "0x1");
    let balance: U256 = rpc
        .call("eth_getBalance", &json!([to, "latest"]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(balance, U256::from(1234));
    let number: String = rpc
        .call("eth_blockNumber", &json!([]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(number, "0x1");
    let by_hash: Value = rpc
        .call("eth_getBlockByHash", &json!([block_hash, false]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(by_hash["transactions"][1], json!(hash));
    running.stop().await;
}
use test_utils::eventually;
