//! engine-mux embedded in a node's process, measured against the same engine-mux as a sidecar.
//!
//! One process holds the devnet's local engine as engine-mux's local EL *in process* (engine-mux's
//! `LocalEngine` trait, answered by `InProcessEngine`: no socket, no JWT), a devnet builder as
//! engine-mux's remote builder (over HTTP with JWT, as op-rbuilder would be), one engine-mux, a
//! transaction spammer and the devnet's op-node driver. The driver proposes `--blocks` blocks
//! through engine-mux's typed handle (`RunningMux::engine()`: no HTTP, no JWT between the driver
//! and the multiplexer) and as many through the same instance's RPC port over HTTP with JWT, as
//! op-node calls it, the two paths alternating in `--rounds` rounds. Each block is FCU with attributes → getPayload → newPayload → FCU;
//! the per-call latencies of both paths are printed side by side. `--local-over-http` serves the
//! local engine on a loopback port instead (engine-mux as a sidecar's local EL), to see what the
//! in-process local EL saves.
//!
//! It fails (exit 1) unless every slot proposed a block, every proposed block is the local
//! engine's canonical block at its height, and in each phase some blocks were the builder's.
//!
//! Run: `cargo run --release -p devnet --example embedded -- --blocks 300`

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use alloy_rpc_types_engine::JwtSecret;
use clap::Parser;
use devnet::{
    app::{load_genesis, metric_value, start_engine_on, unix_now},
    chain::{accounts::funded_dev_signers, attributes::SequencerParams},
    engine::{
        Engine, Role,
        in_process::InProcessEngine,
        rpc::{EngineServerConfig, start_engine},
    },
    node::{
        DriverConfig, DriverEngine, DriverEvent, ProposedBlock, SlotCalls, start_driver,
        start_driver_on,
    },
    spammer::{SpammerConfig, start_spammer},
};
use engine_mux::{
    Config, RunningMux,
    config::{BuilderConfig, DEFAULT_L2_TIMEOUT, LocalElConfig},
};

#[derive(Debug, Parser)]
#[command(about = "engine-mux embedded vs as a sidecar: per-call latency on the devnet")]
struct Args {
    /// Blocks per path (embedded and HTTP).
    #[arg(long, default_value_t = 300)]
    blocks: u64,
    /// The paths alternate in this many rounds (embedded, HTTP, embedded, ...), so a chain that
    /// grows or a machine that gets busier weighs on both alike.
    #[arg(long, default_value_t = 10)]
    rounds: u64,
    /// Slot length in milliseconds.
    #[arg(long, default_value_t = 100)]
    block_time_ms: u64,
    /// getPayload is sent this many milliseconds before the slot ends.
    #[arg(long, default_value_t = 20)]
    get_payload_lead_ms: u64,
    /// Transactions per second sent to engine-mux's RPC port (0 = empty blocks).
    #[arg(long, default_value_t = 100.0)]
    tx_rate: f64,
    /// Serve the local engine on a loopback port and give engine-mux its URL (the sidecar's
    /// wiring) instead of the engine itself.
    #[arg(long)]
    local_over_http: bool,
}

/// What one path's blocks showed.
#[derive(Debug, Default)]
struct Phase {
    calls: Vec<SlotCalls>,
    missed: Vec<String>,
    not_canonical: Vec<u64>,
    by_builder: u64,
    txs: usize,
}

