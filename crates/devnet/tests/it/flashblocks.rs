//! Builder-mode flashblocks over a real WebSocket: diffs extend each other and the assembled
//! block is the one getPayload seals, valid on the local engine.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_engine::{ForkchoiceState, ForkchoiceUpdated, JwtSecret, PayloadStatusEnum};
use devnet::{
    app::{load_genesis, start_engine_on, start_engine_with, unix_now},
    chain::{
        accounts::{funded_dev_signers, raw_transaction, sign_transfer},
        attributes::{SequencerParams, sequencer_attributes},
    },
    engine::{EngineVersion, Role, flashblocks::FlashblocksConfig, rpc::EngineServerConfig},
};
use engine_api::{Upstream, UpstreamConfig};
use futures::StreamExt;
use op_alloy_rpc_types_engine::{
    OpExecutionData, OpExecutionPayloadEnvelopeV4, OpFlashblockPayload,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(5);

fn client(url: String, jwt: Option<JwtSecret>) -> Upstream {
    Upstream::new(UpstreamConfig {
        name: "test",
        url: url.parse().unwrap(),
        secret: jwt,
        timeout: TIMEOUT,
        max_response_bytes: 1 << 22,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_flashblocks_assemble_to_the_sealed_payload() {
    let jwt = JwtSecret::random();
    let genesis = load_genesis(None, unix_now(), None).unwrap();
    let signers = funded_dev_signers(&genesis.state).unwrap();
    let spec = genesis.spec.clone();
    let localhost = Ipv4Addr::LOCALHOST.into();
    let listen = EngineServerConfig {
        auth_addr: SocketAddr::new(localhost, 0),
        http_addr: SocketAddr::new(localhost, 0),
        jwt,
        flashblocks: Some(FlashblocksConfig {
            addr: SocketAddr::new(localhost, 0),
            interval: Duration::from_millis(100),
            max_per_payload: 20,
        }),
    };
    let builder = start_engine_with(genesis.clone(), Role::Builder, listen)
        .await
        .unwrap();
    let local = start_engine_on(genesis, Role::Local, localhost, 0, 0, jwt)
        .await
        .unwrap();
    let ws_url = format!("ws://{}", builder.flashblocks_addr.expect("publishing"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();

    let rpc = client(builder.http_url(), None);
    let send = |nonce: u64, signer: usize| {
        let tx = sign_transfer(
            &signers[signer],
            spec.chain_id,
            nonce,
            Address::repeat_byte(7),
            U256::from(1),
            1_000_000_000,
            1,
        )
        .unwrap();
        let rpc = rpc.clone();
        async move {
            let _: B256 = rpc
                .call(
                    "eth_sendRawTransaction",
                    &json!([raw_transaction(&tx)]),
                    TIMEOUT,
                )
                .await
                .unwrap();
        }
    };
    send(0, 0).await;
    send(0, 1).await;

    let engine_rpc = client(builder.auth_url(), Some(jwt));
    let head = builder.engine.head();
    let attrs = sequencer_attributes(
        &spec,
        &SequencerParams::default(),
        1,
        head.header.timestamp + 1,
    );
    let fcs = ForkchoiceState {
        head_block_hash: head.hash,
        safe_block_hash: head.hash,
        finalized_block_hash: head.hash,
    };
    let fcu: ForkchoiceUpdated = engine_rpc
        .call("engine_forkchoiceUpdatedV3", &json!([fcs, attrs]), TIMEOUT)
        .await
        .unwrap();
    let id = fcu.payload_id.expect("payload id");

    let mut received: Vec<OpFlashblockPayload> = Vec::new();
    let mut next_frame = async || -> OpFlashblockPayload {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, ws.next())
                .await
                .expect("a frame in time")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = msg {
                return serde_json::from_str(text.as_str()).expect("flashblock JSON");
            }
        }
    };
    received.push(next_frame().await);
    assert_eq!(received[0].index, 0);
    assert!(received[0].base.is_some(), "index 0 carries the base");
    assert_eq!(
        received[0].diff.transactions.len(),
        1,
        "flashblock 0: the L1-info deposit only"
    );
    // Transactions that arrive mid-slot show up in a later flashblock.
    send(1, 0).await;
    while received
        .iter()
        .map(|f| f.diff.transactions.len())
        .sum::<usize>()
        < 4
    {
        received.push(next_frame().await);
    }

    let sealed: OpExecutionPayloadEnvelopeV4 = engine_rpc
        .call("engine_getPayloadV4", &json!([id]), TIMEOUT)
        .await
        .unwrap();
    let sealed_hash = sealed
        .execution_payload
        .payload_inner
        .payload_inner
        .payload_inner
        .block_hash;
    while received.last().unwrap().diff.block_hash != sealed_hash {
        received.push(next_frame().await);
    }
    for (i, fb) in received.iter().enumerate() {
        assert_eq!(fb.index, i as u64);
        assert_eq!(fb.payload_id, id);
        assert_eq!(fb.base.is_some(), i == 0);
    }

    let assembled = OpExecutionData::from_flashblocks(&received).expect("well-formed sequence");
    assert_eq!(assembled.payload.block_hash(), sealed_hash);
    let status = local
        .engine
        .new_payload(assembled, EngineVersion::V4)
        .unwrap();
    assert_eq!(
        status.status,
        PayloadStatusEnum::Valid,
        "assembled block re-executes"
    );

    builder.stop().await;
    local.stop().await;
}
