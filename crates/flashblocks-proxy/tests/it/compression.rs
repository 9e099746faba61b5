//! Brotli: outgoing compression round trip, and compressed binary frames accepted from upstream.

use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brotli_round_trip_to_subscribers() {
    let up = Upstream::start().await;
    let p = start_proxy(&[&up], &["--enable-compression"]).await;
    up.wait_connections(1).await;
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();
    let sent = flashblock(1, 0);
    up.send_text(sent.clone());
    let Message::Binary(b) = next_data(&mut ws).await else {
        panic!("compressed frames are binary")
    };
    assert!(
        b.len() < sent.len(),
        "not compressed: {} >= {}",
        b.len(),
        sent.len()
    );
    let plain = flashblocks_proxy::fanout::decompress(&b, 1 << 20).expect("valid brotli");
    assert_eq!(plain, sent.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_and_binary_upstream_frames_are_accepted() {
    let up = Upstream::start().await;
    let p = start_proxy(&[&up], &[]).await;
    up.wait_connections(1).await;
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();
    let a = flashblock(7, 0);
    let b = flashblock(7, 1);
    up.send_binary(flashblocks_proxy::fanout::compress(a.as_bytes()));
    up.send_binary(b.clone().into_bytes());
    assert_eq!(next_text(&mut ws).await, a);
    assert_eq!(next_text(&mut ws).await, b);
}
