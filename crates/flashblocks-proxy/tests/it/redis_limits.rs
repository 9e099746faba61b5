//! Limits shared across instances through a real Redis: one per-IP limit for two instances,
//! counts released on disconnect, on a rejected connect and when an instance is killed, the two
//! failure policies when Redis goes away, and Redis answering after the proxy stopped waiting
//! (`CLIENT PAUSE WRITE`, `DEBUG SLEEP`): the late acquisition is undone, the limit never drifts.

use crate::harness::*;

fn redis_flags<'a>(redis: &'a str, per_ip: &'a str) -> Vec<&'a str> {
    vec![
        "--redis-url",
        redis,
        "--per-ip-connection-limit",
        per_ip,
        "--redis-key-prefix",
        "fbtest",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_per_ip_limit() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let a = start_proxy(&[&up], &redis_flags(&url, "2")).await;
    let b = start_proxy(&[&up], &redis_flags(&url, "2")).await;

    let c1 = subscribe(a.local_addr(), "/").await.unwrap();
    let _c2 = subscribe(b.local_addr(), "/").await.unwrap();
    for p in [&a, &b] {
        let r = subscribe(p.local_addr(), "/").await.unwrap_err();
        assert_eq!(r.status, 429);
        assert!(r.body.contains("per-ip"), "{}", r.body);
    }
    assert_eq!(redis_ip_count(&redis, &a, "127.0.0.1").await, 1);
    assert_eq!(redis_ip_count(&redis, &b, "127.0.0.1").await, 1);

    // Released after a disconnect: the slot becomes usable on the other instance.
    drop(c1);
    eventually(DEADLINE, "count released in redis", || async {
        redis_ip_count(&redis, &a, "127.0.0.1").await == 0
    })
    .await;
    let _c3 = subscribe(b.local_addr(), "/").await.unwrap();
    assert_eq!(redis_ip_count(&redis, &b, "127.0.0.1").await, 2);
    assert_eq!(
        metric(
            &a.metrics().render(),
            "flashblocks_proxy_rate_limited_total{reason=\"ip\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_connects_take_no_count() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "2");
    flags.extend([
        "--api-keys",
        "alpha:ka:1,beta:kb:5",
        "--instance-connection-limit",
        "3",
    ]);
    let p = start_proxy(&[&up], &flags).await;

    let _a = subscribe(p.local_addr(), "/ws/ka").await.unwrap();
    // Passes the per-IP check, fails the per-app check: the IP must not stay counted.
    let r = subscribe(p.local_addr(), "/ws/ka").await.unwrap_err();
    assert_eq!(r.status, 429);
    assert!(r.body.contains("per-app"), "{}", r.body);
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 1);
    // So the second per-IP slot is still free.
    let _b = subscribe(p.local_addr(), "/ws/kb").await.unwrap();
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 2);
    // Unknown key: refused before any count.
    assert_eq!(
        subscribe(p.local_addr(), "/ws/zz")
            .await
            .unwrap_err()
            .status,
        401
    );
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 2);
    let keys = p.limiter().redis_keys().unwrap().clone();
    let alpha = live_leases(&mut redis.conn().await, &keys.app("alpha")).await;
    assert_eq!(alpha.len(), 1, "{alpha:?}");
    assert!(keys.owns(&alpha[0]), "{alpha:?}");

    // Graceful shutdown removes the instance's leases (and with them the now empty sets).
    p.shutdown().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(keys.ip("127.0.0.1"))
        .arg(keys.app("alpha"))
        .arg(keys.app("beta"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_counts_expire() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "2");
    flags.extend(["--redis-instance-ttl-ms", "3000"]);
    let mut child = ProxyProcess::spawn(&[&up], &flags).await;
    let survivor = start_proxy(&[&up], &flags).await;

    let _c1 = subscribe(child.addr, "/").await.unwrap();
    let _c2 = subscribe(child.addr, "/").await.unwrap();
    assert_eq!(
        subscribe(survivor.local_addr(), "/")
            .await
            .unwrap_err()
            .status,
        429
    );

    // SIGKILL: nothing is released explicitly; the child's leases lapse, no longer renewed.
    child.kill();
    // The connection admitted is kept open: its lease is the one that must remain.
    let _admitted = test_utils::poll(
        DEADLINE,
        "killed instance's counts expired",
        std::time::Duration::from_millis(20),
        || async { subscribe(survivor.local_addr(), "/").await.ok() },
    )
    .await;
    // Only the survivor's lease is live: the killed instance's lapsed.
    let keys = survivor.limiter().redis_keys().unwrap().clone();
    let live = live_leases(&mut redis.conn().await, &keys.ip("127.0.0.1")).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(keys.owns(&live[0]), "{live:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fail_open_admits_with_local_limits() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "2");
    flags.extend([
        "--redis-failure-policy",
        "open",
        "--redis-timeout-ms",
        "300",
    ]);
    let p = start_proxy(&[&up], &flags).await;
    let _c1 = subscribe(p.local_addr(), "/").await.unwrap();
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 1);
    redis.kill();
    // Admitted, but the per-IP limit is still enforced locally.
    let _c2 = subscribe(p.local_addr(), "/").await.unwrap();
    let _c3 = subscribe(p.local_addr(), "/").await.unwrap();
    let r = subscribe(p.local_addr(), "/").await.unwrap_err();
    assert_eq!(r.status, 429);
    assert!(
        metric(
            &p.metrics().render(),
            "flashblocks_proxy_redis_errors_total"
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fail_closed_rejects_with_503() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "2");
    flags.extend([
        "--redis-failure-policy",
        "closed",
        "--redis-timeout-ms",
        "300",
    ]);
    let p = start_proxy(&[&up], &flags).await;
    let _c1 = subscribe(p.local_addr(), "/").await.unwrap();
    redis.kill();
    let r = subscribe(p.local_addr(), "/").await.unwrap_err();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("unavailable"), "{}", r.body);
    assert_eq!(
        metric(
            &p.metrics().render(),
            "flashblocks_proxy_rate_limited_total{reason=\"limiter_unavailable\"}"
        ),
        1.0
    );
    // The refused connection holds no instance slot.
    assert_eq!(p.limiter().active(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_after_outage_shares_limits_again() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "1");
    flags.extend([
        "--redis-failure-policy",
        "closed",
        "--redis-timeout-ms",
        "300",
    ]);
    let a = start_proxy(&[&up], &flags).await;
    let b = start_proxy(&[&up], &flags).await;
    redis.kill();
    assert_eq!(
        subscribe(a.local_addr(), "/").await.unwrap_err().status,
        503
    );
    let _redis = RedisServer::start_on(port).await;
    // The connection manager reconnects on its own; the limit is shared again.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let _held = loop {
        match subscribe(a.local_addr(), "/").await {
            Ok(ws) => break ws,
            Err(r) => assert!(
                tokio::time::Instant::now() < deadline,
                "redis never usable again: {}",
                r.status
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // B's connection manager reconnects on its own schedule: 503 until then, then 429.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let r = loop {
        let r = subscribe(b.local_addr(), "/").await.unwrap_err();
        if r.status != 503 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(r.status, 429);
    assert!(r.body.contains("per-ip"), "{}", r.body);
}

/// `--per-ip-connection-limit 0` is no per-IP limit (websocket-proxy's meaning), in memory and
/// through Redis; the instance limit still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_zero_means_no_limit() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut redis_flags = redis_flags(&url, "0");
    redis_flags.extend(["--instance-connection-limit", "12"]);
    let in_memory = [
        "--per-ip-connection-limit",
        "0",
        "--instance-connection-limit",
        "12",
    ];
    for (what, flags) in [("memory", &in_memory[..]), ("redis", &redis_flags[..])] {
        let p = start_proxy(&[&up], flags).await;
        let mut held = Vec::new();
        for i in 0..12 {
            let ws = subscribe(p.local_addr(), "/")
                .await
                .unwrap_or_else(|r| panic!("{what}: subscriber {i} refused: {r:?}"));
            held.push(ws);
        }
        let r = subscribe(p.local_addr(), "/").await.unwrap_err();
        assert_eq!(r.status, 429, "{what}");
        assert!(r.body.contains("instance"), "{what}: {}", r.body);
    }
}

/// Redis stalls writes (`CLIENT PAUSE WRITE`, as during a failover) past `--redis-timeout-ms`:
/// the proxy refuses the connection (503 under `closed`), but Redis applies the acquisition once
/// the pause ends. That count has no connection behind it; it must be released, not kept alive
/// by the heartbeat (the lease would only lapse after the default 30 s, far beyond this wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisition_applied_after_a_timeout_is_released() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "1");
    flags.extend([
        "--redis-failure-policy",
        "closed",
        "--redis-timeout-ms",
        "200",
    ]);
    let p = start_proxy(&[&up], &flags).await;

    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1000)
        .arg("WRITE")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let r = subscribe(p.local_addr(), "/").await.unwrap_err();
    assert_eq!(r.status, 503, "{}", r.body);
    // Every 503 is an acquisition that got no answer in time (retries during the pause too).
    let mut timed_out = 1;

    // Once the pause is over the only IP slot must be free again.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let _held = loop {
        match subscribe(p.local_addr(), "/").await {
            Ok(ws) => break ws,
            Err(r) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the stalled acquisition's count was never released: {} {}",
                    r.status,
                    r.body
                );
                timed_out += usize::from(r.status == 503);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Each timed-out acquisition was undone (its token removed) exactly once; the releases'
    // own answers may come after the admission above.
    eventually(
        DEADLINE,
        "every timed-out acquisition counted as undone",
        || async {
            metric(
                &p.metrics().render(),
                "flashblocks_proxy_redis_leases_recovered_total",
            ) == timed_out as f64
        },
    )
    .await;
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 1);
    let r = subscribe(p.local_addr(), "/").await.unwrap_err();
    assert_eq!(r.status, 429, "the limit still holds: {}", r.body);
}

