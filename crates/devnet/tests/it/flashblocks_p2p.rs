//! Flashblocks P2P authorization end to end: engine-mux authorizes the builder per block with
//! `flashblocks_forkchoiceUpdatedV3`; the builder publishes flashblocks only for payloads it
//! was authorized for, stops when the FCUs come without authorization (dry_run), and refuses
//! (and counts) authorizations from another authorizer or for another builder key.

use std::{sync::atomic::Ordering, time::Duration};

use devnet::app::{Devnet, DevnetP2p};
use engine_mux::ExecutionMode;

use crate::support::{FlashblocksSubscriber, flashblocks_config, missed, observe};

fn p2p_config(p2p: DevnetP2p) -> devnet::app::DevnetConfig {
    devnet::app::DevnetConfig {
        flashblocks_p2p: Some(p2p),
        ..flashblocks_config()
    }
}

fn distinct_payloads(sub: &FlashblocksSubscriber) -> usize {
    let ids: std::collections::HashSet<_> = sub.frames().iter().map(|f| f.payload_id).collect();
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authorized_builder_publishes_and_stops_without_authorization() {
    let devnet = Devnet::start(p2p_config(DevnetP2p::default()))
        .await
        .expect("devnet starts");
    assert!(
        devnet.mux.flashblocks_addr.is_none(),
        "engine-mux does not ingest them"
    );
    let sub = FlashblocksSubscriber::connect(devnet.builder.flashblocks_addr.unwrap()).await;
    let p2p = devnet.builder.engine.flashblocks_p2p().unwrap().clone();
    let mut events = devnet.driver.subscribe();
    let slots = observe(&devnet, &mut events, 6, Duration::from_secs(60), |_| {}).await;
    assert!(missed(&slots).is_empty(), "{:?}", missed(&slots));
    let authorized = p2p.stats.authorized.load(Ordering::Relaxed);
    assert!(authorized >= 6, "every build authorized: {authorized}");
    assert_eq!(p2p.stats.refused(), 0);
    assert!(
        slots.last().unwrap().builder_blocks >= 4.0,
        "{:?}",
        slots.last()
    );
    assert!(
        !sub.frames().is_empty(),
        "authorized payloads' flashblocks are published"
    );
    assert!(distinct_payloads(&sub) <= authorized as usize);

    // dry_run: the builder still builds (plain FCUs), but is not authorized to publish.
    devnet.mux.state().mode.set(ExecutionMode::DryRun);
    let authorized_at_switch = p2p.stats.authorized.load(Ordering::Relaxed);
    let unauthorized_at_switch = p2p.stats.unauthorized_builds.load(Ordering::Relaxed);
    observe(&devnet, &mut events, 4, Duration::from_secs(60), |_| {}).await;
    let authorized_after = p2p.stats.authorized.load(Ordering::Relaxed);
    assert!(
        authorized_after <= authorized_at_switch + 1,
        "at most the build already queued at the switch: {authorized_at_switch} -> {authorized_after}"
    );
    assert!(
        p2p.stats.unauthorized_builds.load(Ordering::Relaxed) >= unauthorized_at_switch + 3,
        "plain FCUs in dry_run"
    );
    assert!(
        distinct_payloads(&sub) <= authorized_after as usize,
        "no flashblocks for unauthorized payloads"
    );
    devnet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builder_refuses_a_foreign_authorizer_or_another_builders_authorization() {
    let cases = [
        (
            DevnetP2p {
                trusted_authorizer_sk: [0x33; 32],
                ..DevnetP2p::default()
            },
            "bad signature",
        ),
        (
            DevnetP2p {
                authorized_builder_sk: [0x44; 32],
                ..DevnetP2p::default()
            },
            "wrong builder",
        ),
    ];
    for (p2p_keys, case) in cases {
        let devnet = Devnet::start(p2p_config(p2p_keys))
            .await
            .expect("devnet starts");
        let sub = FlashblocksSubscriber::connect(devnet.builder.flashblocks_addr.unwrap()).await;
        let p2p = devnet.builder.engine.flashblocks_p2p().unwrap().clone();
        let mut events = devnet.driver.subscribe();
        let slots = observe(&devnet, &mut events, 4, Duration::from_secs(60), |_| {}).await;
        assert!(missed(&slots).is_empty(), "[{case}] {:?}", missed(&slots));
        let s = &p2p.stats;
        let counted = match case {
            "bad signature" => s.bad_signature.load(Ordering::Relaxed),
            _ => s.wrong_builder.load(Ordering::Relaxed),
        };
        assert!(counted >= 3, "[{case}] refusals counted: {counted}");
        assert_eq!(s.authorized.load(Ordering::Relaxed), 0, "[{case}]");
        assert!(sub.frames().is_empty(), "[{case}] nothing published");
        let last = slots.last().unwrap();
        assert_eq!(last.builder_blocks, 0.0, "[{case}] {last:?}");
        assert!(
            last.local_blocks >= 4.0,
            "[{case}] the local block is used: {last:?}"
        );
        devnet.stop().await;
    }
}
