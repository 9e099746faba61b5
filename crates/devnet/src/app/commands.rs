//! What each `devnet` command does: start components, print status, stop on Ctrl-C.

use std::{sync::Arc, time::Duration};

use engine_api::{Upstream, UpstreamConfig, prometheus::sum as metric_value};
use serde_json::{Value, json};

use super::{
    args::{GenesisArgs, parse_url},
    cli::{AllArgs, BuilderArgs, DriverArgs, EngineArgs, GenesisOutArgs, SpamArgs},
    config::{DevnetConfig, DevnetFlashblocks, DevnetP2p},
    devnet::Devnet,
    error::{CliError, CommandError},
    start::{builder_name, load_genesis, start_engine_on, start_engine_with, unix_now},
    status::SourceTally,
};
use crate::{
    chain::{accounts::funded_dev_signers, attributes::SequencerParams, genesis::GenesisError},
    engine::Role,
    node::{DriverConfig, DriverEvent, start_driver},
    spammer::{SpammerConfig, start_spammer},
};

/// `devnet genesis`: writes the effective genesis JSON and prints its block hash.
pub fn run_genesis(args: GenesisOutArgs) -> Result<(), CommandError> {
    let ts = args.genesis.genesis_timestamp.unwrap_or_else(unix_now);
    let text = match &args.genesis.genesis {
        Some(path) => std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: path.display().to_string(),
            source,
        })?,
        None => crate::chain::genesis::DEFAULT_GENESIS_JSON.to_string(),
    };
    let overrides = crate::chain::genesis::ForkOverrides {
        isthmus_time: args.genesis.isthmus_offset.map(|o| ts + o),
        jovian_time: args.genesis.isthmus_offset.map(|o| ts + o),
    };
    let json = crate::chain::genesis::effective_genesis_json(&text, ts, overrides)?;
    let loaded =
        crate::chain::genesis::load_genesis_str(&json.to_string(), ts, Default::default())?;
    let pretty = serde_json::to_string_pretty(&json).map_err(GenesisError::Parse)?;
    std::fs::write(&args.out, pretty).map_err(|source| CommandError::Write {
        path: args.out.clone(),
        source,
    })?;
    println!(
        "genesis written to {}: hash {} state root {} timestamp {}",
        args.out.display(),
        loaded.header.hash_slow(),
        loaded.header.state_root,
        loaded.header.timestamp
    );
    Ok(())
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs everything in-process and prints one status line per block until Ctrl-C or
/// `--max-blocks`.
pub async fn run_all(args: AllArgs) -> Result<(), CommandError> {
    let devnet = Devnet::start(DevnetConfig {
        genesis: args.genesis.genesis.clone(),
        genesis_timestamp: args.genesis.genesis_timestamp,
        isthmus_offset: args.genesis.isthmus_offset,
        block_time: args.block_time,
        tx_rate: args.tx_rate,
        builder_faults: args.builder_faults.clone(),
        builders: usize::from(args.builders),
        builder_policy: args.builder_policy.clone(),
        max_blocks: args.max_blocks,
        mux_args: args.mux_args.clone(),
        mux_port: args.mux_port,
        flashblocks: (args.flashblocks || args.flashblocks_p2p).then_some(DevnetFlashblocks {
            builder_port: args.builder_flashblocks_port,
            interval: args.flashblocks_interval,
            mux_port: args.flashblocks_port,
            rpc_port: args.flashblocks.then_some(args.flashblocks_rpc_port),
        }),
        flashblocks_p2p: args.flashblocks_p2p.then(DevnetP2p::default),
        embedded_driver: args.embedded_driver,
        ..DevnetConfig::default()
    })
    .await?;
    let builders: Vec<String> = devnet
        .builders()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "{} {} (control: devnet_setFault on {})",
                builder_name(i + 1),
                b.auth_addr,
                b.http_addr
            )
        })
        .collect();
    println!(
        "devnet: chain {} | engine-mux {} (debug {}) | local {} | builders {} | JWT {}",
        devnet.spec.chain_id,
        devnet.mux.rpc_addr,
        devnet.mux.debug_addr,
        devnet.local.auth_addr,
        builders.join(", "),
        hex::encode(devnet.jwt.as_bytes()),
    );
    let first_key = funded_dev_signers(&devnet.local.engine.head_state())
        .ok()
        .and_then(|s| s.into_iter().next())
        .map(|s| format!("0x{}", hex::encode(s.to_bytes())))
        .unwrap_or_default();
    println!(
        "wallet RPC (no auth): http://{} | e.g. cast send --rpc-url http://{} --private-key {first_key} 0x000000000000000000000000000000000000dEaD --value 1ether",
        devnet.mux.rpc_addr, devnet.mux.rpc_addr,
    );
    if let Some(rpc) = &devnet.flashblocks_rpc {
        println!(
            "flashblocks-rpc (pending = preconfirmed state, no auth): {} | e.g. cast balance --rpc-url {} --block pending 0x000000000000000000000000000000000000dEaD",
            rpc.http_url(),
            rpc.http_url(),
        );
    }
    if let Some(out) = devnet.mux.flashblocks_addr {
        let inputs: Vec<String> = devnet
            .builders()
            .filter_map(|b| b.flashblocks_addr)
            .map(|a| format!("ws://{a}"))
            .collect();
        println!(
            "flashblocks: builders {} -> engine-mux -> ws://{out} (every {:?})",
            inputs.join(", "),
            args.flashblocks_interval
        );
    }
    if let (Some(p2p), Some(ws)) = (
        devnet.builder.engine.flashblocks_p2p(),
        devnet.builder.flashblocks_addr,
    ) {
        println!(
            "flashblocks p2p: engine-mux authorizes builder 0x{} per block; the builder publishes authorized payloads on ws://{ws}",
            hex::encode(p2p.builder_vk.as_bytes())
        );
    }
    let mut events = devnet.driver.subscribe();
    let mut sources_before = SourceTally::read(&devnet.mux.metrics_text());
    let mut flashblocks_before = FlashblocksTally::default();
    let status = async {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            let text = devnet.mux.metrics_text();
            let fallbacks = metric_value(&text, "engine_mux_fallbacks_total", &[]) as u64;
            let health = devnet.mux.health().code();
            match event {
                DriverEvent::Proposed(b) => {
                    let sources = SourceTally::read(&text);
                    let source =
                        sources.source_since(&sources_before, &devnet.builders_that_built(&b.hash));
                    sources_before = sources;
                    // The windows covering this height (the live switches already point at
                    // the next block by the time this line prints).
                    let faults: Vec<_> = args
                        .builder_faults
                        .iter()
                        .filter(|w| w.covers(b.number))
                        .map(ToString::to_string)
                        .collect();
                    let faults = if faults.is_empty() {
                        String::new()
                    } else {
                        format!(" faults [{}]", faults.join(", "))
                    };
                    let flashblocks = if devnet.mux.flashblocks_addr.is_some() {
                        let now = FlashblocksTally::read(&text);
                        let line = now.since(&flashblocks_before);
                        flashblocks_before = now;
                        line
                    } else {
                        String::new()
                    };
                    println!(
                        "block {:>5} txs {:>4} gas {:>9} fallbacks {:>3} health {} getPayload {:>4}ms{}{}{} | {source}",
                        b.number,
                        b.tx_count,
                        b.gas_used,
                        fallbacks,
                        health,
                        b.get_payload_latency.as_millis(),
                        flashblocks,
                        if b.v4 { "" } else { " (V3)" },
                        faults,
                    );
                }
                DriverEvent::Missed { number, reason } => {
                    println!(
                        "block {number:>5} MISSED  {reason} (fallbacks {fallbacks}, health {health})"
                    );
                }
            }
        }
    };
    tokio::select! {
        _ = status => {}
        _ = devnet.driver.finished() => {}
        _ = ctrl_c() => println!("stopping"),
    }
    devnet.stop().await;
    Ok(())
}

