//! Per-method latency op-node sees calling a zero-latency mock engine directly and through
//! engine-mux, in the same run, with 100-transaction payloads. When a rollup-boost binary is
//! available (`ROLLUP_BOOST=/path/to/rollup-boost`, or `rollup-boost` on `PATH`, e.g. from
//! `cargo install rollup-boost --version 0.7.13`), it is driven in the same run against the same
//! mocks, and the ratio of the latency each sidecar adds per block is printed.
//!
//! With `SEVERAL_BUILDERS=1`, a second engine-mux instance with three zero-latency mock builders
//! (the first builder plus two `--extra-builder`s) is driven in the same run, and its getPayload
//! is compared with the one-builder instance's (the several-builders target: p99 with three within 10 % of one).
//! `BUILDER_POLICY=priority` runs that instance under `--builder-policy priority`.
//!
//! With `PREVALIDATE=1`, one more engine-mux instance validates the builder's block before
//! op-node asks (`--prevalidate-lead-ms 5000`: the mocks' slots end within a second, so the
//! early work starts a millisecond after the FCU is answered), and every path pauses `PAUSE_US`
//! (4000) between the FCU and getPayload, as op-node waits for the slot; the pause is not timed.
//! The other engine-mux instances run with `--prevalidate-builder-payload=false`. With both
//! variables set, a fourth instance has the three builders and pre-validates, and its getPayload
//! is compared with the one-builder pre-validated instance's.
//!
//! The same engine-mux instance is also driven in process through its typed handle
//! (`RunningMux::engine()`), and that path is printed beside the HTTP one.
//!
//! Run: `cargo bench -p engine-mux --bench overhead` (set BLOCKS=n to change the sample size).

use std::time::{Duration, Instant};

use clap::Parser;
use engine_api::Upstream;
use engine_mocks::{self as mock_engine, MockEngine, attributes, forkchoice};
use engine_mux::{Args, Config};
use serde_json::{Value, json};

#[derive(Default)]
struct Samples {
    fcu: Vec<Duration>,
    get: Vec<Duration>,
    new: Vec<Duration>,
    fcu_plain: Vec<Duration>,
    chain_id: Vec<Duration>,
}

async fn timed<T>(v: &mut Vec<Duration>, f: impl Future<Output = T>) -> T {
    let t = Instant::now();
    let out = f.await;
    v.push(t.elapsed());
    out
}

async fn drive(c: &Upstream, blocks: usize, pause: Duration, s: &mut Samples) {
    let t = c.timeout();
    for _ in 0..blocks {
        let fcu: Value = timed(
            &mut s.fcu,
            c.call(
                "engine_forkchoiceUpdatedV3",
                &json!([forkchoice(1), attributes(false)]),
                t,
            ),
        )
        .await
        .unwrap();
        let id = fcu["payloadId"].clone();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let env: Value = timed(&mut s.get, c.call("engine_getPayloadV3", &json!([id]), t))
            .await
            .unwrap();
        let params = json!([env["executionPayload"], [], env["parentBeaconBlockRoot"]]);
        let _: Value = timed(&mut s.new, c.call("engine_newPayloadV3", &params, t))
            .await
            .unwrap();
        let _: Value = timed(
            &mut s.fcu_plain,
            c.call(
                "engine_forkchoiceUpdatedV3",
                &json!([forkchoice(1), null]),
                t,
            ),
        )
        .await
        .unwrap();
        let _: Value = timed(&mut s.chain_id, c.call("eth_chainId", &json!([]), t))
            .await
            .unwrap();
    }
}

/// [`drive`] through engine-mux's in-process handle (`RunningMux::engine()`): the same calls,
/// typed, without HTTP or op-node's JWT between the caller and the multiplexer.
async fn drive_embedded(
    e: &engine_mux::embed::EngineHandle,
    blocks: usize,
    pause: Duration,
    s: &mut Samples,
) {
    let state = || serde_json::from_value(forkchoice(1)).unwrap();
    for _ in 0..blocks {
        let attrs = serde_json::from_value(attributes(false)).unwrap();
        let fcu = timed(&mut s.fcu, e.fork_choice_updated_v3(state(), Some(attrs)))
            .await
            .unwrap();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let env = timed(&mut s.get, e.get_payload_v3(fcu.payload_id.unwrap()))
            .await
            .unwrap();
        let _ = timed(
            &mut s.new,
            e.new_payload_v3(env.execution_payload, vec![], env.parent_beacon_block_root),
        )
        .await
        .unwrap();
        let _ = timed(&mut s.fcu_plain, e.fork_choice_updated_v3(state(), None))
            .await
            .unwrap();
        let _ = timed(&mut s.chain_id, e.call("eth_chainId", json!([])))
            .await
            .unwrap();
    }
}

