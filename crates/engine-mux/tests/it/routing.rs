//! Every routing row, the raw proxy, the copies to the builder and payload-id mapping.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::harness::{attributes, eventually, forkchoice, setup};

#[tokio::test]
async fn fcu_with_attributes_reaches_both_and_op_node_sees_the_local_id() {
    let s = setup(&[]).await;
    let id = s.fcu_build().await;
    assert!(
        id.starts_with("0x03"),
        "op-node must only see the local id, got {id}"
    );
    eventually(Duration::from_secs(2), "builder got the FCU", || async {
        s.builder.calls_of("engine_forkchoiceUpdatedV3").len() == 1
    })
    .await;
    let sent = &s.builder.calls_of("engine_forkchoiceUpdatedV3")[0].params;
    assert_eq!(sent[1]["noTxPool"], false);
    assert_eq!(s.local.calls_of("engine_forkchoiceUpdatedV3").len(), 1);
}

#[tokio::test]
async fn builder_block_is_proposed_under_differing_payload_ids() {
    let s = setup(&[]).await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(
        hash,
        s.builder.block_hash(101).to_string(),
        "the builder's block was proposed"
    );
    // The builder was asked for ITS id (0x04..), not op-node's (0x03..).
    let asked = s.builder.calls_of("engine_getPayloadV3");
    assert_eq!(asked.len(), 1);
    assert!(asked[0].params[0].as_str().unwrap().starts_with("0x04"));
    // The local EL validated the builder's block before it was proposed.
    let validated = s.local.calls_of("engine_newPayloadV3");
    assert_eq!(
        validated[0].params[0]["blockHash"],
        json!(s.builder.block_hash(101))
    );
    assert_eq!(s.blocks("builder"), 1.0);

    let hash = s.block("engine_getPayloadV4").await;
    assert_eq!(
        hash,
        s.builder.block_hash(102).to_string(),
        "V4 is mapped and validated the same way"
    );
    assert_eq!(
        s.local.calls_of("engine_newPayloadV4")[0]
            .params
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn the_block_op_node_gets_is_the_block_the_local_el_validated() {
    let s = setup(&[]).await;
    for (get, new) in [
        ("engine_getPayloadV3", "engine_newPayloadV3"),
        ("engine_getPayloadV4", "engine_newPayloadV4"),
    ] {
        s.local.clear_calls();
        let id = s.fcu_build().await;
        let envelope = s.call(get, json!([id])).await.unwrap();
        let validated = s.local.calls_of(new);
        assert_eq!(validated.len(), 1, "{get}: one validation");
        let params = validated[0].params.as_array().unwrap();
        // Every field of the payload, as op-node is answered with it.
        assert_eq!(params[0], envelope["executionPayload"], "{get}");
        assert!(params[0]["transactions"].as_array().unwrap().len() >= 100);
        assert_eq!(params[1], json!([]), "{get}: no blobs");
        assert_eq!(params[2], envelope["parentBeaconBlockRoot"], "{get}");
        if new == "engine_newPayloadV4" {
            assert_eq!(params[3], envelope["executionRequests"], "{get}");
        }
    }
}

#[tokio::test]
async fn new_payload_and_fcu_without_attributes_are_mirrored() {
    let s = setup(&[]).await;
    s.block("engine_getPayloadV3").await;
    eventually(
        Duration::from_secs(2),
        "builder got newPayload and both FCUs",
        || async {
            s.builder.calls_of("engine_newPayloadV3").len() == 1
                && s.builder.calls_of("engine_forkchoiceUpdatedV3").len() == 2
        },
    )
    .await;
    let fcus = s.builder.calls_of("engine_forkchoiceUpdatedV3");
    assert!(fcus[1].params[1].is_null(), "second FCU has no attributes");
    // noTxPool: local answers, builder mirrored, no builder payload wait.
    let res = s
        .call(
            "engine_forkchoiceUpdatedV3",
            json!([forkchoice(101), attributes(true)]),
        )
        .await
        .unwrap();
    assert!(res["payloadId"].as_str().unwrap().starts_with("0x03"));
    eventually(Duration::from_secs(2), "noTxPool FCU mirrored", || async {
        s.builder.calls_of("engine_forkchoiceUpdatedV3").len() == 3
    })
    .await;
    assert_eq!(
        s.builder.calls_of("engine_forkchoiceUpdatedV3")[2].params[1]["noTxPool"],
        true
    );
}

#[tokio::test]
async fn other_engine_methods_go_to_the_local_el_only() {
    let s = setup(&[]).await;
    let caps = s
        .call(
            "engine_exchangeCapabilities",
            json!([["engine_getPayloadV3"]]),
        )
        .await
        .unwrap();
    assert!(caps.as_array().is_some());
    s.call("engine_getPayloadBodiesByHashV1", json!([[]]))
        .await
        .unwrap();
    assert_eq!(s.local.calls_of("engine_exchangeCapabilities").len(), 1);
    assert_eq!(s.local.calls_of("engine_getPayloadBodiesByHashV1").len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        s.builder.engine_calls().is_empty(),
        "builder must not see them: {:?}",
        s.builder.engine_calls()
    );
}

#[tokio::test]
async fn raw_proxy_is_byte_for_byte_and_transactions_are_copied() {
    let s = setup(&[]).await;
    let body = r#"{"jsonrpc":"2.0","id":"x-1","result":"0x385",  "odd_spacing":true}"#;
    s.local.raw_answer(
        StatusCode::ACCEPTED,
        vec![
            ("x-el-header", "kept"),
            ("content-type", "application/json"),
        ],
        body,
    );
    let client = reqwest_like(&s);
    let (status, headers, got) = client
        .post(r#"{"jsonrpc":"2.0","id":"x-1","method":"eth_chainId","params":[]}"#)
        .await;
    assert_eq!(status, 202);
    assert_eq!(got, body, "body must be the EL's bytes");
    assert!(headers.contains("x-el-header: kept"), "{headers}");

    let (_, _, _) = client
        .post(r#"{"jsonrpc":"2.0","id":2,"method":"eth_sendRawTransaction","params":["0x02f8"]}"#)
        .await;
    let (_, _, _) = client
        .post(r#"{"jsonrpc":"2.0","id":3,"method":"miner_setMaxDASize","params":["0x1","0x2"]}"#)
        .await;
    let batch = r#"[{"jsonrpc":"2.0","id":4,"method":"eth_blockNumber","params":[]},{"jsonrpc":"2.0","id":5,"method":"eth_sendRawTransaction","params":["0x02aa"]}]"#;
    let (status, _, got) = client.post(batch).await;
    assert_eq!(status, 202);
    assert_eq!(got, body, "batches are proxied untouched too");
    eventually(
        Duration::from_secs(2),
        "copies reached the builder",
        || async {
            s.builder.calls_of("eth_sendRawTransaction").len() == 2
                && s.builder.calls_of("miner_setMaxDASize").len() == 1
        },
    )
    .await;
    assert!(
        s.builder.calls_of("eth_chainId").is_empty()
            && s.builder.calls_of("eth_blockNumber").is_empty()
    );
    assert_eq!(s.local.calls_of("eth_sendRawTransaction").len(), 2);
}

/// A minimal raw HTTP client so the proxy's exact bytes can be compared.
pub struct Raw {
    addr: std::net::SocketAddr,
    token: Option<String>,
}

pub fn reqwest_like(s: &crate::harness::Setup) -> Raw {
    Raw {
        addr: s.mux.rpc_addr,
        token: Some(engine_api::mint_token(&s.local.secret).unwrap()),
    }
}

impl Raw {
    pub fn with_token(addr: std::net::SocketAddr, token: Option<String>) -> Self {
        Self { addr, token }
    }

    /// POSTs `body`; returns status, the header block and the body.
    pub async fn post(&self, body: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_ascii_lowercase(), rest.to_string())
    }
}
