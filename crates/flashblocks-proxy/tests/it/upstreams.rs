//! Several upstreams: each flashblock once and in order; delivery survives an upstream dying;
//! a restarted upstream is re-dialled.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upstreams_one_killed_mid_stream_no_gap_no_duplicate() {
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let p = start_proxy(&[&a, &b], &[]).await;
    a.wait_connections(1).await;
    b.wait_connections(1).await;
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();

    // A is ahead (0..10), B lags (0..6): everything B sends is a duplicate so far.
    for i in 0..10 {
        a.send_text(flashblock(1, i));
        if i < 6 {
            b.send_text(flashblock(1, i));
        }
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(key_of(&next_text(&mut ws).await));
    }
    // A dies mid-payload; B catches up (re-sending 6..10, which were delivered) and continues
    // into the next payload.
    a.kill();
    a.wait_connections(0).await;
    for i in 6..15 {
        b.send_text(flashblock(1, i));
    }
    for i in 0..5 {
        b.send_text(flashblock(2, i));
    }
    // A sentinel: anything duplicated would arrive before it.
    b.send_text(flashblock(3, 0));
    loop {
        let k = key_of(&next_text(&mut ws).await);
        let done = k.0 == format!("0x{:016x}", 3);
        got.push(k);
        if done {
            break;
        }
    }
    let mut want: Vec<(String, u64)> = (0..15).map(|i| (format!("0x{:016x}", 1), i)).collect();
    want.extend((0..5).map(|i| (format!("0x{:016x}", 2), i)));
    want.push((format!("0x{:016x}", 3), 0));
    assert_eq!(got, want);
    eventually(DEADLINE, "upstream 0 reported down", || async {
        metric(
            &p.metrics().render(),
            &format!(
                "flashblocks_proxy_upstream_connected{{upstream=\"0\",url=\"ws://{}\"}}",
                a.addr
            ),
        ) == 0.0
    })
    .await;
    assert_eq!(
        metric(
            &p.metrics().render(),
            &format!(
                "flashblocks_proxy_upstream_connected{{upstream=\"1\",url=\"ws://{}\"}}",
                b.addr
            )
        ),
        1.0
    );
    assert!(
        metric(
            &p.metrics().render(),
            "flashblocks_proxy_messages_deduplicated_total"
        ) >= 9.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_upstream_is_reconnected() {
    let a = Upstream::start().await;
    let addr = a.addr;
    let p = start_proxy(&[&a], &[]).await;
    a.wait_connections(1).await;
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();
    a.send_text(flashblock(1, 0));
    assert_eq!(key_of(&next_text(&mut ws).await).1, 0);
    a.stop().await;
    let a = Upstream::start_on(addr).await;
    a.wait_connections(1).await;
    a.send_text(flashblock(1, 1));
    assert_eq!(key_of(&next_text(&mut ws).await).1, 1);
    let series =
        format!("flashblocks_proxy_upstream_connects_total{{upstream=\"0\",url=\"ws://{addr}\"}}");
    assert_eq!(metric(&p.metrics().render(), &series), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_going_away_close() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

    let a = Upstream::start().await;
    let p = start_proxy(&[&a], &[]).await;
    a.wait_connections(1).await;
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();
    // Attached to its writer shard once it receives a message.
    a.send_text(flashblock(1, 0));
    next_text(&mut ws).await;
    p.shutdown().await;
    let msg = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
}
