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

/// Each subscriber gets the encoding it asked for (`?compression=brotli|none`), whatever the
/// default; the compressed frame is the same for all who asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_encoding_it_asked_for() {
    let up = Upstream::start().await;
    for default in [&[][..], &["--enable-compression"][..]] {
        let p = start_proxy(&[&up], default).await;
        up.wait_connections(1).await;
        let mut text = subscribe(p.local_addr(), "/ws?compression=none")
            .await
            .unwrap();
        let mut br1 = subscribe(p.local_addr(), "/?compression=brotli")
            .await
            .unwrap();
        let mut br2 = subscribe(p.local_addr(), "/ws?compression=brotli")
            .await
            .unwrap();
        let sent = flashblock(9, 0);
        up.send_text(sent.clone());
        assert_eq!(next_text(&mut text).await, sent, "{default:?}");
        let (Message::Binary(a), Message::Binary(b)) =
            (next_data(&mut br1).await, next_data(&mut br2).await)
        else {
            panic!("{default:?}: compressed frames are binary")
        };
        assert_eq!(a, b);
        assert_eq!(
            flashblocks_proxy::fanout::decompress(&a, 1 << 20).unwrap(),
            sent.as_bytes()
        );
        let r = subscribe(p.local_addr(), "/?compression=zstd")
            .await
            .unwrap_err();
        assert_eq!(r.status, 400);
        drop((text, br1, br2));
        p.shutdown().await;
        up.wait_connections(0).await;
    }
}
