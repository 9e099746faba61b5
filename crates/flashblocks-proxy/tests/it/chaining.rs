//! Streams as they arrive from other proxies: proxy A (`--enable-compression`, Brotli binary
//! frames) feeding proxy B feeding a subscriber; flashblocks whose metadata is only
//! `block_number` (Base's stream) pass; garbage and oversized Brotli frames are counted and
//! skipped without stopping the stream.

use clap::Parser;
use flashblocks_proxy::{ProxyHandle, cli::Args, config::Config, fanout::MAX_MESSAGE_BYTES};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// A proxy whose upstream is another proxy's subscriber endpoint.
async fn proxy_of(upstream: &ProxyHandle, extra: &[&str]) -> ProxyHandle {
    let mut argv: Vec<String> = vec!["flashblocks-proxy".into()];
    argv.extend(base_flags(&[]));
    argv[6] = format!("ws://{}/", upstream.local_addr());
    argv.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap();
    flashblocks_proxy::start(config).await.unwrap()
}

/// Sum of a counter over all its label sets.
fn total(p: &ProxyHandle, name: &str) -> f64 {
    p.metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    // websocket-proxy's settings: quality 5, 4 MiB window.
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        std::io::Write::write_all(&mut w, data).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_proxies_relay_brotli_binary_frames() {
    let up = Upstream::start().await;
    let a = start_proxy(&[&up], &["--enable-compression"]).await;
    up.wait_connections(1).await;
    let b = proxy_of(&a, &[]).await;
    let b_compressing = proxy_of(&a, &["--enable-compression"]).await;
    eventually(
        DEADLINE,
        "both downstream proxies subscribed to A",
        || async { a.limiter().active() == 2 },
    )
    .await;
    let mut plain = subscribe(b.local_addr(), "/").await.unwrap();
    let mut compressed = subscribe(b_compressing.local_addr(), "/").await.unwrap();

    // The harness's flashblocks carry metadata `{"block_number": n}` only, as Base's do.
    let sent: Vec<String> = (0..3).map(|i| flashblock(21, i)).collect();
    assert!(sent[0].contains(r#""metadata":{"block_number":21}"#));
    for s in &sent {
        up.send_text(s.clone());
    }
    for s in &sent {
        assert_eq!(&next_text(&mut plain).await, s);
        let Message::Binary(z) = next_data(&mut compressed).await else {
            panic!("--enable-compression sends binary frames")
        };
        assert_eq!(
            flashblocks_proxy::fanout::decompress(&z, 1 << 20).unwrap(),
            s.as_bytes()
        );
    }
    // A's frames were Brotli binary, B decoded them: nothing invalid, nothing deduplicated.
    assert_eq!(
        total(&b, "flashblocks_proxy_upstream_invalid_messages_total"),
        0.0
    );
    assert_eq!(total(&b, "flashblocks_proxy_messages_published_total"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_brotli_frames_are_counted_and_skipped() {
    let up = Upstream::start().await;
    let p = start_proxy(&[&up], &[]).await;
    up.wait_connections(1).await;
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();

    up.send_binary(vec![0xff, 0x00, 0x13, 0x37]);
    // 10 KiB on the wire, one byte more than the limit once inflated.
    let bomb = brotli(&vec![b' '; MAX_MESSAGE_BYTES + 1]);
    assert!(bomb.len() < MAX_MESSAGE_BYTES / 100, "{}", bomb.len());
    up.send_binary(bomb);
    let good = flashblock(5, 0);
    up.send_binary(brotli(good.as_bytes()));
    assert_eq!(next_text(&mut ws).await, good);
    assert_eq!(
        total(&p, "flashblocks_proxy_upstream_invalid_messages_total"),
        2.0
    );
    assert_eq!(total(&p, "flashblocks_proxy_messages_published_total"), 1.0);
}
