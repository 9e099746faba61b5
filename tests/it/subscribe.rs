//! WebSocket clients: `eth_subscribe("newFlashblocks")` streams every accepted flashblock,
//! unknown subscription kinds are refused, and plain reads are forwarded over WebSocket too
//! (here to a JWT-protected upstream).

use std::time::Duration;

use alloy_primitives::B256;
use alloy_rpc_types_engine::JwtSecret;
use devnet::{
    app::{load_genesis, start_engine_on, unix_now},
    engine::Role,
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use e2e::{call, client, flashblock, scripted_server, start_rpc};

const DEADLINE: Duration = Duration::from_secs(5);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("readable");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn request(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::Text(body.to_string().into()))
        .await
        .unwrap();
    loop {
        let v = next_json(ws).await;
        if v["id"] == json!(id) {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscribers_get_each_accepted_flashblock() {
    let genesis = load_genesis(None, unix_now(), None).unwrap();
    let jwt = JwtSecret::random();
    let engine = start_engine_on(
        genesis,
        Role::Local,
        "127.0.0.1".parse().unwrap(),
        0,
        0,
        jwt,
    )
    .await
    .unwrap();
    let upstream = client(&engine.http_url(), None);
    let head = call(&upstream, "eth_getBlockByNumber", json!(["latest", false])).await;
    let head_hash: B256 = serde_json::from_value(head["hash"].clone()).unwrap();
    let (url, frames) = scripted_server().await;
    // The engine's JWT-protected port as the upstream: head polls and forwarded calls carry
    // tokens minted from --upstream-jwt-secret.
    let secret = hex::encode(jwt.as_bytes());
    let rpc = start_rpc(
        &url,
        &engine.auth_url(),
        &["--upstream-jwt-secret", &secret],
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(rpc.ws_url())
        .await
        .unwrap();

    let refused = request(&mut ws, 1, "eth_subscribe", json!(["logs"])).await;
    assert_eq!(refused["error"]["code"], json!(-32602));
    let chain_id = request(&mut ws, 2, "eth_chainId", json!([])).await;
    assert_eq!(
        chain_id["result"],
        call(&upstream, "eth_chainId", json!([])).await
    );
    let sub = request(&mut ws, 3, "eth_subscribe", json!(["newFlashblocks"])).await;
    let sub_id = sub["result"].clone();
    assert!(!sub_id.is_null(), "{sub}");

    frames
        .send(flashblock(
            0x5,
            0,
            1,
            head_hash,
            0,
            &[],
            B256::repeat_byte(0x51),
        ))
        .await
        .unwrap();
    let note = next_json(&mut ws).await;
    assert_eq!(note["method"], json!("eth_subscription"));
    assert_eq!(note["params"]["subscription"], sub_id);
    assert_eq!(note["params"]["result"]["index"], json!(0));
    assert_eq!(
        note["params"]["result"]["diff"]["block_hash"],
        json!(B256::repeat_byte(0x51))
    );
    // A pending-tag read over WebSocket is answered from the flashblock just streamed.
    let pending = request(
        &mut ws,
        4,
        "eth_getBlockByNumber",
        json!(["pending", false]),
    )
    .await;
    assert_eq!(pending["result"]["hash"], json!(B256::repeat_byte(0x51)));

    rpc.shutdown().await;
    engine.stop().await;
}
