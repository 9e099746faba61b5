//! Running `devnet ha`: the set through its failover schedule, and the command's flags.

use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::B256;
use alloy_rpc_types_engine::JwtSecret;

use super::{
    conductor::{Conductor, preconfirmed_of, user_txs},
    config::{FailoverAt, FailoverOutcome, HaConfig, HaRun, STEP_TIMEOUT, Schedule},
    stack::{Shared, import},
};
use crate::{
    app::{
        args::parse_duration,
        error::{CommandError, DevnetError},
        start::{load_genesis, unix_now},
    },
    chain::accounts::funded_dev_signers,
    node::DriverEvent,
};

/// Runs the set through its schedule and returns what each failover did.
pub async fn run_ha(config: HaConfig) -> Result<HaRun, DevnetError> {
    let genesis = load_genesis(None, unix_now(), None)?;
    let signers = funded_dev_signers(&genesis.state)?;
    let fail = |e: String| DevnetError::MuxStart(format!("ha: {e}"));
    // Both outbound ports are chosen first: each engine-mux needs the other's URL.
    let mut ports = [0u16; 2];
    {
        let a = std::net::TcpListener::bind(SocketAddr::new(config.host, 0))
            .map_err(|e| fail(e.to_string()))?;
        let b = std::net::TcpListener::bind(SocketAddr::new(config.host, 0))
            .map_err(|e| fail(e.to_string()))?;
        ports[0] = a.local_addr().map_err(|e| fail(e.to_string()))?.port();
        ports[1] = b.local_addr().map_err(|e| fail(e.to_string()))?.port();
    }
    let seed = match &config.schedule {
        Schedule::Random { seed, .. } => (*seed).max(1),
        Schedule::Fixed(_) => 1,
    };
    let shared = Arc::new(Shared {
        genesis,
        jwt: JwtSecret::random(),
        peer_secret: JwtSecret::random(),
        config,
        signers,
        ports,
    });
    let mut conductor = Conductor {
        stacks: [
            Some(Arc::new(shared.start_stack(0).await?)),
            Some(Arc::new(shared.start_stack(1).await?)),
        ],
        shared: shared.clone(),
        published: Vec::new(),
        rng: seed,
    };
    let count = match &shared.config.schedule {
        Schedule::Fixed(f) => f.len(),
        Schedule::Random { count, .. } => *count,
    };
    let mut term = conductor.begin_term(0, 0).await.map_err(fail)?;
    conductor.start_gossip(&mut term).map_err(fail)?;
    let mut outcomes = Vec::new();
    for i in 0..count {
        let leader = term.leader;
        let head = conductor
            .stack(leader)
            .map_err(fail)?
            .local
            .engine
            .head()
            .number();
        let at = match &shared.config.schedule {
            Schedule::Fixed(f) => f[i],
            Schedule::Random { max_index, .. } => {
                let k = 1 + conductor.next_random() % (*max_index).max(1);
                let n = head + 2 + conductor.next_random() % 2;
                FailoverAt {
                    after_flashblock: k,
                    block: n,
                }
            }
        };
        let (number, index) = conductor.kill_leader(term, at).await.map_err(fail)?;
        let dead_frames = conductor.published.clone();
        // The follower becomes leader; the dead stack comes back empty as the new follower.
        let new_leader = 1 - leader;
        term = conductor
            .begin_term(new_leader, i + 1)
            .await
            .map_err(fail)?;
        let mut events = term.driver.subscribe();
        let restarted = Arc::new(shared.start_stack(leader).await?);
        conductor.stacks[leader] = Some(restarted.clone());
        let leader_stack = conductor.stack(new_leader).map_err(fail)?.clone();
        import(shared.spec(), &leader_stack.local.engine, &restarted)
            .await
            .map_err(fail)?;
        conductor.start_gossip(&mut term).map_err(fail)?;
        // The new leader's block at the interrupted height.
        let sealed = tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match events.recv().await {
                    Ok(DriverEvent::Proposed(b)) if b.number >= number => return Ok(b.number),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return Err("the new leader's op-node stopped".to_string()),
                }
            }
        })
        .await
        .map_err(|_| {
            fail(format!(
                "block {number} not sealed by the new leader in time"
            ))
        })?
        .map_err(fail)?;
        let _ = sealed;
        let preconfirmed = preconfirmed_of(&dead_frames, number);
        let engine = &leader_stack.local.engine;
        let new_block = engine
            .with_chain(|c| c.canonical_block(number))
            .map(|b| user_txs(&b))
            .unwrap_or_default();
        let in_block: HashSet<B256> = new_block.iter().copied().collect();
        let carried = preconfirmed
            .iter()
            .filter(|h| in_block.contains(*h))
            .count();
        let lost: Vec<B256> = preconfirmed
            .iter()
            .filter(|h| engine.with_chain(|c| c.transaction(h)).is_none())
            .copied()
            .collect();
        let outcome = FailoverOutcome {
            block: number,
            after_flashblock: index,
            dead: ["a", "b"][leader],
            leader: ["a", "b"][new_leader],
            preconfirmed,
            new_block,
            carried,
            lost,
        };
        if shared.config.print {
            println!(
                "failover {}: stack {} died after flashblock {} of block {}; stack {} leads (op-conductor stand-in): preconfirmed {}, carried over {}, lost {}",
                i + 1,
                outcome.dead,
                outcome.after_flashblock,
                outcome.block,
                outcome.leader,
                outcome.preconfirmed.len(),
                outcome.carried,
                outcome.lost.len()
            );
        }
        outcomes.push(outcome);
    }
    // Let the last leader seal the block in progress, then look at the whole chain.
    tokio::time::sleep(shared.config.block_time).await;
    if let Some(s) = &term.spammer {
        s.pause();
    }
    term.driver.stop().await;
    if let Some(g) = &term.gossip {
        g.abort();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    term.watcher.task.abort();
    conductor.published.extend(term.watcher.frames());
    let leader = conductor.stack(term.leader).map_err(fail)?.clone();
    let engine = &leader.local.engine;
    let mut seen = HashSet::new();
    let published: Vec<B256> = conductor
        .published
        .iter()
        .flat_map(|f| f.diff.transactions.iter())
        .filter(|raw| raw.first() != Some(&0x7e))
        .map(alloy_primitives::keccak256)
        .filter(|h| seen.insert(*h))
        .collect();
    let missing = published
        .iter()
        .filter(|h| engine.with_chain(|c| c.transaction(h)).is_none())
        .copied()
        .collect();
    let head = engine.head().number();
    let metrics = conductor
        .stacks
        .iter()
        .flatten()
        .map(|s| s.mux.metrics_text())
        .collect();
    for stack in conductor.stacks.iter_mut() {
        if let Some(s) = stack.take().and_then(|s| Arc::try_unwrap(s).ok()) {
            s.mux.shutdown().await;
            s.builder.stop().await;
            s.local.stop().await;
        }
    }
    Ok(HaRun {
        failovers: outcomes,
        published,
        missing,
        head,
        metrics,
    })
}

