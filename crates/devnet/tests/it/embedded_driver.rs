//! The op-node driver calling engine-mux through its typed in-process handle
//! (`RunningMux::engine()`) instead of JSON-RPC over HTTP: a node that links engine-mux. The
//! blocks must be the same as over HTTP: the builder's when it is healthy, the local engine's
//! when the builder fails, and the chain must advance on the local engine either way.

use std::time::Duration;

use devnet::app::{Devnet, DevnetConfig, metric_value};

use crate::support::{config, missed, observe};

fn embedded() -> DevnetConfig {
    DevnetConfig {
        embedded_driver: true,
        ..config()
    }
}

/// engine-mux's HTTP server times every request it serves by method; in-process calls skip the
/// server, so with the driver embedded the engine methods never show up there.
fn engine_calls_over_http(devnet: &Devnet) -> f64 {
    let text = devnet.mux.metrics_text();
    [
        "engine_forkchoiceUpdatedV3",
        "engine_getPayloadV3",
        "engine_getPayloadV4",
        "engine_newPayloadV3",
        "engine_newPayloadV4",
    ]
    .iter()
    .map(|m| {
        metric_value(
            &text,
            "engine_mux_rpc_request_duration_seconds_count",
            &[("method", m)],
        )
    })
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_driver_proposes_the_builders_blocks_and_the_local_head_follows() {
    let devnet = Devnet::start(embedded()).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 20, Duration::from_secs(60), |_| {}).await;

    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );
    let blocks: Vec<_> = slots.iter().filter_map(|o| o.proposed()).collect();
    let numbers: Vec<u64> = blocks.iter().map(|b| b.number).collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "the chain advanced one block per slot: {numbers:?}"
    );
    let by_builder = blocks
        .iter()
        .filter(|b| !devnet.builders_that_built(&b.hash).is_empty())
        .count();
    let last = slots.last().unwrap();
    assert_eq!(
        by_builder, 20,
        "every block was the builder's (healthy builder): {last:?}"
    );
    assert_eq!(last.local_blocks, 0.0, "no fallback to the local block");
    assert_eq!(
        devnet.local.engine.head().hash,
        blocks.last().unwrap().hash,
        "the local EL's head is the last block the driver proposed"
    );
    assert!(
        blocks.iter().any(|b| b.tx_count > 1),
        "the spammer's transactions reached the blocks"
    );
    assert_eq!(
        engine_calls_over_http(&devnet),
        0.0,
        "the driver's engine calls went in process, not through engine-mux's HTTP server"
    );
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_driver_falls_back_to_the_local_block_when_the_builder_serves_invalid_blocks() {
    let devnet =
        crate::builder_invalid::invalid_builder_blocks_fall_back_to_local(embedded()).await;
    assert_eq!(engine_calls_over_http(&devnet), 0.0);
    devnet.stop().await;
}