/// The whole server stalls (`DEBUG SLEEP`) past the timeout, many times in a row, while
/// subscribers come and go under `open` (admitted on local limits meanwhile): every late
/// acquisition is undone, and afterwards the shared per-IP limit of 2 admits exactly 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_do_not_drift_over_many_stalled_acquisitions() {
    const STALLS: usize = 6;
    let redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "2");
    flags.extend([
        "--redis-failure-policy",
        "open",
        "--redis-timeout-ms",
        "150",
    ]);
    let p = start_proxy(&[&up], &flags).await;
    let other = start_proxy(&[&up], &flags).await;
    let _steady = subscribe(other.local_addr(), "/").await.unwrap();

    for i in 0..STALLS {
        // Both connected before the stall (a connect during it would wait it out); the sleeping
        // one waits longer than the client's default 500 ms response timeout.
        let probe = redis.conn().await;
        let mut stalled = redis.conn().await;
        stalled.set_response_timeout(std::time::Duration::from_secs(5));
        let sleep = tokio::spawn(async move {
            let _: () = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("0.6")
                .query_async(&mut stalled)
                .await
                .unwrap();
        });
        // The acquisition must reach the server after DEBUG SLEEP: wait until PING stalls.
        eventually(DEADLINE, "redis stalled by DEBUG SLEEP", || {
            let mut probe = probe.clone();
            async move {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut probe);
                tokio::time::timeout(std::time::Duration::from_millis(40), ping)
                    .await
                    .is_err()
            }
        })
        .await;
        drop(probe);
        let ws = subscribe(p.local_addr(), "/").await.unwrap();
        drop(ws);
        sleep.await.unwrap();
        eventually(DEADLINE, "the late acquisition was released", || async {
            metric(
                &p.metrics().render(),
                "flashblocks_proxy_redis_leases_recovered_total",
            ) == (i + 1) as f64
        })
        .await;
    }
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 0);
    assert_eq!(
        metric(&p.metrics().render(), "flashblocks_proxy_redis_leases"),
        0.0
    );
    // One slot is `other`'s, one is left: exactly the configured limit, nothing leaked.
    let _a = subscribe(p.local_addr(), "/").await.unwrap();
    let r = subscribe(p.local_addr(), "/").await.unwrap_err();
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("per-ip"), "{}", r.body);
}