/// `devnet ha`.
#[derive(Debug, Clone, clap::Args)]
pub struct HaArgs {
    /// Slot length (`250ms`, `1s`, ...).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Time between two flashblocks of one block.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub flashblocks_interval: Duration,
    /// Spammer transactions per second, sent to the current leader.
    #[arg(long, default_value_t = 10.0)]
    pub tx_rate: f64,
    /// A failover `K@N`: after flashblock K of block N the leader's stack dies and the follower
    /// becomes leader; repeatable (heights increasing). Without any, --random-failovers.
    #[arg(long = "failover", value_name = "K@N")]
    pub failovers: Vec<FailoverAt>,
    /// That many failovers at random flashblock indices, 2–3 blocks into each leader's term.
    #[arg(long, default_value_t = 5)]
    pub random_failovers: usize,
    /// Seed of the random schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run without `--flashblocks-peer-url` (what a failover costs without the feature).
    #[arg(long)]
    pub no_carry_over: bool,
    /// Extra engine-mux flags for both stacks, e.g. `--mux-arg=--log-level --mux-arg=debug`.
    #[arg(long = "mux-arg", allow_hyphen_values = true)]
    pub mux_args: Vec<String>,
}

/// `devnet ha`: runs the schedule, printing a line per failover and a summary.
pub async fn run(args: HaArgs) -> Result<(), CommandError> {
    let max_index = (args.block_time.as_nanos() / args.flashblocks_interval.as_nanos().max(1))
        .saturating_sub(2)
        .max(1) as u64;
    let config = HaConfig {
        block_time: args.block_time,
        flashblocks_interval: args.flashblocks_interval,
        tx_rate: args.tx_rate,
        schedule: if args.failovers.is_empty() {
            Schedule::Random {
                count: args.random_failovers,
                seed: args.seed,
                max_index,
            }
        } else {
            Schedule::Fixed(args.failovers)
        },
        carry_over: !args.no_carry_over,
        mux_args: args.mux_args,
        ..HaConfig::default()
    };
    let run = run_ha(config).await?;
    let preconfirmed: usize = run.failovers.iter().map(|f| f.preconfirmed.len()).sum();
    let carried: usize = run.failovers.iter().map(|f| f.carried).sum();
    let lost: usize = run.failovers.iter().map(|f| f.lost.len()).sum();
    println!(
        "{} failovers up to block {}: preconfirmed {preconfirmed} in interrupted blocks, carried over {carried}, lost {lost}; {} of {} published transactions missing from the chain",
        run.failovers.len(),
        run.head,
        run.missing.len(),
        run.published.len()
    );
    Ok(())
}
