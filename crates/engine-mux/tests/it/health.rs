//! The health contract op-conductor reads: 200 / 206 / 503, and an unhealthy builder is
//! skipped until a probe finds it synced again; the JSON op-conductor's "next" mode reads, the
//! report people get from `/healthz` with `Accept: application/json`, and the tolerance
//! before a builder's failure or recovery shows.

use std::time::Duration;

use serde::Deserialize;

use crate::{
    harness::{Setup, eventually, setup},
    mock_engine::{Fault, now},
};

/// One answer: status code, headers (lower-cased names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A GET as op-conductor's Go client sends it (no `Accept` unless `accept` is given).
async fn get(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept.map_or(String::new(), |a| format!("accept: {a}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\n{accept}connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(buf[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

/// op-conductor's `RollupBoostNextHealthResponse` (op-conductor/client/rollupboost_next.go,
/// optimism monorepo): the two fields its Go decoder reads.
#[derive(Deserialize)]
struct RollupBoostNextHealthResponse {
    version: String,
    rollup_boost_health: String,
}

/// What op-conductor's `RollupBoostNextClient.Healthcheck` makes of an answer: anything but
/// HTTP 200 is an error, then `rollup_boost_health` must be one of its three strings.
async fn conductor_next(s: &Setup) -> Result<String, String> {
    let a = get(s.mux.rpc_addr, "/kona-rollup-boost/healthz", None).await;
    if a.status != 200 {
        return Err(format!("unexpected status code: {}", a.status));
    }
    let p: RollupBoostNextHealthResponse =
        serde_json::from_slice(&a.body).map_err(|e| format!("failed to decode response: {e}"))?;
    assert!(!p.version.is_empty());
    match p.rollup_boost_health.as_str() {
        "Healthy" | "PartialContent" | "ServiceUnavailable" => Ok(p.rollup_boost_health),
        other => Err(format!("unexpected rollup_boost_health: {other:?}")),
    }
}

async fn report(s: &Setup) -> (u16, serde_json::Value) {
    let a = get(s.mux.rpc_addr, "/healthz", Some("application/json")).await;
    assert_eq!(a.header("content-type"), Some("application/json"));
    (a.status, a.json())
}

#[tokio::test]
async fn op_conductor_next_mode_reads_the_same_verdict_as_the_status_code() {
    let s = setup(&[]).await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    assert_eq!(conductor_next(&s).await.as_deref(), Ok("Healthy"));

    s.builder.set_head(100, now() - 60);
    eventually(Duration::from_secs(3), "stale builder → 206", || async {
        s.healthz().await == 206
    })
    .await;
    assert_eq!(
        conductor_next(&s).await.as_deref(),
        Ok("PartialContent"),
        "said in the body, under HTTP 200"
    );

    s.local.down();
    let _ = s
        .call(
            "engine_forkchoiceUpdatedV3",
            serde_json::json!([crate::harness::forkchoice(1), null]),
        )
        .await;
    assert_eq!(s.healthz().await, 503);
    assert_eq!(
        conductor_next(&s).await.as_deref(),
        Ok("ServiceUnavailable")
    );
}

#[tokio::test]
async fn healthz_asked_for_json_explains_a_206_and_the_plain_answer_is_unchanged() {
    let s = setup(&["--health-check-interval", "60"]).await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32000, "no payload"));
    s.block("engine_getPayloadV3").await;

    // What op-conductor's status-code client gets: the code, an empty body, no content type.
    let plain = get(s.mux.rpc_addr, "/healthz", None).await;
    assert_eq!(plain.status, 206);
    assert!(plain.body.is_empty());
    assert_eq!(plain.header("content-type"), None);
    assert_eq!(get(s.mux.rpc_addr, "/healthz", Some("*/*")).await.body, b"");

    let (code, r) = report(&s).await;
    assert_eq!(code, 206, "the same code as the plain answer");
    assert_eq!(r["status"], 206);
    assert_eq!(r["health"], "PartialContent");
    assert_eq!(r["pending"], serde_json::Value::Null);
    assert_eq!(r["execution_mode"]["state"], "enabled");
    assert_eq!(r["execution_mode"]["builders_count"], true);
    assert_eq!(r["local"]["state"], "healthy");
    let head = &r["unsafe_head"];
    assert!(
        head["number"].as_u64().unwrap() >= 100,
        "the local head the probe read: {head}"
    );
    assert!(head["age_s"].as_u64().unwrap() <= 5, "{head}");
    assert_eq!(head["max_age_s"], 5, "the harness's --max-unsafe-interval");
    let b = &r["builders"][0];
    assert_eq!(b["name"], "builder");
    assert_eq!(b["state"], "failing");
    assert_eq!(b["counted"], true);
    assert_eq!(
        b["last_outcome"], "error",
        "the fallback reason that blamed it"
    );
    let failed_at = b["last_block_failure_unix_ms"].as_u64().unwrap();
    assert!(b["since_unix_ms"].as_u64().unwrap() >= failed_at - 1_000);
    assert!(
        b.get("url").is_none(),
        "no builder URL on a port without a JWT"
    );

    s.builder.clear_fault("engine_getPayloadV3");
    s.block("engine_getPayloadV3").await;
    let (code, r) = report(&s).await;
    assert_eq!(code, 200);
    assert_eq!(r["builders"][0]["state"], "healthy");
    assert_eq!(r["builders"][0]["last_outcome"], "proposed");
    assert_eq!(
        r["builders"][0]["last_block_failure_unix_ms"].as_u64(),
        Some(failed_at),
        "the evidence stays on record after it recovers"
    );

    // A local EL that fails says what failed (its call, or the probe that follows it).
    s.local.down();
    let _ = s
        .call(
            "engine_forkchoiceUpdatedV3",
            serde_json::json!([crate::harness::forkchoice(1), null]),
        )
        .await;
    let (code, r) = report(&s).await;
    assert_eq!(code, 503);
    assert_eq!(r["local"]["state"], "failing");
    let what = r["local"]["last_error"]["what"].as_str().unwrap();
    assert!(
        what.contains("engine call failed") || what.starts_with("probe:"),
        "{r}"
    );
    assert!(r["local"]["since_unix_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_builder_failure_shorter_than_the_degrade_tolerance_never_shows_206() {
    let s = setup(&[
        "--health-check-interval",
        "60",
        "--health-degrade-after-ms",
        "2000",
    ])
    .await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32000, "no payload"));
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 200, "failing, but not for 2 s yet");
    let (_, r) = report(&s).await;
    assert_eq!(r["builders"][0]["state"], "failing");
    assert_eq!(r["pending"]["towards"], 206);
    assert!(r["pending"]["in_ms"].as_u64().unwrap() <= 2_000);
    assert_eq!(conductor_next(&s).await.as_deref(), Ok("Healthy"));

    s.builder.clear_fault("engine_getPayloadV3");
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 200);
    // Past the tolerance: the failure was shorter, so it never shows.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(s.healthz().await, 200);
    assert_eq!(report(&s).await.1["pending"], serde_json::Value::Null);

    // One that lasts the tolerance does.
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32000, "no payload"));
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 200);
    eventually(Duration::from_secs(5), "failing for 2 s → 206", || async {
        s.healthz().await == 206
    })
    .await;
}