/// Why the run failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("setup: {0}")]
    Setup(String),
    #[error("{path}: {what}")]
    Check { path: &'static str, what: String },
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    let setup = |e: &dyn std::fmt::Display| Failure::Setup(e.to_string());
    let genesis = load_genesis(None, unix_now(), None).map_err(|e| setup(&e))?;
    let spec = genesis.spec.clone();
    let signers = funded_dev_signers(&genesis.state).map_err(|e| setup(&e))?;
    let jwt = JwtSecret::random();
    let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let any_port = SocketAddr::new(host, 0);
    let local = Arc::new(Engine::new(genesis.clone(), Role::Local));
    let (local_el, local_server) = if args.local_over_http {
        let listen = EngineServerConfig {
            auth_addr: any_port,
            http_addr: any_port,
            jwt,
            flashblocks: None,
        };
        let server = start_engine(local.clone(), listen)
            .await
            .map_err(|e| setup(&e))?;
        let url = server.auth_url().parse().map_err(|e| setup(&e))?;
        (
            LocalElConfig::http(url, jwt, DEFAULT_L2_TIMEOUT),
            Some(server),
        )
    } else {
        let engine =
            InProcessEngine::new(local.clone(), DEFAULT_L2_TIMEOUT).map_err(|e| setup(&e))?;
        (LocalElConfig::in_process(engine), None)
    };
    let builder = start_engine_on(genesis, Role::Builder, host, 0, 0, jwt)
        .await
        .map_err(|e| setup(&e))?;
    let builder_url = builder.auth_url().parse().map_err(|e| setup(&e))?;
    let config = Config::builder(local_el)
        .builder(BuilderConfig::http(
            "b1",
            builder_url,
            jwt,
            Duration::from_secs(1),
        ))
        .inbound_secret(jwt)
        .rpc_addr(any_port)
        .debug_addr(any_port)
        .build()
        .map_err(|e| setup(&e))?;
    let mux = engine_mux::start(config).await.map_err(|e| setup(&e))?;
    let mux_url: http::Uri = format!("http://{}", mux.rpc_addr)
        .parse()
        .map_err(|e| setup(&e))?;
    let spammer = (args.tx_rate > 0.0).then(|| {
        start_spammer(
            SpammerConfig {
                rpc_url: mux_url.clone(),
                jwt: Some(jwt),
                rate: args.tx_rate,
                chain_id: spec.chain_id,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                call_timeout: Duration::from_secs(2),
            },
            signers,
        )
    });
    let block_time = Duration::from_millis(args.block_time_ms);
    let config = DriverConfig {
        engine_url: mux_url.clone(),
        jwt,
        block_time,
        get_payload_lead: Duration::from_millis(args.get_payload_lead_ms).min(block_time),
        call_timeout: Duration::from_secs(2),
        params: SequencerParams::default(),
        max_blocks: Some(args.blocks / args.rounds.max(1)),
    };
    let blocks = config.max_blocks.unwrap_or_default() * args.rounds.max(1);
    let local_el = if args.local_over_http {
        "over loopback HTTP"
    } else {
        "in process"
    };
    println!(
        "engine-mux embedded vs HTTP: {blocks} blocks each in {} alternating rounds, {} ms slots, {} tx/s; local EL {local_el}, builder over loopback HTTP",
        args.rounds.max(1),
        args.block_time_ms,
        args.tx_rate
    );

    let (mut embedded, mut over_http) = (Phase::default(), Phase::default());
    for _ in 0..args.rounds.max(1) {
        let driver = start_driver_on(
            DriverEngine::Embedded(mux.engine()),
            config.clone(),
            spec.clone(),
        );
        observe(&driver, &local, &builder.engine, &mux, &mut embedded).await;
        driver.join().await;
        let driver = start_driver(config.clone(), spec.clone());
        observe(&driver, &local, &builder.engine, &mux, &mut over_http).await;
        driver.join().await;
    }

    if let Some(s) = spammer {
        s.stop().await;
    }
    report(&embedded, &over_http);
    let verdict =
        check("embedded", &embedded, blocks).and_then(|()| check("HTTP", &over_http, blocks));
    mux.shutdown().await;
    builder.stop().await;
    if let Some(server) = local_server {
        server.stop().await;
    }
    verdict
}

