//! The whole devnet in one process: local engine, builder engines, engine-mux between them, the
//! driver playing op-node against engine-mux, the spammer, and the builder fault schedule.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_rpc_types_engine::JwtSecret;
use engine_mux::RunningMux;

use super::{
    config::DevnetConfig,
    error::DevnetError,
    fault_schedule::{ScheduledBuilders, schedule_faults},
    start::{
        ExtraBuilder, MuxWiring, builder_name, load_genesis, start_engine_on, start_engine_with,
        start_flashblocks_rpc, start_mux_with_builders, unix_now,
    },
};
use crate::{
    chain::{
        accounts::funded_dev_signers,
        attributes::SequencerParams,
        genesis::{ChainSpec, LoadedGenesis},
    },
    engine::{
        Engine, Role,
        flashblocks::FlashblocksConfig,
        rpc::{EngineServerConfig, RunningEngine},
    },
    node::{DriverConfig, DriverEngine, DriverHandle, start_driver, start_driver_on},
    spammer::{SpammerConfig, SpammerHandle, start_spammer},
};

/// A running devnet.
#[derive(Debug)]
pub struct Devnet {
    /// The sequencer's local EL.
    pub local: RunningEngine,
    /// The external builder (b1, the first of `builders`).
    pub builder: RunningEngine,
    /// Builders b2, b3, ... (with `builders > 1`).
    pub extra_builders: Vec<RunningEngine>,
    /// engine-mux between the driver and both engines.
    pub mux: RunningMux,
    /// The op-node stand-in.
    pub driver: DriverHandle,
    /// The transaction spammer, if enabled.
    pub spammer: Option<SpammerHandle>,
    /// flashblocks-rpc answering `pending` from engine-mux's flashblocks, when started.
    pub flashblocks_rpc: Option<flashblocks_rpc::Running>,
    /// The shared JWT secret.
    pub jwt: JwtSecret,
    /// Chain parameters.
    pub spec: ChainSpec,
    faults_task: tokio::task::JoinHandle<()>,
    // The builder engines the fault schedule switches (replaced when one restarts).
    scheduled: ScheduledBuilders,
    // What a restarted builder starts from and where it listens.
    genesis: LoadedGenesis,
    builder_flashblocks: Option<FlashblocksConfig>,
    history_blocks: Option<usize>,
}

