//! Bad input gets a clear error and the server keeps serving.

use engine_api::JwtSecret;
use serde_json::Value;

use crate::{harness::setup, routing::Raw};

fn now() -> u64 {
    crate::mock_engine::now()
}

const CHAIN_ID: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
const CAPABILITIES: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"engine_exchangeCapabilities","params":[[]]}"#;

#[tokio::test]
async fn jwt_problems_are_401_with_a_reason() {
    let s = setup(&[]).await;
    let addr = s.mux.rpc_addr;
    let expired = {
        let claims = alloy_rpc_types_engine::Claims {
            iat: now() - 120,
            exp: None,
        };
        s.local.secret.encode(&claims).unwrap()
    };
    let cases = [
        ("missing", None),
        (
            "wrong secret",
            Some(engine_api::mint_token(&JwtSecret::random()).unwrap()),
        ),
        ("expired iat", Some(expired)),
        (
            "alg none",
            Some(engine_api::auth::unsigned_token(
                r#"{"alg":"none","typ":"JWT"}"#,
                &format!(r#"{{"iat":{}}}"#, now()),
            )),
        ),
        ("garbage", Some("not-a-token".to_string())),
    ];
    for (what, token) in cases {
        // A missing token is refused for engine calls; a bad one for any call.
        let call = if token.is_none() {
            CAPABILITIES
        } else {
            CHAIN_ID
        };
        let (status, _, body) = Raw::with_token(addr, token).post(call).await;
        assert_eq!(status, 401, "{what}");
        assert!(!body.is_empty(), "{what}: the 401 says why");
    }
    assert!(
        s.local.calls_of("eth_chainId").is_empty()
            && s.local.calls_of("engine_exchangeCapabilities").is_empty(),
        "nothing unauthenticated reached the EL"
    );
    let (status, _, _) = crate::routing::reqwest_like(&s).post(CHAIN_ID).await;
    assert_eq!(status, 200, "still serving");
}

#[tokio::test]
async fn malformed_requests_get_json_rpc_errors() {
    let s = setup(&[]).await;
    let c = crate::routing::reqwest_like(&s);
    let (status, _, body) = c.post("{not json").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32700
    );
    let (_, _, body) = c.post(r#"{"id":1,"params":[]}"#).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32600
    );
    let (_, _, body) = c.post("[]").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32600
    );
    let (_, _, body) = c
        .post(r#"{"jsonrpc":"2.0","id":9,"method":"engine_getPayloadV3","params":["0xnope"]}"#)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -38001,
        "the EL's own answer for an unknown payload"
    );
    let (status, _, _) = c.post(CHAIN_ID).await;
    assert_eq!(status, 200, "still serving");
    assert!(
        s.mux
            .metrics_text()
            .contains(r#"engine_mux_rejected_requests_total{reason="malformed"} 3"#)
    );
}

#[tokio::test]
async fn oversize_body_is_413_and_nothing_is_forwarded() {
    let s = setup(&["--max-request-body-bytes", "1024"]).await;
    let c = crate::routing::reqwest_like(&s);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["{}"]}}"#,
        "ab".repeat(2048)
    );
    let (status, _, body) = c.post(&big).await;
    assert_eq!(status, 413);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert!(v["error"]["message"].as_str().unwrap().contains("1024"));
    assert!(s.local.calls_of("eth_call").is_empty());
    let (status, _, _) = c.post(CHAIN_ID).await;
    assert_eq!(status, 200, "still serving");
}

#[tokio::test]
async fn batches_with_engine_calls_are_answered_item_by_item() {
    let s = setup(&[]).await;
    let c = crate::routing::reqwest_like(&s);
    let fcu = serde_json::json!({"jsonrpc":"2.0","id":"a","method":"engine_forkchoiceUpdatedV3","params":[crate::harness::forkchoice(100), crate::harness::attributes(false)]});
    let batch = format!(
        r#"[{fcu},{{"jsonrpc":"2.0","id":"b","method":"eth_chainId","params":[]}},{{"bad":true}}]"#
    );
    let (status, _, body) = c.post(&batch).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], "a");
    assert!(
        items[0]["result"]["payloadId"]
            .as_str()
            .unwrap()
            .starts_with("0x03")
    );
    assert_eq!(items[1]["id"], "b");
    assert_eq!(items[2]["error"]["code"], -32600);
    // The FCU inside the batch went through the multiplexer: the builder got it.
    crate::harness::eventually(
        std::time::Duration::from_secs(2),
        "builder got the batched FCU",
        || async { s.builder.calls_of("engine_forkchoiceUpdatedV3").len() == 1 },
    )
    .await;
}
