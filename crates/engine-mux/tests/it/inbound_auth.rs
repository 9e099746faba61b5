//! Inbound authentication: engine_* needs op-node's JWT; the calls rollup-boost lets through
//! (transactions from the rollup's RPC nodes, chain reads by tools) work without one.

use std::time::Duration;

use engine_api::JwtSecret;
use serde_json::Value;

use crate::{
    harness::{eventually, setup},
    mock_engine::MockEngine,
    routing::Raw,
};

/// What reached an engine besides the background probes.
fn requests(e: &MockEngine) -> Vec<String> {
    e.calls()
        .into_iter()
        .map(|c| c.method)
        .filter(|m| m != "eth_getBlockByNumber")
        .collect()
}

const SEND_TX: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x02f87001"]}"#;
const BLOCK_NUMBER: &str = r#"{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber","params":[]}"#;
const FCU: &str = r#"{"jsonrpc":"2.0","id":3,"method":"engine_forkchoiceUpdatedV3","params":[{"headBlockHash":"0x0000000000000000000000000000000000000000000000000000000000000001","safeBlockHash":"0x0000000000000000000000000000000000000000000000000000000000000001","finalizedBlockHash":"0x0000000000000000000000000000000000000000000000000000000000000001"},null]}"#;

#[tokio::test]
async fn transactions_and_chain_reads_without_a_jwt_go_through_and_are_copied() {
    let s = setup(&[]).await;
    let anon = Raw::with_token(s.mux.rpc_addr, None);
    let (status, _, body) = anon.post(SEND_TX).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["method"], "eth_sendRawTransaction", "{body}");
    let (status, _, body) = anon.post(BLOCK_NUMBER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.local.calls_of("eth_blockNumber").len(), 1);
    assert_eq!(s.local.calls_of("eth_sendRawTransaction").len(), 1);
    eventually(
        Duration::from_secs(2),
        "the transaction was copied to the builder",
        || async { s.builder.calls_of("eth_sendRawTransaction").len() == 1 },
    )
    .await;
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            "engine_mux_unauthenticated_requests_total"
        ),
        2.0,
        "counted"
    );
}

#[tokio::test]
async fn engine_calls_and_batches_with_one_need_the_jwt() {
    let s = setup(&[]).await;
    let anon = Raw::with_token(s.mux.rpc_addr, None);
    let (status, _, body) = anon.post(FCU).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("engine_"), "the 401 says why: {body}");
    let mixed = format!("[{BLOCK_NUMBER},{FCU}]");
    let (status, _, _) = anon.post(&mixed).await;
    assert_eq!(status, 401, "a batch with one engine call");
    let sneaky = format!(
        r#"[{BLOCK_NUMBER},{{"jsonrpc":"2.0","id":9,"method":"eth_chainId","method":"engine_getPayloadV3","params":["0x01"]}}]"#
    );
    let (status, _, _) = anon.post(&sneaky).await;
    assert_eq!(status, 401, "an item whose method cannot be read");
    assert!(
        requests(&s.local).is_empty(),
        "nothing of a refused request reached the EL"
    );

    // With op-node's token the same requests work.
    let op_node = crate::routing::reqwest_like(&s);
    let (status, _, _) = op_node.post(FCU).await;
    assert_eq!(status, 200);
    let (status, _, _) = op_node.post(&mixed).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_token_that_is_present_must_be_valid_even_for_non_engine_calls() {
    let s = setup(&[]).await;
    let wrong = Some(engine_api::mint_token(&JwtSecret::random()).unwrap());
    let (status, _, _) = Raw::with_token(s.mux.rpc_addr, wrong)
        .post(BLOCK_NUMBER)
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = Raw::with_token(s.mux.rpc_addr, Some("garbage".into()))
        .post(SEND_TX)
        .await;
    assert_eq!(status, 401);
    assert!(requests(&s.local).is_empty(), "nothing reached the EL");
}

#[tokio::test]
async fn require_auth_all_refuses_non_engine_calls_without_a_jwt() {
    let s = setup(&["--require-auth-all"]).await;
    let anon = Raw::with_token(s.mux.rpc_addr, None);
    for body in [SEND_TX, BLOCK_NUMBER] {
        let (status, _, _) = anon.post(body).await;
        assert_eq!(status, 401, "{body}");
    }
    assert!(requests(&s.local).is_empty());
    let (status, _, _) = crate::routing::reqwest_like(&s).post(BLOCK_NUMBER).await;
    assert_eq!(status, 200, "with the token it works");
    assert_eq!(
        crate::harness::http_get(s.mux.rpc_addr, "/healthz").await,
        200
    );
}

#[tokio::test]
async fn health_endpoints_need_no_token() {
    let s = setup(&["--require-auth-all"]).await;
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(
            crate::harness::http_get(s.mux.rpc_addr, path).await,
            200,
            "{path}"
        );
    }
}