/// getPayload with three builders against one, at p50 and p99 (the several-builders measure).
fn builders_ratio(label: &str, one: &mut [Duration], three: &mut [Duration]) {
    for (q, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (pct(one, p), pct(three, p));
        println!(
            "{label} {q}: 1 builder {:.3} ms, 3 builders {:.3} ms, 3 / 1 = {:.2}",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// A rollup-boost binary to compare with, if one is available.
fn rollup_boost_binary() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("ROLLUP_BOOST") {
        return Some(path.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("rollup-boost"))
            .find(|candidate| candidate.is_file())
    })
}

/// rollup-boost between the same mocks, with the flags both sidecars share.
async fn start_rollup_boost(
    binary: &std::path::Path,
    local: &MockEngine,
    builder: &MockEngine,
) -> (std::process::Child, u16) {
    let (rpc, debug, metrics) = (
        test_utils::free_port(),
        test_utils::free_port(),
        test_utils::free_port(),
    );
    let child = std::process::Command::new(binary)
        .args([
            "--l2-url",
            &local.url(),
            "--l2-jwt-token",
            &local.secret_hex(),
        ])
        .args(["--builder-url", &builder.url()])
        .args(["--builder-jwt-token", &builder.secret_hex()])
        .args(["--rpc-port", &rpc.to_string()])
        .args(["--debug-server-port", &debug.to_string()])
        .args(["--metrics-port", &metrics.to_string()])
        .args(["--max-unsafe-interval", "3600"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rollup-boost starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", rpc))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "rollup-boost did not listen on {rpc}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, rpc)
}

/// Latency added per block: the four engine calls op-node makes, each at quantile `p`, summed.
fn added_per_block(direct: &mut Samples, sidecar: &mut Samples, p: f64) -> f64 {
    let calls = |s: &mut Samples| {
        pct(&mut s.fcu, p) + pct(&mut s.get, p) + pct(&mut s.new, p) + pct(&mut s.fcu_plain, p)
    };
    (calls(sidecar).as_secs_f64() - calls(direct).as_secs_f64()) * 1e3
}

fn row(name: &str, direct: &mut [Duration], mux: &mut [Duration]) {
    let (d50, d99, m50, m99) = (
        pct(direct, 0.5),
        pct(direct, 0.99),
        pct(mux, 0.5),
        pct(mux, 0.99),
    );
    println!(
        "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:+.3} |",
        d50.as_secs_f64() * 1e3,
        d99.as_secs_f64() * 1e3,
        m50.as_secs_f64() * 1e3,
        m99.as_secs_f64() * 1e3,
        (m99.as_secs_f64() - d99.as_secs_f64()) * 1e3
    );
}

/// An engine-mux instance between `local` and `builders` (the first is `--builder-url`, the
/// others `--extra-builder`s), with `extra` flags appended.
async fn start_mux(
    local: &MockEngine,
    builders: &[&MockEngine],
    extra: &[String],
) -> engine_mux::RunningMux {
    let mut argv: Vec<String> = [
        "engine-mux",
        "--l2-url",
        &local.url(),
        "--l2-jwt-token",
        &local.secret_hex(),
        "--builder-url",
        &builders[0].url(),
        "--builder-jwt-token",
        &builders[0].secret_hex(),
        "--rpc-port",
        "0",
        "--debug-server-port",
        "0",
        "--max-unsafe-interval",
        "3600",
    ]
    .map(String::from)
    .to_vec();
    for (i, b) in builders.iter().enumerate().skip(1) {
        argv.push("--extra-builder".into());
        argv.push(format!(
            "name=b{},url={},jwt-token={}",
            i + 1,
            b.url(),
            b.secret_hex()
        ));
    }
    argv.extend(extra.iter().cloned());
    let config = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap();
    engine_mux::start(config).await.unwrap()
}

#[tokio::main]
async fn main() {
    let blocks: usize = std::env::var("BLOCKS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(2000);
    let several = std::env::var_os("SEVERAL_BUILDERS").is_some_and(|v| v != "0");
    // The mocks keep a log of calls for the counts printed below, without their params.
    let quiet = || mock_engine::MockOptions {
        skip_params: true,
        ..Default::default()
    };
    let local = MockEngine::start_with("local", 0x03, 0xaa, quiet()).await;
    let builder = MockEngine::start_with("builder", 0x04, 0xbb, quiet()).await;
    let prevalidate = std::env::var_os("PREVALIDATE").is_some_and(|v| v != "0");
    let pause = Duration::from_micros(
        std::env::var("PAUSE_US")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(if prevalidate { 4000 } else { 0 }),
    );
    let off = ["--prevalidate-builder-payload".to_string(), "false".into()];
    let mux = start_mux(&local, &[&builder], &off).await;
    let on = [
        "--prevalidate-builder-payload".to_string(),
        "true".into(),
        "--prevalidate-lead-ms".into(),
        "5000".into(),
    ];
    let mut early_mux = None;
    if prevalidate {
        let m = start_mux(&local, &[&builder], &on).await;
        let client = mock_engine::engine_client(
            &format!("http://{}", m.rpc_addr),
            Some(local.secret),
            Duration::from_secs(5),
        );
        early_mux = Some((m, client));
    }
    // Three zero-latency builders: the same first builder plus two more of the same kind.
    let mut several_mux = None;
    let mut several_early_mux = None;
    if several {
        let b2 = MockEngine::start_with("b2", 0x05, 0xcc, quiet()).await;
        let b3 = MockEngine::start_with("b3", 0x06, 0xdd, quiet()).await;
        // `BUILDER_POLICY=priority` (default: engine-mux's `gas-used`).
        let mut args = off.to_vec();
        if let Ok(policy) = std::env::var("BUILDER_POLICY")
            && !policy.is_empty()
        {
            args.extend(["--builder-policy".to_string(), policy]);
        }
        let m3 = start_mux(&local, &[&builder, &b2, &b3], &args).await;
        let client = mock_engine::engine_client(
            &format!("http://{}", m3.rpc_addr),
            Some(local.secret),
            Duration::from_secs(5),
        );
        if prevalidate {
            let mut args: Vec<String> = args[off.len()..].to_vec();
            args.extend(on.iter().cloned());
            let m = start_mux(&local, &[&builder, &b2, &b3], &args).await;
            let c = mock_engine::engine_client(
                &format!("http://{}", m.rpc_addr),
                Some(local.secret),
                Duration::from_secs(5),
            );
            several_early_mux = Some((m, c));
        }
        several_mux = Some((m3, client, b2, b3));
    }
    let direct =
        mock_engine::engine_client(&local.url(), Some(local.secret), Duration::from_secs(5));
    let through = mock_engine::engine_client(
        &format!("http://{}", mux.rpc_addr),
        Some(local.secret),
        Duration::from_secs(5),
    );

    let boost = match rollup_boost_binary() {
        Some(binary) => {
            let (child, port) = start_rollup_boost(&binary, &local, &builder).await;
            let client = mock_engine::engine_client(
                &format!("http://127.0.0.1:{port}"),
                Some(local.secret),
                Duration::from_secs(5),
            );
            Some((child, client))
        }
        None => {
            println!(
                "(no rollup-boost binary: set ROLLUP_BOOST or put rollup-boost on PATH to compare)"
            );
            None
        }
    };

    // Warm every path (connection pools, allocator), then interleave measured rounds so
    // machine noise hits all of them equally.
    drive(&direct, 200, pause, &mut Samples::default()).await;
    drive(&through, 200, pause, &mut Samples::default()).await;
    let embedded = mux.engine();
    drive_embedded(&embedded, 200, pause, &mut Samples::default()).await;
    if let Some((_, c, ..)) = &several_mux {
        drive(c, 200, pause, &mut Samples::default()).await;
    }
    if let Some((_, c)) = &early_mux {
        drive(c, 200, pause, &mut Samples::default()).await;
    }
    if let Some((_, c)) = &several_early_mux {
        drive(c, 200, pause, &mut Samples::default()).await;
    }
    if let Some((_, rb)) = &boost {
        drive(rb, 200, pause, &mut Samples::default()).await;
    }
    let (mut d, mut m, mut b) = (Samples::default(), Samples::default(), Samples::default());
    let mut em = Samples::default();
    let mut m3 = Samples::default();
    let mut mp = Samples::default();
    let mut mp3 = Samples::default();
    // Builder payloads each sidecar fetched and validated, so the comparison shows both took
    // the builder path (not one of them falling back to the local block).
    let (mut mux_fetched, mut boost_fetched) = (0, 0);
    let fetched = || builder.calls_of("engine_getPayloadV3").len();
    for _ in 0..10 {
        drive(&direct, blocks / 10, pause, &mut d).await;
        let before = fetched();
        drive(&through, blocks / 10, pause, &mut m).await;
        mux_fetched += fetched() - before;
        drive_embedded(&embedded, blocks / 10, pause, &mut em).await;
        if let Some((_, c, ..)) = &several_mux {
            drive(c, blocks / 10, pause, &mut m3).await;
        }
        if let Some((_, c)) = &early_mux {
            drive(c, blocks / 10, pause, &mut mp).await;
        }
        if let Some((_, c)) = &several_early_mux {
            drive(c, blocks / 10, pause, &mut mp3).await;
        }
        if let Some((_, rb)) = &boost {
            let before = fetched();
            drive(rb, blocks / 10, pause, &mut b).await;
            boost_fetched += fetched() - before;
        }
    }
    println!(
        "blocks per path: {blocks}; payload: 100 transactions; builder block validated on the local mock each time"
    );
    println!(
        "| call | direct p50 ms | direct p99 ms | engine-mux p50 ms | engine-mux p99 ms | p99 overhead ms |"
    );
    println!("|---|---|---|---|---|---|");
    row(
        "engine_forkchoiceUpdatedV3 (attributes)",
        &mut d.fcu,
        &mut m.fcu,
    );
    row("engine_getPayloadV3", &mut d.get, &mut m.get);
    row("engine_newPayloadV3", &mut d.new, &mut m.new);
    row(
        "engine_forkchoiceUpdatedV3 (no attributes)",
        &mut d.fcu_plain,
        &mut m.fcu_plain,
    );
    row("eth_chainId (raw proxy)", &mut d.chain_id, &mut m.chain_id);
    println!();
    println!(
        "engine-mux embedded (typed calls on `RunningMux::engine()`, same instance, no HTTP or JWT between caller and multiplexer; the local EL and builder still over HTTP):"
    );
    println!(
        "| call | direct p50 ms | direct p99 ms | embedded p50 ms | embedded p99 ms | p99 overhead ms |"
    );
    println!("|---|---|---|---|---|---|");
    row(
        "engine_forkchoiceUpdatedV3 (attributes)",
        &mut d.fcu,
        &mut em.fcu,
    );
    row("engine_getPayloadV3", &mut d.get, &mut em.get);
    row("engine_newPayloadV3", &mut d.new, &mut em.new);
    row(
        "engine_forkchoiceUpdatedV3 (no attributes)",
        &mut d.fcu_plain,
        &mut em.fcu_plain,
    );
    row("eth_chainId (raw proxy)", &mut d.chain_id, &mut em.chain_id);
    println!(
        "added per block (4 engine calls), p50: HTTP sidecar {:+.3} ms, embedded {:+.3} ms",
        added_per_block(&mut d, &mut m, 0.5),
        added_per_block(&mut d, &mut em, 0.5)
    );
    let rtt = pct(&mut d.chain_id, 0.99);
    println!(
        "one loopback round trip (direct eth_chainId p99): {:.3} ms",
        rtt.as_secs_f64() * 1e3
    );
    println!(
        "blocks proposed from the builder: {}",
        engine_mux::sample(
            &mux.metrics_text(),
            r#"engine_mux_blocks_proposed_total{source="builder"}"#
        )
        .unwrap_or(0.0)
    );
    println!("builder payloads fetched through engine-mux in the measured rounds: {mux_fetched}");
    if let Some((m3mux, _, b2, b3)) = several_mux {
        println!();
        println!(
            "engine-mux with three zero-latency builders, same run (getPayloads b2 / b3 answered: {} / {}; blocks proposed from a builder: {}):",
            b2.calls_of("engine_getPayloadV3").len(),
            b3.calls_of("engine_getPayloadV3").len(),
            engine_mux::sample(
                &m3mux.metrics_text(),
                r#"engine_mux_blocks_proposed_total{source="builder"}"#
            )
            .unwrap_or(0.0)
        );
        println!(
            "| call | direct p50 ms | direct p99 ms | engine-mux (3 builders) p50 ms | engine-mux (3 builders) p99 ms | p99 overhead ms |"
        );
        println!("|---|---|---|---|---|---|");
        row(
            "engine_forkchoiceUpdatedV3 (attributes)",
            &mut d.fcu,
            &mut m3.fcu,
        );
        row("engine_getPayloadV3", &mut d.get, &mut m3.get);
        row("engine_newPayloadV3", &mut d.new, &mut m3.new);
        row(
            "engine_forkchoiceUpdatedV3 (no attributes)",
            &mut d.fcu_plain,
            &mut m3.fcu_plain,
        );
        builders_ratio("getPayload", &mut m.get, &mut m3.get);
        m3mux.shutdown().await;
    }
    if let Some((em, _)) = &early_mux {
        let text = em.metrics_text();
        let count = |series: &str| engine_mux::sample(&text, series).unwrap_or(0.0);
        println!();
        println!(
            "engine-mux validating the builder's block before op-node asks, same run (validated early: {}; getPayloads served from it: {}; blocks proposed from the builder: {}):",
            count(r#"engine_mux_prevalidations_total{builder="builder",outcome="valid"}"#),
            count(r#"engine_mux_prevalidated_get_payloads_total{result="served"}"#),
            count(r#"engine_mux_blocks_proposed_total{source="builder"}"#),
        );
        println!(
            "| call | direct p50 ms | direct p99 ms | engine-mux (pre-validated) p50 ms | engine-mux (pre-validated) p99 ms | p99 overhead ms |"
        );
        println!("|---|---|---|---|---|---|");
        row(
            "engine_forkchoiceUpdatedV3 (attributes)",
            &mut d.fcu,
            &mut mp.fcu,
        );
        row("engine_getPayloadV3", &mut d.get, &mut mp.get);
        row("engine_newPayloadV3", &mut d.new, &mut mp.new);
        row(
            "engine_forkchoiceUpdatedV3 (no attributes)",
            &mut d.fcu_plain,
            &mut mp.fcu_plain,
        );
        row("eth_chainId (raw proxy)", &mut d.chain_id, &mut mp.chain_id);
    }
    if let Some((m, _)) = several_early_mux {
        let text = m.metrics_text();
        println!();
        println!(
            "engine-mux with three builders, pre-validated, same run (getPayloads served from an early validation: {}):",
            engine_mux::sample(
                &text,
                r#"engine_mux_prevalidated_get_payloads_total{result="served"}"#
            )
            .unwrap_or(0.0)
        );
        builders_ratio("pre-validated getPayload", &mut mp.get, &mut mp3.get);
        m.shutdown().await;
    }
    if let Some((mut child, _)) = boost {
        println!();
        println!(
            "rollup-boost, same mocks, same run (builder payloads it fetched in the measured rounds: {boost_fetched}):"
        );
        println!(
            "| call | direct p50 ms | direct p99 ms | rollup-boost p50 ms | rollup-boost p99 ms | p99 overhead ms |"
        );
        println!("|---|---|---|---|---|---|");
        row(
            "engine_forkchoiceUpdatedV3 (attributes)",
            &mut d.fcu,
            &mut b.fcu,
        );
        row("engine_getPayloadV3", &mut d.get, &mut b.get);
        row("engine_newPayloadV3", &mut d.new, &mut b.new);
        row(
            "engine_forkchoiceUpdatedV3 (no attributes)",
            &mut d.fcu_plain,
            &mut b.fcu_plain,
        );
        row("eth_chainId (raw proxy)", &mut d.chain_id, &mut b.chain_id);
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            let ours = added_per_block(&mut d, &mut m, p);
            let theirs = added_per_block(&mut d, &mut b, p);
            println!(
                "whole block (sum of the 4 engine calls' {label}) added: engine-mux {ours:.3} ms, rollup-boost {theirs:.3} ms, ratio {:.2}",
                ours / theirs
            );
            if early_mux.is_some() {
                let early = added_per_block(&mut d, &mut mp, p);
                println!(
                    "whole block (sum of the 4 engine calls' {label}) added: engine-mux pre-validated {early:.3} ms, ratio to rollup-boost {:.2}",
                    early / theirs
                );
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some((em, _)) = early_mux {
        em.shutdown().await;
    }
    mux.shutdown().await;
}
