//! A subscriber of engine-mux's flashblocks stream that stops reading is disconnected (and
//! counted) while the fast subscribers keep receiving every flashblock, in order.

use std::time::Duration;

use devnet::app::Devnet;
use test_utils::eventually;
use tokio::net::TcpSocket;

use crate::support::{
    FlashblocksSubscriber, assert_in_order_without_duplicates, flashblocks_config, mux_metric,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_subscriber_is_disconnected_while_fast_ones_keep_every_flashblock_in_order() {
    let mut cfg = flashblocks_config();
    // Bigger flashblocks fill the stuck subscriber's socket sooner.
    cfg.tx_rate = 120.0;
    let devnet = Devnet::start(cfg).await.expect("devnet starts");
    let out = devnet.mux.flashblocks_addr.expect("publishing");

    // The slow one: a tiny receive window, and nobody reads it until the end.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(out).await.unwrap();
    let (slow, _) = tokio_tungstenite::client_async(format!("ws://{out}"), stream)
        .await
        .expect("handshake");
    let fast = [
        FlashblocksSubscriber::connect(out).await,
        FlashblocksSubscriber::connect(out).await,
    ];
    eventually(Duration::from_secs(10), "three subscribers", || async {
        mux_metric(&devnet, "engine_mux_flashblocks_subscribers", &[]) == 3.0
    })
    .await;

    eventually(
        Duration::from_secs(120),
        "the stuck subscriber is dropped",
        || async {
            mux_metric(
                &devnet,
                "engine_mux_flashblocks_lagging_disconnects_total",
                &[],
            ) >= 1.0
        },
    )
    .await;
    assert_eq!(
        mux_metric(
            &devnet,
            "engine_mux_flashblocks_lagging_disconnects_total",
            &[]
        ),
        1.0,
        "only the stuck subscriber"
    );
    eventually(Duration::from_secs(10), "two subscribers left", || async {
        mux_metric(&devnet, "engine_mux_flashblocks_subscribers", &[]) == 2.0
    })
    .await;
    // The fast ones keep going after the drop.
    let at_drop = fast[0].len();
    eventually(
        Duration::from_secs(10),
        "more flashblocks after the drop",
        || {
            let more = fast[0].len() >= at_drop + 10 && fast[1].len() >= at_drop + 10;
            async move { more }
        },
    )
    .await;
    assert!(!fast[0].is_closed() && !fast[1].is_closed());

    // Reading the stuck one now: what it got is a gapless prefix of the stream, then the end.
    let slow = FlashblocksSubscriber::record(slow);
    eventually(
        Duration::from_secs(20),
        "the stuck subscriber's connection ends",
        || {
            let closed = slow.is_closed();
            async move { closed }
        },
    )
    .await;
    devnet.stop().await;

    let (a, b) = (fast[0].ids(), fast[1].ids());
    let n = a.len().min(b.len());
    assert_eq!(a[..n], b[..n], "both fast subscribers got the same stream");
    assert_in_order_without_duplicates(&a);
    assert_in_order_without_duplicates(&b);
    let s = slow.ids();
    assert!(
        !s.is_empty() && s.len() < a.len(),
        "the slow one got a part ({} of {})",
        s.len(),
        a.len()
    );
    assert_eq!(
        s[..],
        a[..s.len()],
        "what the slow one got was in order and gapless"
    );
}