impl Devnet {
    /// Starts every component.
    pub async fn start(config: DevnetConfig) -> Result<Self, DevnetError> {
        if config.builders == 0 {
            return Err(DevnetError::Config("--builders must be at least 1".into()));
        }
        if config.builders > 1 && config.flashblocks_p2p.is_some() {
            return Err(DevnetError::Config(
                "flashblocks P2P runs with one builder (--builders 1)".into(),
            ));
        }
        if let Some(w) = config
            .builder_faults
            .iter()
            .find(|w| w.builder.is_some_and(|b| b > config.builders))
        {
            return Err(DevnetError::Config(format!(
                "--builder-fault {w}: there are {} builder(s), b1..b{}",
                config.builders, config.builders
            )));
        }
        let timestamp = config.genesis_timestamp.unwrap_or_else(unix_now);
        let genesis = load_genesis(config.genesis.as_deref(), timestamp, config.isthmus_offset)?;
        let spec = genesis.spec.clone();
        let signers = funded_dev_signers(&genesis.state)?;
        let jwt = JwtSecret::random();
        let host = config.host;
        let local = start_engine_on(genesis.clone(), Role::Local, host, 0, 0, jwt).await?;
        let builder_flashblocks = config.flashblocks.map(|fb| FlashblocksConfig {
            addr: SocketAddr::new(host, fb.builder_port),
            interval: fb.interval,
            max_per_payload: fb.max_per_payload(config.block_time),
        });
        let mut builders = Vec::with_capacity(config.builders);
        for n in 1..=config.builders {
            let flashblocks = builder_flashblocks.map(|mut fb| {
                // b1 on the configured port, the others next to it (or all ephemeral).
                if fb.addr.port() != 0 {
                    fb.addr
                        .set_port(fb.addr.port().saturating_add(n as u16 - 1));
                }
                fb
            });
            let listen = EngineServerConfig {
                auth_addr: SocketAddr::new(host, 0),
                http_addr: SocketAddr::new(host, 0),
                jwt,
                flashblocks,
            };
            builders.push(start_engine_with(genesis.clone(), Role::Builder, listen).await?);
        }
        let mut builders = builders.into_iter();
        let builder = builders.next().expect("at least one builder");
        let extra_builders: Vec<RunningEngine> = builders.collect();
        if let Some(n) = config.history_blocks {
            for e in std::iter::once(&local)
                .chain(std::iter::once(&builder))
                .chain(&extra_builders)
            {
                e.engine.set_history_blocks(n);
            }
        }
        if let Some(p2p) = config.flashblocks_p2p {
            // The builder publishes itself; engine-mux only authorizes it.
            builder
                .engine
                .set_flashblocks_p2p(Arc::new(p2p.builder_auth()));
        }
        let ws_ingest = config
            .flashblocks
            .filter(|_| config.flashblocks_p2p.is_none());
        let wiring = MuxWiring {
            local_url: local.auth_url(),
            builder_url: builder.auth_url(),
            jwt,
            host,
            port: config.mux_port,
            flashblocks: ws_ingest
                .zip(builder.flashblocks_addr)
                .map(|(fb, builder_ws)| (builder_ws, fb.mux_port)),
            flashblocks_p2p: config.flashblocks_p2p,
        };
        let extras: Vec<ExtraBuilder> = extra_builders
            .iter()
            .enumerate()
            .map(|(i, b)| ExtraBuilder {
                name: builder_name(i + 2),
                url: b.auth_url(),
                flashblocks: ws_ingest.and(b.flashblocks_addr),
            })
            .collect();
        let mut passthrough = Vec::new();
        if let Some(policy) = &config.builder_policy {
            passthrough.extend(["--builder-policy".to_string(), policy.clone()]);
        }
        passthrough.extend(config.mux_args.iter().cloned());
        let first_name = builder_name(1);
        let mux = start_mux_with_builders(wiring, Some(&first_name), &extras, &passthrough).await?;
        let flashblocks_rpc = match (
            config.flashblocks.and_then(|fb| fb.rpc_port),
            mux.flashblocks_addr,
        ) {
            (Some(port), Some(stream)) => Some(
                start_flashblocks_rpc(stream, mux.rpc_addr, SocketAddr::new(host, port)).await?,
            ),
            _ => None,
        };
        let mux_url: http::Uri = format!("http://{}", mux.rpc_addr)
            .parse()
            .map_err(|e: http::uri::InvalidUri| DevnetError::MuxStart(e.to_string()))?;
        let driver_config = DriverConfig {
            engine_url: mux_url.clone(),
            jwt,
            block_time: config.block_time,
            get_payload_lead: config.get_payload_lead.unwrap_or(config.block_time / 5),
            call_timeout: Duration::from_secs(2).max(config.block_time),
            params: SequencerParams::default(),
            max_blocks: config.max_blocks,
        };
        let driver = if config.embedded_driver {
            start_driver_on(
                DriverEngine::Embedded(mux.engine()),
                driver_config,
                spec.clone(),
            )
        } else {
            start_driver(driver_config, spec.clone())
        };
        let scheduled: ScheduledBuilders = Arc::new(std::sync::Mutex::new(
            std::iter::once(&builder)
                .chain(&extra_builders)
                .map(|b| b.engine.clone())
                .collect(),
        ));
        let faults_task =
            schedule_faults(&driver, scheduled.clone(), config.builder_faults.clone());
        let spammer = (config.tx_rate > 0.0).then(|| {
            start_spammer(
                SpammerConfig {
                    rpc_url: mux_url,
                    jwt: Some(jwt),
                    rate: config.tx_rate,
                    chain_id: spec.chain_id,
                    max_fee_per_gas: 2_000_000_000,
                    max_priority_fee_per_gas: 1_000_000,
                    call_timeout: Duration::from_secs(2),
                },
                signers,
            )
        });
        Ok(Self {
            local,
            builder,
            extra_builders,
            mux,
            driver,
            spammer,
            flashblocks_rpc,
            jwt,
            spec,
            faults_task,
            scheduled,
            genesis,
            builder_flashblocks,
            history_blocks: config.history_blocks,
        })
    }