/// The heartbeat renews only the leases of open connections: a connection held for several
/// lease lifetimes stays counted, while a lease of this instance that no connection holds (what
/// a release lost with its connection leaves) lapses on its own and frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_renews_only_leases_of_open_connections() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let up = Upstream::start().await;
    let mut flags = redis_flags(&url, "2");
    flags.extend(["--redis-instance-ttl-ms", "900"]);
    let p = start_proxy(&[&up], &flags).await;
    let keys = p.limiter().redis_keys().unwrap().clone();
    let _open = subscribe(p.local_addr(), "/").await.unwrap();
    // A lease with this instance's id that no connection holds, as fresh as a real one.
    let mut conn = redis.conn().await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let orphan = format!("{}:orphan", keys.id);
    let _: i64 = redis::cmd("ZADD")
        .arg(keys.ip("127.0.0.1"))
        .arg(secs * 1000 + micros / 1000 + 900)
        .arg(&orphan)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 2);
    assert_eq!(
        subscribe(p.local_addr(), "/").await.unwrap_err().status,
        429
    );

    eventually(DEADLINE, "the orphan lease lapsed", || async {
        !live_leases(&mut redis.conn().await, &keys.ip("127.0.0.1"))
            .await
            .contains(&orphan)
    })
    .await;
    let _second = subscribe(p.local_addr(), "/").await.unwrap();
    // Three lease lifetimes later the open connections are still counted.
    tokio::time::sleep(std::time::Duration::from_millis(2700)).await;
    assert_eq!(redis_ip_count(&redis, &p, "127.0.0.1").await, 2);
    assert_eq!(
        subscribe(p.local_addr(), "/").await.unwrap_err().status,
        429
    );
}