/// engine-mux's flashblocks counters at one point, for the per-block status column.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlashblocksTally {
    /// Flashblocks behind all blocks so far (`engine_mux_flashblocks_per_block_sum`).
    pub per_block_sum: f64,
    /// Blocks proposed from the builder's own payload / assembled / preserved.
    pub paths: [f64; 3],
    /// FCU-to-first-flashblock delays so far: their sum in seconds and their count.
    pub first_delay: (f64, f64),
    /// Re-published transactions missing from sealed blocks so far.
    pub not_sealed: f64,
}

const FLASHBLOCK_PATHS: [&str; 3] = ["builder_payload", "assembled", "preserved"];

impl FlashblocksTally {
    /// Reads the counters from engine-mux's Prometheus text.
    pub fn read(text: &str) -> Self {
        Self {
            per_block_sum: metric_value(text, "engine_mux_flashblocks_per_block_sum", &[]),
            paths: FLASHBLOCK_PATHS
                .map(|p| metric_value(text, "engine_mux_flashblocks_blocks_total", &[("path", p)])),
            first_delay: (
                metric_value(text, "engine_mux_flashblocks_first_delay_seconds_sum", &[]),
                metric_value(
                    text,
                    "engine_mux_flashblocks_first_delay_seconds_count",
                    &[],
                ),
            ),
            not_sealed: metric_value(text, "engine_mux_preconfirmed_not_sealed_total", &[]),
        }
    }

