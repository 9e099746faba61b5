//! API keys, per-app limits, trusted-proxy IP header, `/healthz` and `/metrics`.

use crate::{client, harness::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_missing_api_key_is_401() {
    let up = Upstream::start().await;
    let p = start_proxy(&[&up], &["--api-keys", "alpha:ka:2,beta:kb"]).await;
    let r = subscribe(p.local_addr(), "/ws/wrong").await.unwrap_err();
    assert_eq!(r.status, 401);
    let r = subscribe(p.local_addr(), "/").await.unwrap_err();
    assert_eq!(r.status, 401);
    assert_eq!(
        metric(
            &p.metrics().render(),
            "flashblocks_proxy_unauthorized_total"
        ),
        2.0
    );
    let _ok = subscribe(p.local_addr(), "/ws/kb").await.unwrap();
    assert_eq!(
        metric(
            &p.metrics().render(),
            "flashblocks_proxy_connections{app=\"beta\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_app_limit_is_429_with_reason_and_released_on_disconnect() {
    let up = Upstream::start().await;
    let p = start_proxy(&[&up], &["--api-keys", "alpha:ka:2,alpha:ka2:2,beta:kb:5"]).await;
    let a1 = subscribe(p.local_addr(), "/ws/ka").await.unwrap();
    let _a2 = subscribe(p.local_addr(), "/ws/ka2").await.unwrap();
    let r = subscribe(p.local_addr(), "/ws/ka").await.unwrap_err();
    assert_eq!(r.status, 429);
    assert!(r.body.contains("per-app"), "{}", r.body);
    // Another app is unaffected.
    let _b = subscribe(p.local_addr(), "/ws/kb").await.unwrap();
    assert_eq!(
        metric(
            &p.metrics().render(),
            "flashblocks_proxy_rate_limited_total{reason=\"app\"}"
        ),
        1.0
    );
    drop(a1);
    eventually(DEADLINE, "app slot released", || async {
        subscribe(p.local_addr(), "/ws/ka").await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_header_only_trusted_from_trusted_proxies() {
    let up = Upstream::start().await;
    // Untrusted peer: the header is ignored, both connections count against 127.0.0.1.
    let p = start_proxy(&[&up], &["--per-ip-connection-limit", "1"]).await;
    let _c1 = subscribe_with(p.local_addr(), "/", &[("x-forwarded-for", "1.1.1.1")])
        .await
        .unwrap();
    let r = subscribe_with(p.local_addr(), "/", &[("x-forwarded-for", "2.2.2.2")])
        .await
        .unwrap_err();
    assert_eq!(r.status, 429);
    assert!(r.body.contains("per-ip"), "{}", r.body);

    // Trusted peer: the header decides.
    let p = start_proxy(
        &[&up],
        &[
            "--per-ip-connection-limit",
            "1",
            "--trusted-proxies",
            "127.0.0.0/8",
        ],
    )
    .await;
    let _c1 = subscribe_with(p.local_addr(), "/", &[("x-forwarded-for", "1.1.1.1")])
        .await
        .unwrap();
    let _c2 = subscribe_with(p.local_addr(), "/", &[("x-forwarded-for", "2.2.2.2")])
        .await
        .unwrap();
    let r = subscribe_with(p.local_addr(), "/", &[("x-forwarded-for", "1.1.1.1")])
        .await
        .unwrap_err();
    assert_eq!(r.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_limit_and_healthz_and_metrics_endpoint() {
    let up = Upstream::start().await;
    let p = start_proxy(
        &[&up],
        &[
            "--instance-connection-limit",
            "1",
            "--metrics",
            "true",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .await;
    let (status, body) = client::get(p.local_addr(), "/healthz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let _c = subscribe(p.local_addr(), "/").await.unwrap();
    let r = subscribe(p.local_addr(), "/").await.unwrap_err();
    assert_eq!(r.status, 429);
    assert!(r.body.contains("instance"), "{}", r.body);
    let series = format!(
        "flashblocks_proxy_upstream_connected{{upstream=\"0\",url=\"ws://{}\"}}",
        up.addr
    );
    // The gauge flips once the proxy's side of the upstream handshake completes.
    let metrics_addr = p.metrics_addr().unwrap();
    eventually(DEADLINE, "upstream reported connected on /metrics", || {
        let series = series.clone();
        async move {
            let (status, text) = client::get(metrics_addr, "/metrics").await.unwrap();
            status == 200 && flashblocks_proxy::metrics::scrape(&text, &series) == Some(1.0)
        }
    })
    .await;
    let (_, text) = client::get(metrics_addr, "/metrics").await.unwrap();
    assert_eq!(
        flashblocks_proxy::metrics::scrape(
            &text,
            "flashblocks_proxy_rate_limited_total{reason=\"instance\"}"
        ),
        Some(1.0)
    );
    assert_eq!(client::get(p.local_addr(), "/nope").await.unwrap().0, 404);
}
