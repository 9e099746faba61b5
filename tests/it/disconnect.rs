//! The stream goes away: answers come from the upstream at once, never from a stale pending
//! view; when it comes back, pending answers resume.

use serde_json::json;

use e2e::{
    BLOCK_TIME, Net, Relay, call, client, eventually_some, metric, pending_ahead, quantity,
    start_rpc,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_falls_back_to_upstream_then_recovers() {
    let net = Net::start(10.0).await;
    let relay = Relay::start(net.flashblocks_url()).await;
    let rpc = start_rpc(&relay.url(), &net.upstream_url(), &[]).await;
    let ours = client(&rpc.http_url(), None);

    let ahead = || pending_ahead(&net.local, &ours);
    eventually_some(10 * BLOCK_TIME, "pending served from flashblocks", ahead).await;

    relay.cut();
    eventually_some(2 * BLOCK_TIME, "the stream to be seen down", || async {
        (metric(&rpc.metrics_text(), "flashblocks_rpc_stream_connected") == 0.0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&rpc.metrics_text(), "flashblocks_rpc_pending_blocks"),
        0.0
    );
    // For three slots every pending answer is the upstream's own (the devnet's `pending` is
    // its head): never ahead of it.
    let until = tokio::time::Instant::now() + 3 * BLOCK_TIME;
    let mut checks = 0;
    while tokio::time::Instant::now() < until {
        let before = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
        let pending = call(&ours, "eth_getBlockByNumber", json!(["pending", false])).await;
        let after = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
        let n = quantity(&pending["number"]);
        assert!(
            (before..=after).contains(&n),
            "pending block {n} while the upstream went {before}..{after}"
        );
        checks += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(checks > 10);

    relay.restore();
    eventually_some(
        10 * BLOCK_TIME,
        "pending served again after reconnecting",
        ahead,
    )
    .await;
    assert!(metric(&rpc.metrics_text(), "flashblocks_rpc_stream_connects_total") >= 2.0);

    rpc.shutdown().await;
    net.stop().await;
}