    /// Every builder engine in priority order: b1 first.
    pub fn builders(&self) -> impl Iterator<Item = &RunningEngine> {
        std::iter::once(&self.builder).chain(&self.extra_builders)
    }

    /// Builder number `n`, 1-based as its name (`builder_at(2)` is b2).
    pub fn builder_at(&self, n: usize) -> Option<&RunningEngine> {
        self.builders().nth(n.checked_sub(1)?)
    }

    /// The names of the builders whose engines produced the block `hash` (served it from
    /// getPayload or built a flashblock that assembles to it). Engines building from the same
    /// parent, attributes and pool build the same block, so several may match.
    pub fn builders_that_built(&self, hash: &alloy_primitives::B256) -> Vec<String> {
        self.builders()
            .enumerate()
            .filter(|(_, b)| b.engine.produced().has_block(hash))
            .map(|(i, _)| builder_name(i + 1))
            .collect()
    }

    /// Restarts builder `n` (1-based) as a process restart would: its engine stops, and a new
    /// one starts from genesis (chain, pool and faults lost) on the same ports, so engine-mux
    /// reconnects to it and has to catch it up.
    pub async fn restart_builder(&mut self, n: usize) -> Result<(), DevnetError> {
        self.restart_builder_with(n, false).await
    }

    /// Restarts builder `n` as a process restart with its database would: its listeners stop and
    /// start again on the same ports, its chain kept (its faults cleared); engine-mux reconnects
    /// and catches up the blocks it missed.
    pub async fn restart_builder_keeping_chain(&mut self, n: usize) -> Result<(), DevnetError> {
        self.restart_builder_with(n, true).await
    }

    async fn restart_builder_with(&mut self, n: usize, keep: bool) -> Result<(), DevnetError> {
        let count = 1 + self.extra_builders.len();
        let running = match n {
            1 => &mut self.builder,
            n if n >= 2 && n <= count => &mut self.extra_builders[n - 2],
            _ => {
                return Err(DevnetError::Config(format!(
                    "no builder b{n} (there are {count})"
                )));
            }
        };
        running.engine.faults().clear();
        let fresh = if keep {
            running.engine.clone()
        } else {
            let fresh = Arc::new(Engine::new(self.genesis.clone(), Role::Builder));
            if let Some(n) = self.history_blocks {
                fresh.set_history_blocks(n);
            }
            fresh
        };
        running
            .restart(fresh.clone(), self.jwt, self.builder_flashblocks)
            .await?;
        self.scheduled.lock().unwrap_or_else(|e| e.into_inner())[n - 1] = fresh;
        Ok(())
    }

    /// Restarts the local EL as a process restart with its database would: its listeners stop
    /// and start again on the same ports, its chain kept; engine-mux has to reconnect.
    pub async fn restart_local(&mut self) -> Result<(), DevnetError> {
        let engine = self.local.engine.clone();
        self.local.restart(engine, self.jwt, None).await?;
        Ok(())
    }

    /// Stops everything: spammer, driver, engine-mux, engines.
    pub async fn stop(self) {
        if let Some(rpc) = self.flashblocks_rpc {
            rpc.shutdown().await;
        }
        if let Some(spammer) = self.spammer {
            spammer.stop().await;
        }
        self.driver.stop().await;
        self.faults_task.abort();
        self.mux.shutdown().await;
        for builder in std::iter::once(self.builder).chain(self.extra_builders) {
            builder.engine.faults().clear();
            builder.stop().await;
        }
        self.local.stop().await;
    }
}
