//! `devnet soak`: the whole stack (engine-mux between the local engine and several builders,
//! flashblocks on, flashblocks-rpc, the spammer and a wallet-style client) under a seeded
//! schedule of overlapping faults, checking every invariant while it runs.
//!
//! Alongside it, unless `--no-ha`, the HA pair of `devnet ha` fails over throughout the
//! duration ([`ha`]): fresh pairs one after the other, each with one to three failovers 6–15
//! blocks apart, drawn from the same seed. Both at once on 2 cores: the pair runs at 1 s blocks
//! or slower (the soak's block time when longer), with flashblocks every 200 ms and 5 tx/s, so
//! a failover comes about every 10 s, not every few blocks as in `devnet ha`.

pub mod checks;
pub mod ha;
pub mod report;
pub mod schedule;
pub mod wallet;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::B256;
use futures::StreamExt;
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use tokio::sync::mpsc;

use self::{
    checks::{Checks, SealedBlock},
    report::{Sample, SoakReport},
    schedule::{EventKind, Schedule, ScheduleParams},
    wallet::Wallet,
};
use crate::{
    app::{Devnet, DevnetConfig, DevnetError, DevnetFlashblocks, metric_value},
    chain::{accounts::funded_dev_signers, attributes::SequencerParams},
    node::DriverEvent,
    spammer::{SpammerConfig, start_spammer},
};

/// Frames of engine-mux's stream buffered for the checks before they are dropped (and counted).
const FRAME_BUFFER: usize = 8_192;
/// Blocks of history each devnet engine keeps during a soak.
const HISTORY_BLOCKS: usize = 128;
/// How often `/healthz` is read.
const HEALTH_EVERY: Duration = Duration::from_millis(50);
/// Blocks proposed after the duration ends, with no new transactions, so the last
/// preconfirmations land before the final check.
const DRAIN_BLOCKS: u64 = 4;

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long faults and traffic run.
    pub duration: Duration,
    /// Seed of the fault schedule.
    pub seed: u64,
    /// Slot length.
    pub block_time: Duration,
    /// Builders b1..bN.
    pub builders: usize,
    /// Spammer transactions per second.
    pub tx_rate: f64,
    /// Time between two flashblocks.
    pub flashblocks_interval: Duration,
    /// Time between two wallet transfers.
    pub wallet_every: Duration,
    /// Time between two resource samples.
    pub sample_every: Duration,
    /// Resources are judged after this much time.
    pub warm_up: Duration,
    /// Extra engine-mux flags.
    pub mux_args: Vec<String>,
    /// Print a progress line every this many blocks (0: none).
    pub progress_every: u64,
    /// Run the HA pair's failovers alongside.
    pub ha: bool,
}

impl Default for SoakConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(120),
            seed: 1,
            block_time: Duration::from_millis(500),
            builders: 3,
            tx_rate: 20.0,
            flashblocks_interval: Duration::from_millis(100),
            wallet_every: Duration::from_secs(2),
            sample_every: Duration::from_secs(5),
            warm_up: Duration::from_secs(30),
            mux_args: Vec::new(),
            progress_every: 20,
            ha: true,
        }
    }
}

impl SoakConfig {
    /// The schedule this config draws.
    pub fn schedule(&self) -> Schedule {
        let blocks = (self.duration.as_millis() / self.block_time.as_millis().max(1)) as u64;
        Schedule::draw(
            self.seed,
            ScheduleParams {
                blocks,
                builders: self.builders,
                block_time: self.block_time,
                warm_up: 10,
                // Long enough for a late restart's catch-up and health to settle.
                cool_down: (blocks / 10).clamp(15, 60),
                mean_gap: 5,
                max_len: 20,
            },
        )
    }

    /// The command line that replays this soak.
    pub fn command(&self) -> String {
        format!(
            "cargo run --release -p devnet -- soak --duration {}s --seed {} --block-time {}ms --builders {} --tx-rate {} --flashblocks-interval {}ms{}",
            self.duration.as_secs(),
            self.seed,
            self.block_time.as_millis(),
            self.builders,
            self.tx_rate,
            self.flashblocks_interval.as_millis(),
            if self.ha { "" } else { " --no-ha" }
        )
    }