#[tokio::test]
async fn a_builder_recovery_shorter_than_the_recover_tolerance_keeps_206() {
    let s = setup(&[
        "--health-check-interval",
        "60",
        "--health-recover-after-ms",
        "2000",
    ])
    .await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32000, "no payload"));
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 206, "no degrade tolerance: at once");

    s.builder.clear_fault("engine_getPayloadV3");
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 206, "good again, but not for 2 s yet");
    let (_, r) = report(&s).await;
    assert_eq!(r["builders"][0]["state"], "healthy");
    assert_eq!(r["pending"]["towards"], 200);
    assert_eq!(conductor_next(&s).await.as_deref(), Ok("PartialContent"));

    // Relapses within the tolerance: still 206, the recovery never showed.
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32000, "no payload"));
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 206);

    s.builder.clear_fault("engine_getPayloadV3");
    s.block("engine_getPayloadV3").await;
    eventually(Duration::from_secs(5), "good for 2 s → 200", || async {
        s.healthz().await == 200
    })
    .await;
}

#[tokio::test]
async fn healthy_pair_is_200_and_local_failure_is_503() {
    let s = setup(&[]).await;
    eventually(Duration::from_secs(3), "initial probe → 200", || async {
        s.healthz().await == 200
    })
    .await;
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 200);
    s.local.down();
    assert!(
        s.call(
            "engine_forkchoiceUpdatedV3",
            serde_json::json!([crate::harness::forkchoice(1), null])
        )
        .await
        .is_err()
    );
    assert_eq!(s.healthz().await, 503);
    assert_eq!(
        crate::harness::http_get(s.mux.rpc_addr, "/readyz").await,
        503
    );
    assert_eq!(
        crate::harness::http_get(s.mux.rpc_addr, "/livez").await,
        200
    );
    s.local.up().await;
    eventually(
        Duration::from_secs(5),
        "local back → probe clears 503",
        || async { s.healthz().await == 200 },
    )
    .await;
}

