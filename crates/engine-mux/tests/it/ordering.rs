//! Calls bound for the builder reach it in op-node's order.

use std::time::Duration;

use serde_json::json;

use crate::harness::{attributes, eventually, forkchoice, setup};

#[tokio::test]
async fn two_hundred_rapid_fcus_reach_the_builder_in_order() {
    let s = setup(&[]).await;
    for i in 0..200u64 {
        let attrs = if i % 2 == 0 {
            attributes(false)
        } else {
            serde_json::Value::Null
        };
        s.call(
            "engine_forkchoiceUpdatedV3",
            json!([forkchoice(1000 + i), attrs]),
        )
        .await
        .unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "all 200 FCUs reached the builder",
        || async { s.builder.calls_of("engine_forkchoiceUpdatedV3").len() == 200 },
    )
    .await;
    let heads: Vec<String> = s
        .builder
        .calls_of("engine_forkchoiceUpdatedV3")
        .iter()
        .map(|c| c.params[0]["headBlockHash"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..200u64)
        .map(|i| {
            forkchoice(1000 + i)["headBlockHash"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(heads, expected);
    // Every local id from the burst is still mapped (the map outlives bursts of hundreds).
    assert_eq!(s.mux.state().builders.first().payload_ids(), 100);
}
