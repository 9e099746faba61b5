//! Flashblocks P2P authorization: in `enabled` mode each FCU with attributes reaches the builder
//! as `flashblocks_forkchoiceUpdatedV3` with the authorizer's signed permission; every other
//! FCU, and every FCU in `dry_run`, is a plain `engine_forkchoiceUpdatedV3`.

use std::time::Duration;

use alloy_primitives::B256;
use ed25519_dalek::VerifyingKey;
use engine_api::flashblocks_p2p::Authorization;
use op_alloy_rpc_types_engine::OpPayloadAttributes;
use serde_json::json;

use crate::{
    harness::{Setup, eventually, setup},
    modes::set_mode,
};

// RFC 8032 TEST 1 (authorizer) and TEST 2's public key (builder): test vectors, not real keys.
const AUTHORIZER_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const AUTHORIZER_VK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const BUILDER_VK: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

const P2P: &[&str] = &[
    "--flashblocks-p2p",
    "--flashblocks-authorizer-sk",
    AUTHORIZER_SK,
    "--flashblocks-builder-vk",
    BUILDER_VK,
];

fn vk(hex: &str) -> VerifyingKey {
    let bytes: [u8; 32] = alloy_primitives::hex::decode(hex)
        .unwrap()
        .try_into()
        .unwrap();
    VerifyingKey::from_bytes(&bytes).unwrap()
}

/// The builder's FCUs with attributes so far, by method.
fn builds(s: &Setup) -> Vec<(String, serde_json::Value)> {
    s.builder
        .calls()
        .into_iter()
        .filter(|c| c.method.contains("forkchoiceUpdated") && !c.params[1].is_null())
        .map(|c| (c.method, c.params))
        .collect()
}

async fn wait_builds(s: &Setup, n: usize) {
    eventually(Duration::from_secs(3), "builder FCU", || async {
        builds(s).len() == n
    })
    .await;
}

#[tokio::test]
async fn enabled_mode_sends_the_builder_a_signed_authorization_with_each_build() {
    let s = setup(P2P).await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(
        hash,
        s.builder.block_hash(101).to_string(),
        "the authorized builder's block is proposed"
    );
    let b = builds(&s);
    assert_eq!(b.len(), 1);
    let (method, params) = &b[0];
    assert_eq!(method, "flashblocks_forkchoiceUpdatedV3");
    let op_node = s.local.calls_of("engine_forkchoiceUpdatedV3");
    assert_eq!(
        params[0], op_node[0].params[0],
        "op-node's forkchoice state"
    );
    assert_eq!(params[1], op_node[0].params[1], "op-node's attributes");
    let auth: Authorization = serde_json::from_value(params[2].clone()).unwrap();
    auth.verify(&vk(AUTHORIZER_VK))
        .expect("signed by the authorizer key");
    assert_eq!(auth.builder_vk, vk(BUILDER_VK));
    let attrs: OpPayloadAttributes = serde_json::from_value(params[1].clone()).unwrap();
    assert_eq!(auth.timestamp, attrs.payload_attributes.timestamp);
    let head: B256 = serde_json::from_value(params[0]["headBlockHash"].clone()).unwrap();
    assert_eq!(
        auth.payload_id,
        attrs.payload_id(&head, 4),
        "the id a reth-based builder derives for this build (version byte 4)"
    );
    assert_eq!(
        s.builder.issued_ids(),
        vec![auth.payload_id.to_string()],
        "the id the builder answered"
    );
    assert_eq!(mismatches(&s), 0.0);
    // The FCU without attributes that ends the block is plain.
    eventually(Duration::from_secs(3), "FCU to the new head", || async {
        s.builder
            .calls_of("engine_forkchoiceUpdatedV3")
            .iter()
            .any(|c| c.params[1].is_null())
    })
    .await;
    assert!(
        s.builder
            .calls_of("flashblocks_forkchoiceUpdatedV3")
            .iter()
            .all(|c| !c.params[1].is_null())
    );
    assert_eq!(
        test_utils::metric(
            &s.mux.metrics_text(),
            "engine_mux_flashblocks_p2p_authorizations_total"
        ),
        1.0
    );
}

fn mismatches(s: &Setup) -> f64 {
    test_utils::metric(
        &s.mux.metrics_text(),
        "engine_mux_flashblocks_p2p_payload_id_mismatches_total{builder=\"builder\"}",
    )
}

/// A builder that stamps op-geth's version byte (3) on its payload ids instead of reth's (4):
/// the first build is authorized for an id the builder never builds, which its answer shows
/// (counted and logged); from the next build on the authorization carries the builder's own id.
#[tokio::test]
async fn authorization_follows_the_payload_id_version_the_builder_uses() {
    let s = setup(P2P).await;
    s.builder.set_p2p_id_version(3);
    let authorized = |i: usize| -> (String, String) {
        let (_, params) = &builds(&s)[i];
        let auth: Authorization = serde_json::from_value(params[2].clone()).unwrap();
        (
            auth.payload_id.to_string(),
            s.builder.issued_ids()[i].clone(),
        )
    };
    s.fcu_build().await;
    wait_builds(&s, 1).await;
    eventually(Duration::from_secs(3), "mismatch counted", || async {
        mismatches(&s) == 1.0
    })
    .await;
    let (auth, answered) = authorized(0);
    assert_ne!(auth, answered, "the first build was authorized with byte 4");
    assert!(answered.starts_with("0x03"), "{answered}");

    s.fcu_build().await;
    wait_builds(&s, 2).await;
    let (auth, answered) = authorized(1);
    assert_eq!(auth, answered, "authorized for the id the builder builds");
    assert_eq!(mismatches(&s), 1.0, "no further mismatch");
}

#[tokio::test]
async fn mode_switches_change_which_fcu_the_builder_gets() {
    let s = setup(P2P).await;
    s.fcu_build().await;
    wait_builds(&s, 1).await;
    set_mode(&s, "dry_run").await;
    s.fcu_build().await;
    wait_builds(&s, 2).await;
    set_mode(&s, "enabled").await;
    s.fcu_build().await;
    wait_builds(&s, 3).await;
    let b = builds(&s);
    let methods: Vec<&str> = b.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        [
            "flashblocks_forkchoiceUpdatedV3",
            "engine_forkchoiceUpdatedV3",
            "flashblocks_forkchoiceUpdatedV3"
        ]
    );
    assert_eq!(
        b[1].1.as_array().unwrap().len(),
        2,
        "dry_run: no authorization, the builder stops publishing"
    );
    assert!(b[2].1[2].is_object());
    set_mode(&s, "disabled").await;
    s.fcu_build().await;
    assert_eq!(builds(&s).len(), 3, "disabled: no builder traffic at all");
}

#[tokio::test]
async fn without_the_flag_builds_are_plain_fcus() {
    let s = setup(&[]).await;
    s.fcu_build().await;
    wait_builds(&s, 1).await;
    assert_eq!(builds(&s)[0].0, "engine_forkchoiceUpdatedV3");
    assert!(
        s.builder
            .calls_of("flashblocks_forkchoiceUpdatedV3")
            .is_empty()
    );
    assert!(json!(builds(&s)[0].1).as_array().unwrap().len() == 2);
}
