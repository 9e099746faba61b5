//! Limits on a real Redis Cluster (three masters started by the test): two instances share one
//! per-IP limit, every key of the limiter sits in one hash slot, counts are released.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_shared_through_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    let up = Upstream::start().await;
    // `closed`: a script the cluster refuses (cross-slot keys) would be a 503, not a silent
    // fallback to local limits.
    let flags = [
        "--redis-url",
        &url,
        "--redis-cluster",
        "--redis-failure-policy",
        "closed",
        "--per-ip-connection-limit",
        "2",
        "--redis-key-prefix",
        "fbcluster",
    ];
    let a = start_proxy(&[&up], &flags).await;
    let b = start_proxy(&[&up], &flags).await;

    let c1 = subscribe(a.local_addr(), "/").await.unwrap();
    let _c2 = subscribe(b.local_addr(), "/").await.unwrap();
    for p in [&a, &b] {
        let r = subscribe(p.local_addr(), "/").await.unwrap_err();
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(r.body.contains("per-ip"), "{}", r.body);
    }

    // Every key either instance wrote hashes to one slot.
    let mut conn = cluster.conn().await;
    let ka = a.limiter().redis_keys().unwrap().clone();
    let kb = b.limiter().redis_keys().unwrap().clone();
    let mut slots = Vec::new();
    for key in [
        ka.ip("127.0.0.1"),
        ka.ip("::1"),
        ka.app("alpha"),
        kb.ip("10.0.0.1"),
    ] {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        slots.push(slot);
    }
    assert!(slots.iter().all(|s| *s == slots[0]), "{slots:?}");
    let live = live_leases(&mut conn, &ka.ip("127.0.0.1")).await;
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(live.iter().filter(|t| ka.owns(t)).count(), 1, "{live:?}");
    assert_eq!(live.iter().filter(|t| kb.owns(t)).count(), 1, "{live:?}");

    // Released after a disconnect: the slot becomes usable on the other instance.
    drop(c1);
    eventually(DEADLINE, "count released in the cluster", || {
        let mut conn = conn.clone();
        let ka = ka.clone();
        async move {
            let live = live_leases(&mut conn, &ka.ip("127.0.0.1")).await;
            !live.iter().any(|t| ka.owns(t))
        }
    })
    .await;
    let _c3 = subscribe(b.local_addr(), "/").await.unwrap();
    for p in [&a, &b] {
        assert_eq!(
            metric(
                &p.metrics().render(),
                "flashblocks_proxy_redis_errors_total"
            ),
            0.0
        );
    }
}