/// Records every slot of `driver` into `phase` until it ends, checking each proposed block against the
/// local engine's canonical chain and the builder's produced blocks as it arrives.
async fn observe(
    driver: &devnet::node::DriverHandle,
    local: &Engine,
    builder: &Engine,
    mux: &RunningMux,
    phase: &mut Phase,
) {
    let builder_blocks = || {
        metric_value(
            &mux.metrics_text(),
            "engine_mux_blocks_proposed_total",
            &[("source", "builder")],
        )
    };
    let before = builder_blocks();
    let mut events = driver.subscribe();
    let by_builder_before = phase.by_builder;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            () = driver.finished() => break,
        };
        match event {
            Ok(DriverEvent::Proposed(block)) => record(phase, &block, local, builder),
            Ok(DriverEvent::Missed { number, reason }) => {
                phase.missed.push(format!("block {number}: {reason}"))
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => phase
                .missed
                .push(format!("{n} driver events lost (lagged)")),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    // Slots that ended together with the driver.
    while let Ok(event) = events.try_recv() {
        if let DriverEvent::Proposed(block) = event {
            record(phase, &block, local, builder);
        }
    }
    let counted = (builder_blocks() - before).max(0.0) as u64;
    // engine-mux's count and the builder engine's own record must agree on who built.
    let produced = phase.by_builder - by_builder_before;
    if counted != produced {
        phase.missed.push(format!(
            "engine-mux counted {counted} builder blocks, the builder engine produced {produced}"
        ));
    }
}

fn record(phase: &mut Phase, block: &ProposedBlock, local: &Engine, builder: &Engine) {
    let canonical = local.with_chain(|chain| chain.canonical_block(block.number).map(|b| b.hash));
    if canonical != Some(block.hash) {
        phase.not_canonical.push(block.number);
    }
    if builder.produced().has_block(&block.hash) {
        phase.by_builder += 1;
    }
    phase.txs += block.tx_count;
    phase.calls.push(block.calls);
}

fn check(path: &'static str, phase: &Phase, blocks: u64) -> Result<(), Failure> {
    let fail = |what: String| Err(Failure::Check { path, what });
    if !phase.missed.is_empty() {
        return fail(format!("missed: {:?}", phase.missed));
    }
    if phase.calls.len() as u64 != blocks {
        return fail(format!(
            "{} blocks proposed, {blocks} wanted",
            phase.calls.len()
        ));
    }
    if !phase.not_canonical.is_empty() {
        return fail(format!(
            "blocks not the local engine's canonical block at their height: {:?}",
            phase.not_canonical
        ));
    }
    if phase.by_builder == 0 {
        return fail("no block was the builder's (all local fallbacks)".into());
    }
    Ok(())
}

/// p50, p99 and max in milliseconds.
fn quantiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(at(0.50)), ms(at(0.99)), ms(v[v.len() - 1]))
}

fn report(embedded: &Phase, over_http: &Phase) {
    type Pick = fn(&SlotCalls) -> Duration;
    let rows: [(&str, Pick); 5] = [
        ("FCU + attributes", |c| c.fcu_attributes),
        ("getPayload", |c| c.get_payload),
        ("newPayload", |c| c.new_payload),
        ("FCU", |c| c.fcu),
        ("whole block (4 calls)", |c| c.total()),
    ];
    for (name, p) in [("embedded", embedded), ("HTTP + JWT", over_http)] {
        println!(
            "{name}: {} blocks, {} by the builder, {} transactions, {} missed",
            p.calls.len(),
            p.by_builder,
            p.txs,
            p.missed.len()
        );
    }
    println!();
    println!(
        "| call | embedded p50 ms | embedded p99 ms | embedded max ms | HTTP p50 ms | HTTP p99 ms | HTTP max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, pick) in rows {
        let (e50, e99, emax) = quantiles(embedded.calls.iter().map(pick).collect());
        let (h50, h99, hmax) = quantiles(over_http.calls.iter().map(pick).collect());
        println!("| {name} | {e50:.3} | {e99:.3} | {emax:.3} | {h50:.3} | {h99:.3} | {hmax:.3} |");
    }
}