    /// How the HA pair runs beside this soak, ending with it.
    fn ha_config(&self, started: tokio::time::Instant) -> ha::HaSoakConfig {
        ha::HaSoakConfig {
            seed: self.seed,
            block_time: self.block_time.max(ha::MIN_HA_BLOCK_TIME),
            flashblocks_interval: Duration::from_millis(200),
            tx_rate: 5.0,
            end: started + self.duration,
        }
    }

    /// engine-mux's timeouts scaled to the slot (a hung builder costs a fraction of it).
    fn mux_args(&self) -> Vec<String> {
        let ms = self.block_time.as_millis() as u64;
        let mut args = vec![
            format!("--builder-timeout={}", (ms / 2).clamp(200, 1000)),
            format!("--get-payload-deadline-ms={}", (ms * 3 / 5).clamp(300, 800)),
        ];
        args.extend(self.mux_args.iter().cloned());
        args
    }
}

/// Subscribes to engine-mux's re-published flashblocks, reconnecting when dropped; frames go
/// to `tx` (a full buffer drops the frame and counts it in `dropped`).
fn watch_stream(
    addr: SocketAddr,
    tx: mpsc::Sender<OpFlashblockPayload>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let url = format!("ws://{addr}");
        loop {
            let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (_, mut read) = ws.split();
            while let Some(Ok(msg)) = read.next().await {
                let Ok(text) = msg.to_text() else { continue };
                let Ok(fb) = engine_api::flashblocks::parse(text.as_bytes()) else {
                    continue;
                };
                if tx.is_closed() {
                    return;
                }
                if tx.try_send(fb).is_err() {
                    dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    })
}

/// engine-mux's health report in one line: the local EL and each builder with its state, its
/// part in the last block and its last error.
fn health_evidence(r: &engine_mux::HealthReport) -> String {
    let err = |e: &Option<engine_mux::LastError>| {
        e.as_ref()
            .map_or(String::new(), |e| format!(" last error: {}", e.what))
    };
    let mut out = format!("local {:?}{}", r.local.state, err(&r.local.last_error));
    for b in &r.builders {
        out.push_str(&format!(
            "; {} {:?} (last block {}, head {:?}, behind {:?}){}",
            b.name,
            b.state,
            b.last_outcome,
            b.head,
            b.behind,
            err(&b.last_error)
        ));
    }
    if let Some(p) = &r.pending {
        out.push_str(&format!("; pending {} in {} ms", p.towards, p.in_ms));
    }
    out
}

/// Runs a soak and returns its report.
pub async fn run_soak(config: SoakConfig) -> Result<SoakReport, DevnetError> {
    let schedule = config.schedule();
    let mut devnet = Devnet::start(DevnetConfig {
        block_time: config.block_time,
        // Own spammer and wallet below, on separate accounts.
        tx_rate: 0.0,
        builder_faults: schedule.windows.clone(),
        builders: config.builders,
        mux_args: config.mux_args(),
        flashblocks: Some(DevnetFlashblocks {
            builder_port: 0,
            interval: config.flashblocks_interval,
            mux_port: 0,
            rpc_port: Some(0),
        }),
        // Every engine's history is full well within the warm-up, so what grows after it is
        // not the devnet's chain.
        history_blocks: Some(HISTORY_BLOCKS),
        ..DevnetConfig::default()
    })
    .await?;
    let started = tokio::time::Instant::now();
    let ha_task = config
        .ha
        .then(|| tokio::spawn(ha::run_episodes(config.ha_config(started))));
    let mut signers = funded_dev_signers(&devnet.local.engine.head_state())?;
    let wallet_signer = signers.remove(0);
    let mux_url: http::Uri = format!("http://{}", devnet.mux.rpc_addr)
        .parse()
        .map_err(|e: http::uri::InvalidUri| DevnetError::Config(e.to_string()))?;
    let spammer = start_spammer(
        SpammerConfig {
            rpc_url: mux_url,
            jwt: Some(devnet.jwt),
            rate: config.tx_rate,
            chain_id: devnet.spec.chain_id,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000,
            call_timeout: Duration::from_secs(2),
        },
        signers,
    );
    let rpc_url: http::Uri = devnet
        .flashblocks_rpc
        .as_ref()
        .ok_or_else(|| DevnetError::Config("flashblocks-rpc not started".into()))?
        .http_url()
        .parse()
        .map_err(|e: http::uri::InvalidUri| DevnetError::Config(e.to_string()))?;
    let wallet = Wallet::start(rpc_url, wallet_signer, config.wallet_every);
    let stream = devnet
        .mux
        .flashblocks_addr
        .ok_or_else(|| DevnetError::Config("engine-mux publishes no flashblocks".into()))?;
    let (frames_tx, mut frames) = mpsc::channel(FRAME_BUFFER);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = watch_stream(stream, frames_tx, dropped.clone());

    let mut checks = Checks::new(
        devnet.spec.clone(),
        SequencerParams::default(),
        config.builders,
        schedule.clone(),
    );
    let mut events = devnet.driver.subscribe();
    let mut pending_events = schedule.events.clone();
    pending_events.sort_by_key(|e| e.height);
    let mut pending_events = std::collections::VecDeque::from(pending_events);
    let mut health_tick = tokio::time::interval(HEALTH_EVERY);
    let mut sample_tick = tokio::time::interval(config.sample_every);
    let mut samples = Vec::new();
    let mut height = 0u64;
    let mut restarts = (0u64, 0u64);
    // engine-mux's count of blocks proposed from each builder's payload, as last read.
    let mut proposed_by = vec![0u64; config.builders];
    let end = started + config.duration;
    let mut wallet = Some(wallet);
    let mut wallet_landed = std::collections::HashSet::new();
    let mut spammer = Some(spammer);
    let mut wallet_stats = None;
    let mut spammer_stats = None;
    let mut drained_from: Option<u64> = None;
    loop {
        tokio::select! {
            Some(fb) = frames.recv() => checks.flashblock(&fb),
            _ = health_tick.tick() => {
                if checks.health(devnet.mux.health().code(), started.elapsed(), height) {
                    checks.attach_evidence(health_evidence(&devnet.mux.health_report()));
                }
            }
            _ = sample_tick.tick() => samples.push(Sample::now(started.elapsed())),
            _ = tokio::time::sleep_until(end), if drained_from.is_none() => {
                // Traffic stops; a few more blocks let the last preconfirmations land.
                if let Some(w) = wallet.take() {
                    wallet_stats = Some(w.stop().await);
                }
                if let Some(s) = spammer.take() {
                    spammer_stats = Some(s.stats.clone());
                    s.stop().await;
                }
                drained_from = Some(height);
            }
            event = events.recv() => match event {
                Ok(DriverEvent::Proposed(b)) => {
                    // Frames already delivered belong to this block or earlier ones.
                    while let Ok(fb) = frames.try_recv() {
                        checks.flashblock(&fb);
                    }
                    let engine = devnet.local.engine.clone();
                    let sealed = SealedBlock::from_local(&engine, b.hash);
                    checks.proposed(b.number, b.hash, b.timestamp, sealed, |t| landed(&engine, t));
                    // Whose payload it was, by engine-mux's count (builders build the same
                    // block from the same pool, so the hash cannot tell them apart).
                    let text = devnet.mux.metrics_text();
                    for (i, seen) in proposed_by.iter_mut().enumerate() {
                        let name = crate::app::builder_name(i + 1);
                        let now = metric_value(
                            &text,
                            "engine_mux_builder_blocks_total",
                            &[("builder", name.as_str()), ("outcome", "proposed")],
                        ) as u64;
                        if now > *seen {
                            *seen = now;
                            checks.builder_proposed(i + 1, b.number);
                        }
                    }
                    // Looked up while the engine still indexes the block they landed in (its
                    // history is bounded).
                    if let Some(w) = &wallet {
                        for h in w.stats.hashes() {
                            if !wallet_landed.contains(&h) && landed(&engine, &h).is_some() {
                                wallet_landed.insert(h);
                            }
                        }
                    }
                    height = b.number;
                    if config.progress_every > 0 && b.number % config.progress_every == 0 {
                        let f = &checks.findings;
                        eprintln!(
                            "soak {:>5.0}s block {:>5} health {} missed {} wrong {} preconfirmed {} lost {} out-of-order {} health changes {} (unexplained {})",
                            started.elapsed().as_secs_f64(), b.number, devnet.mux.health().code(),
                            f.missed_count, f.wrong_block_count, f.preconfirmed, f.lost_count,
                            f.out_of_order_count, f.health.len(), f.unexplained_health()
                        );
                    }
                    while pending_events.front().is_some_and(|e| e.height <= b.number + 1) {
                        let Some(e) = pending_events.pop_front() else { break };
                        match e.kind {
                            // From genesis while the local EL still holds every block to
                            // catch it up from (its history is bounded); later as a process
                            // restart with its database, as a builder that lost it would sync
                            // from peers, which the devnet has none of.
                            EventKind::RestartBuilder(n) if (e.height as usize) < HISTORY_BLOCKS / 2 => {
                                tracing::info!(builder = n, height = e.height, "soak: restarting builder from genesis");
                                devnet.restart_builder(n).await?;
                                restarts.0 += 1;
                            }
                            EventKind::RestartBuilder(n) => {
                                tracing::info!(builder = n, height = e.height, "soak: restarting builder, chain kept");
                                devnet.restart_builder_keeping_chain(n).await?;
                                restarts.0 += 1;
                            }
                            EventKind::RestartLocal => {
                                tracing::info!(height = e.height, "soak: restarting the local EL");
                                checks.local_restarted(started.elapsed());
                                devnet.restart_local().await?;
                                restarts.1 += 1;
                            }
                        }
                    }
                    if drained_from.is_some_and(|h| b.number >= h + DRAIN_BLOCKS) {
                        break;
                    }
                }
                Ok(DriverEvent::Missed { number, reason }) => checks.missed(number, &reason),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    checks.missed(height + 1, &format!("checker lagged {n} driver events"));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }
    samples.push(Sample::now(started.elapsed()));
    watcher.abort();
    let engine = devnet.local.engine.clone();
    let findings = checks.finish(|t| landed(&engine, t)).clone();
    let wallet_stats = wallet_stats.unwrap_or_default();
    let wallet_hashes = wallet_stats.hashes();
    let wallet_landed = wallet_hashes
        .iter()
        .filter(|h| wallet_landed.contains(*h) || landed(&engine, h).is_some())
        .count() as u64;
    let spammer_stats = spammer_stats.unwrap_or_default();
    let metrics = devnet.mux.metrics_text();
    let sources = (
        metric_value(
            &metrics,
            "engine_mux_blocks_proposed_total",
            &[("source", "builder")],
        ) as u64,
        metric_value(
            &metrics,
            "engine_mux_blocks_proposed_total",
            &[("source", "local")],
        ) as u64,
    );
    devnet.stop().await;
    // The last episode was drawn to end with the duration.
    let ha = match ha_task {
        Some(task) => Some(task.await.unwrap_or_else(|e| ha::HaTally {
            errors: vec![format!("HA task: {e}")],
            ..Default::default()
        })),
        None => None,
    };
    let elapsed = started.elapsed();
    use std::sync::atomic::Ordering::Relaxed;
    Ok(SoakReport {
        seed: config.seed,
        command: config.command(),
        elapsed,
        schedule: schedule.lines(),
        findings,
        samples,
        warm_up: config.warm_up,
        spammer: (
            spammer_stats.sent.load(Relaxed),
            spammer_stats.failed.load(Relaxed),
        ),
        wallet: (
            wallet_stats.sent.load(Relaxed),
            wallet_landed,
            wallet_stats.failed.load(Relaxed),
        ),
        sources,
        restarts,
        frames_dropped: dropped.load(Relaxed),
        ha,
    })
}

/// The local EL block number a transaction is in.
fn landed(engine: &crate::engine::Engine, tx: &B256) -> Option<u64> {
    engine.with_chain(|c| c.transaction(tx).map(|(b, _)| b.number()))
}

/// `devnet soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long faults and traffic run (`2m`, `30m`, `90s`).
    #[arg(long, default_value = "2m", value_parser = crate::app::args::parse_duration)]
    pub duration: Duration,
    /// Seed of the fault schedule (the report prints it; the same seed replays the schedule).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Slot length.
    #[arg(long, default_value = "500ms", value_parser = crate::app::args::parse_duration)]
    pub block_time: Duration,
    /// Builder engines (b1..bN).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub builders: u16,
    /// Spammer transactions per second.
    #[arg(long, default_value_t = 20.0)]
    pub tx_rate: f64,
    /// Time between two flashblocks of one block.
    #[arg(long, default_value = "100ms", value_parser = crate::app::args::parse_duration)]
    pub flashblocks_interval: Duration,
    /// Time between two resource samples.
    #[arg(long, default_value = "5s", value_parser = crate::app::args::parse_duration)]
    pub sample_every: Duration,
    /// Resources are judged after this much time (default: once the engines' bounded caches
    /// are full, 128 blocks, but at least a quarter and at most half of the run, 5 min at most).
    #[arg(long, value_parser = crate::app::args::parse_duration)]
    pub warm_up: Option<Duration>,
    /// Extra engine-mux flags; repeatable.
    #[arg(long = "mux-arg", allow_hyphen_values = true)]
    pub mux_args: Vec<String>,
    /// Without the HA pair's failovers alongside.
    #[arg(long)]
    pub no_ha: bool,
}

/// Resources are judged once the engines' bounded caches are full: their post-states and
/// built blocks fill within [`crate::engine::jobs::MAX_BUILT_STATES`] blocks (plus engine-mux's
/// recent payloads, as many by default). A quarter of the run at least, half at most, 5 min at
/// most.
fn default_warm_up(duration: Duration, block_time: Duration) -> Duration {
    let fill = block_time * (2 * crate::engine::jobs::MAX_BUILT_STATES as u32);
    (duration / 4)
        .max(fill)
        .min(duration / 2)
        .min(Duration::from_secs(300))
}

impl From<SoakArgs> for SoakConfig {
    fn from(a: SoakArgs) -> Self {
        Self {
            duration: a.duration,
            seed: a.seed,
            block_time: a.block_time,
            builders: usize::from(a.builders),
            tx_rate: a.tx_rate,
            flashblocks_interval: a.flashblocks_interval,
            sample_every: a.sample_every,
            warm_up: a
                .warm_up
                .unwrap_or_else(|| default_warm_up(a.duration, a.block_time)),
            mux_args: a.mux_args,
            ha: !a.no_ha,
            ..Self::default()
        }
    }
}

/// Runs `devnet soak`: prints the report; fails when an invariant did not hold.
pub async fn run(args: SoakArgs) -> Result<(), crate::app::error::CommandError> {
    let config = SoakConfig::from(args);
    eprintln!(
        "soak: {}s, seed {}, {} builders, {} ms blocks; replay: {}",
        config.duration.as_secs(),
        config.seed,
        config.builders,
        config.block_time.as_millis(),
        config.command()
    );
    let report = run_soak(config).await?;
    println!("{report}");
    if report.passed() {
        Ok(())
    } else {
        Err(crate::app::error::CommandError::Remote(format!(
            "soak failed (seed {}): see the report above",
            report.seed
        )))
    }
}