#[tokio::test]
async fn stale_local_head_is_503() {
    let s = setup(&[]).await;
    s.local.set_head(100, now() - 60);
    eventually(Duration::from_secs(3), "stale local head → 503", || async {
        s.healthz().await == 503
    })
    .await;
}

#[tokio::test]
async fn out_of_sync_builder_is_206_skipped_and_used_again_when_synced() {
    let s = setup(&[]).await;
    s.builder.set_head(100, now() - 60);
    eventually(Duration::from_secs(3), "stale builder → 206", || async {
        s.healthz().await == 206
    })
    .await;
    s.builder.clear_calls();
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.local.block_hash(101).to_string());
    assert_eq!(s.fallbacks("skipped_unhealthy"), 1.0);
    assert!(
        s.builder.engine_calls().is_empty(),
        "a skipped builder gets no engine calls: {:?}",
        s.builder.engine_calls()
    );

    s.builder.set_head(101, now());
    // Fast re-probe: back within about a second, not a whole --health-check-interval.
    eventually(Duration::from_secs(2), "synced builder → 200", || async {
        s.healthz().await == 200
    })
    .await;
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(
        hash,
        s.builder.block_hash(102).to_string(),
        "builder blocks again"
    );
}

#[tokio::test]
async fn builder_failing_get_payload_is_206_until_it_delivers() {
    // A long probe interval so only the payload outcomes decide (no probe lands in between).
    let s = setup(&["--health-check-interval", "60"]).await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    s.builder
        .fault("engine_getPayloadV3", Fault::RpcError(-32000, "no payload"));
    s.block("engine_getPayloadV3").await;
    assert_eq!(s.healthz().await, 206);
    s.builder.clear_fault("engine_getPayloadV3");
    let hash = s.block("engine_getPayloadV3").await;
    assert_eq!(hash, s.builder.block_hash(102).to_string());
    assert_eq!(s.healthz().await, 200);
}

#[tokio::test]
async fn a_spec_error_from_the_local_el_is_not_an_outage() {
    let s = setup(&["--health-check-interval", "60"]).await;
    eventually(Duration::from_secs(3), "200 first", || async {
        s.healthz().await == 200
    })
    .await;
    let err = s
        .call(
            "engine_getPayloadV3",
            serde_json::json!(["0x0300000000000bad"]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("-38001"), "{err}");
    assert_eq!(
        s.healthz().await,
        200,
        "unknown payload is the EL answering correctly"
    );
    s.local.fault(
        "engine_newPayloadV3",
        Fault::RpcError(-32603, "database corrupted"),
    );
    let _ = s.call("engine_newPayloadV3", serde_json::json!([{"blockHash": format!("0x{}", "00".repeat(32))}, [], format!("0x{}", "00".repeat(32))])).await;
    assert_eq!(s.healthz().await, 503, "an internal error is");
}