    /// The status column for the block between `before` and `self`: how many flashblocks
    /// engine-mux held for it at getPayload and, when a builder block was proposed, which path
    /// it took; how long after op-node's FCU the first flashblock came (the mean over the
    /// builders streaming; `-` when none was reported), and how many preconfirmed transactions
    /// the sealed block lacks.
    pub fn since(&self, before: &Self) -> String {
        let count = (self.per_block_sum - before.per_block_sum).max(0.0);
        let path = FLASHBLOCK_PATHS
            .iter()
            .zip(self.paths.iter().zip(before.paths.iter()))
            .find(|(_, (now, then))| now > then)
            .map_or("", |(p, _)| *p);
        let delays = self.first_delay.1 - before.first_delay.1;
        let first = if delays > 0.0 {
            let ms = (self.first_delay.0 - before.first_delay.0) / delays * 1000.0;
            format!("{:>4}ms", ms.round() as u64)
        } else {
            "     -".to_string()
        };
        // Whole transactions; a counter never goes down.
        let not_sealed = (self.not_sealed - before.not_sealed).max(0.0) as u64;
        format!(" flashblocks {count:>2} {path:<15} first {first} unsealed {not_sealed}")
    }
}

fn genesis_for(
    args: &GenesisArgs,
    timestamp: Option<u64>,
) -> Result<crate::chain::genesis::LoadedGenesis, GenesisError> {
    let ts = timestamp
        .or(args.genesis_timestamp)
        .unwrap_or_else(unix_now);
    load_genesis(args.genesis.as_deref(), ts, args.isthmus_offset)
}

/// `devnet engine`: the local engine until Ctrl-C.
pub async fn run_engine(args: EngineArgs) -> Result<(), CommandError> {
    let jwt = args.jwt.resolve()?;
    let genesis = genesis_for(&args.genesis, None)?;
    let ts = genesis.header.timestamp;
    let running = start_engine_on(
        genesis,
        Role::Local,
        args.host,
        args.auth_port,
        args.http_port,
        jwt,
    )
    .await?;
    println!(
        "engine: auth {} http {} genesis {} (timestamp {ts}) JWT {}",
        running.auth_addr,
        running.http_addr,
        running.engine.head().hash,
        hex::encode(jwt.as_bytes())
    );
    ctrl_c().await;
    running.stop().await;
    Ok(())
}

/// `devnet builder`: the builder engine until Ctrl-C.
pub async fn run_builder(args: BuilderArgs) -> Result<(), CommandError> {
    let jwt = args.jwt.resolve()?;
    let genesis = genesis_for(&args.genesis, None)?;
    let listen = crate::engine::rpc::EngineServerConfig {
        auth_addr: std::net::SocketAddr::new(args.host, args.auth_port),
        http_addr: std::net::SocketAddr::new(args.host, args.http_port),
        jwt,
        flashblocks: args.flashblocks_port.map(|port| {
            crate::engine::flashblocks::FlashblocksConfig {
                addr: std::net::SocketAddr::new(args.host, port),
                interval: args.flashblocks_interval,
                // A slot is at most a few seconds; getPayload seals the stream earlier.
                max_per_payload: 64,
            }
        }),
    };
    let running = start_engine_with(genesis, Role::Builder, listen).await?;
    if let Some(addr) = running.flashblocks_addr {
        println!("builder: flashblocks on ws://{addr}");
    }
    for fault in &args.faults {
        running.engine.faults().set(*fault, true);
    }
    println!(
        "builder: auth {} http {} (devnet_setFault) genesis {} JWT {}",
        running.auth_addr,
        running.http_addr,
        running.engine.head().hash,
        hex::encode(jwt.as_bytes())
    );
    ctrl_c().await;
    running.engine.faults().clear();
    running.stop().await;
    Ok(())
}

