use std::{sync::atomic::Ordering, time::Duration};

use devnet::{
    app::Devnet,
    engine::faults::{Fault, FaultWindow},
};

use crate::support::{config, missed, observe};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_wrong_state_root_is_rejected_by_reexecution_and_local_block_used() {
    invalid_builder_blocks_fall_back_to_local(config())
        .await
        .stop()
        .await;
}

/// Builder blocks with a wrong state root at 4..8 under `cfg` (the HTTP driver or the embedded
/// one): re-execution refuses them, the local block is proposed and counted, the builder's
/// blocks come back after the window and the local EL follows. The devnet is left running.
pub(crate) async fn invalid_builder_blocks_fall_back_to_local(
    mut cfg: devnet::app::DevnetConfig,
) -> Devnet {
    cfg.builder_faults = vec![FaultWindow {
        fault: Fault::Invalid,
        from: 4,
        to: 8,
        builder: None,
    }];
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 12, Duration::from_secs(60), |_| {}).await;

    assert!(
        missed(&slots).is_empty(),
        "no missed slots: {:?}",
        missed(&slots)
    );
    let stats = devnet.local.engine.stats();
    assert!(
        stats.invalid_payloads.load(Ordering::Relaxed) >= 1,
        "local engine answered INVALID at least once"
    );
    let reason = stats.last_invalid_reason().expect("an INVALID reason");
    assert!(reason.starts_with("state root mismatch"), "{reason}");

    let last = slots.last().unwrap();
    assert!(
        last.local_blocks >= 1.0,
        "local block used during the fault: {last:?}"
    );
    assert!(last.fallbacks >= 1.0, "fallback counted: {last:?}");
    let text = devnet.mux.metrics_text();
    assert!(
        text.lines()
            .any(|l| l.starts_with("engine_mux_fallbacks_total") && !l.ends_with(" 0")),
        "fallback metric present:\n{text}"
    );
    // After the window the builder's blocks are used again.
    let at_8 = slots
        .iter()
        .filter_map(|o| o.proposed().map(|b| (b.number, o.builder_blocks)))
        .find(|(n, _)| *n == 8);
    let (_, builder_at_8) = at_8.expect("block 8 observed");
    assert!(
        last.builder_blocks > builder_at_8,
        "builder blocks resume: {last:?}"
    );
    assert_eq!(
        devnet.local.engine.head().hash,
        last.proposed().unwrap().hash
    );
    devnet
}
