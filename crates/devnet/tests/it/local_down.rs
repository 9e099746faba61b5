use std::time::Duration;

use devnet::app::Devnet;
use test_utils::eventually;

use crate::support::{config, healthz_at, observe};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_engine_down_makes_healthz_503() {
    let mut cfg = config();
    cfg.tx_rate = 0.0;
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 3, Duration::from_secs(30), |_| {}).await;
    assert_eq!(slots.last().unwrap().health, 200);

    let Devnet {
        local,
        builder,
        mux,
        driver,
        spammer,
        ..
    } = devnet;
    // Take the local EL away entirely: both its listeners close.
    local.stop().await;
    let addr = mux.rpc_addr;
    eventually(Duration::from_secs(20), "healthz 503", || async move {
        healthz_at(addr).await == 503
    })
    .await;
    driver.stop().await;
    if let Some(s) = spammer {
        s.stop().await;
    }
    mux.shutdown().await;
    builder.stop().await;
}