/// `devnet driver`: the sequencer loop against `--engine-url` until Ctrl-C.
pub async fn run_driver(args: DriverArgs) -> Result<(), CommandError> {
    let jwt = args.jwt.resolve()?;
    let url = parse_url(&args.engine_url)?;
    let client = Upstream::new(UpstreamConfig {
        name: "driver",
        url: url.clone(),
        secret: Some(jwt),
        timeout: Duration::from_secs(5),
        max_response_bytes: 16 * 1024 * 1024,
    });
    // Fork times are relative to genesis: read the engine's genesis timestamp.
    let genesis_block: Value = client
        .call(
            "eth_getBlockByNumber",
            &json!(["0x0", false]),
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| CommandError::Remote(e.to_string()))?;
    let ts = genesis_block
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| CommandError::Remote("engine's block 0 has no timestamp".into()))?;
    let spec = genesis_for(&args.genesis, Some(ts))?.spec;
    let driver = start_driver(
        DriverConfig {
            engine_url: url,
            jwt,
            block_time: args.block_time,
            get_payload_lead: args.block_time / 5,
            call_timeout: Duration::from_secs(2).max(args.block_time),
            params: SequencerParams::default(),
            max_blocks: args.max_blocks,
        },
        spec,
    );
    let mut events = driver.subscribe();
    let print = async {
        while let Ok(event) = events.recv().await {
            match event {
                DriverEvent::Proposed(b) => println!(
                    "block {:>5} {} txs {:>4} gas {:>9} getPayload {:?}",
                    b.number, b.hash, b.tx_count, b.gas_used, b.get_payload_latency
                ),
                DriverEvent::Missed { number, reason } => {
                    println!("block {number:>5} MISSED {reason}")
                }
            }
        }
    };
    tokio::select! {
        _ = print => {}
        _ = driver.finished() => {}
        _ = ctrl_c() => {}
    }
    driver.stop().await;
    Ok(())
}

/// `devnet spam`: transfers from the dev accounts until Ctrl-C.
pub async fn run_spam(args: SpamArgs) -> Result<(), CommandError> {
    let url = parse_url(&args.rpc_url)?;
    let jwt = args
        .jwt_secret
        .as_deref()
        .map(alloy_rpc_types_engine::JwtSecret::from_hex)
        .transpose()
        .map_err(|e| CliError::Jwt(e.to_string()))?;
    let genesis = crate::chain::genesis::default_genesis(0, Default::default())?;
    let signers =
        funded_dev_signers(&genesis.state).map_err(|e| CommandError::Remote(e.to_string()))?;
    let spammer = Arc::new(start_spammer(
        SpammerConfig {
            rpc_url: url,
            jwt,
            rate: args.tx_rate,
            chain_id: args.chain_id,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000,
            call_timeout: Duration::from_secs(2),
        },
        signers,
    ));
    let stats = spammer.stats.clone();
    let report = async {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            println!(
                "spam: sent {} failed {}",
                stats.sent.load(std::sync::atomic::Ordering::Relaxed),
                stats.failed.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    };
    tokio::select! {
        _ = report => {}
        _ = ctrl_c() => {}
    }
    if let Ok(spammer) = Arc::try_unwrap(spammer) {
        spammer.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flashblocks_status_column_is_the_delta_since_the_last_block() {
        let before = FlashblocksTally::read(
            "engine_mux_flashblocks_per_block_sum 8\nengine_mux_flashblocks_blocks_total{path=\"builder_payload\"} 2\n",
        );
        let after = FlashblocksTally::read(
            "engine_mux_flashblocks_per_block_sum 12\nengine_mux_flashblocks_blocks_total{path=\"builder_payload\"} 2\nengine_mux_flashblocks_blocks_total{path=\"preserved\"} 1\n",
        );
        assert_eq!(
            after.since(&before),
            " flashblocks  4 preserved       first      - unsealed 0"
        );
        assert_eq!(
            after.since(&after),
            " flashblocks  0                 first      - unsealed 0"
        );
    }

    #[test]
    fn status_column_shows_the_first_flashblock_delay_and_unsealed_preconfirmations() {
        let before = FlashblocksTally::read(
            "engine_mux_flashblocks_first_delay_seconds_sum{builder=\"b1\"} 1.5\nengine_mux_flashblocks_first_delay_seconds_count{builder=\"b1\"} 6\n",
        );
        let after = FlashblocksTally::read(
            "engine_mux_flashblocks_first_delay_seconds_sum{builder=\"b1\"} 1.712\nengine_mux_flashblocks_first_delay_seconds_count{builder=\"b1\"} 7\nengine_mux_preconfirmed_not_sealed_total{reason=\"invalid\",builder=\"b1\"} 3\n",
        );
        assert_eq!(
            after.since(&before),
            " flashblocks  0                 first  212ms unsealed 3"
        );
    }
}
