//! The whole devnet in one process: local engine, builder engine, engine-mux between them, the
//! driver playing op-node against engine-mux, the spammer, and the builder fault schedule.

pub mod cli;
pub mod commands;
pub mod ha;
pub mod soak;
pub mod status;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy_rpc_types_engine::JwtSecret;
use clap::Parser;
use engine_mux::{RunningMux, cli::Args as MuxArgs};

use crate::{
    chain::{
        accounts::{AccountsError, funded_dev_signers},
        attributes::SequencerParams,
        genesis::{
            ChainSpec, ForkOverrides, GenesisError, LoadedGenesis, default_genesis,
            load_genesis_file,
        },
    },
    engine::{
        Engine, Role,
        faults::FaultWindow,
        flashblocks::FlashblocksConfig,
        rpc::{EngineServerConfig, RunningEngine, ServerError, start_engine},
    },
    node::{DriverConfig, DriverEvent, DriverHandle, start_driver},
    spammer::{SpammerConfig, SpammerHandle, start_spammer},
};

/// Everything `devnet` (all components) can be told.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Genesis file (default: the shipped devnet genesis).
    pub genesis: Option<PathBuf>,
    /// Genesis timestamp (default: now).
    pub genesis_timestamp: Option<u64>,
    /// Isthmus (and Jovian) activate this many seconds after genesis (default: at genesis).
    pub isthmus_offset: Option<u64>,
    /// Slot length.
    pub block_time: Duration,
    /// Spammer rate (0 = no spammer).
    pub tx_rate: f64,
    /// Builder faults by height (each for one builder, or for every builder).
    pub builder_faults: Vec<FaultWindow>,
    /// Builder engines to start (named b1, b2, ...; at least 1).
    pub builders: usize,
    /// engine-mux's `--builder-policy` (`None`: engine-mux's default).
    pub builder_policy: Option<String>,
    /// How long before the slot ends the driver asks for the payload (`None`: a fifth of the
    /// block time; op-node itself seals 50 ms before the end).
    pub get_payload_lead: Option<Duration>,
    /// Stop the driver after this many blocks.
    pub max_blocks: Option<u64>,
    /// Extra engine-mux flags (e.g. `--builder-timeout 200`).
    pub mux_args: Vec<String>,
    /// Address everything binds to.
    pub host: IpAddr,
    /// engine-mux RPC port (0 = ephemeral).
    pub mux_port: u16,
    /// Flashblocks end to end (`None` = off): the builder streams them, engine-mux ingests,
    /// re-publishes and assembles blocks from them.
    pub flashblocks: Option<DevnetFlashblocks>,
    /// Blocks of history each engine keeps (`None`: the engine's default).
    pub history_blocks: Option<usize>,
    /// Flashblocks P2P authorization (`None` = off): the builder publishes a payload's
    /// flashblocks only when engine-mux's FCU authorized it (`--flashblocks-p2p` on
    /// engine-mux instead of `--flashblocks`). Needs `flashblocks` for the builder's publisher.
    pub flashblocks_p2p: Option<DevnetP2p>,
}

/// The keys of flashblocks P2P authorization in the all-in-one run (dev keys by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevnetP2p {
    /// The secret engine-mux signs authorizations with.
    pub authorizer_sk: [u8; 32],
    /// The secret whose public half the builder trusts (normally `authorizer_sk`).
    pub trusted_authorizer_sk: [u8; 32],
    /// The builder's own secret: it accepts authorizations for its public half.
    pub builder_sk: [u8; 32],
    /// The builder secret whose public half engine-mux authorizes (normally `builder_sk`).
    pub authorized_builder_sk: [u8; 32],
}

/// The devnet's authorizer secret (a dev key: never use it anywhere else).
pub const DEV_AUTHORIZER_SK: [u8; 32] = [0x11; 32];
/// The devnet builder's flashblocks P2P secret (a dev key).
pub const DEV_P2P_BUILDER_SK: [u8; 32] = [0x22; 32];

impl Default for DevnetP2p {
    fn default() -> Self {
        Self {
            authorizer_sk: DEV_AUTHORIZER_SK,
            trusted_authorizer_sk: DEV_AUTHORIZER_SK,
            builder_sk: DEV_P2P_BUILDER_SK,
            authorized_builder_sk: DEV_P2P_BUILDER_SK,
        }
    }
}

fn public(secret: &[u8; 32]) -> ed25519_dalek::VerifyingKey {
    engine_api::flashblocks_p2p::AuthorizerKey::from_bytes(secret).verifying_key()
}

impl DevnetP2p {
    /// The builder's side: the keys it checks authorizations against.
    pub fn builder_auth(&self) -> crate::engine::flashblocks::p2p::P2pAuth {
        crate::engine::flashblocks::p2p::P2pAuth::new(
            public(&self.trusted_authorizer_sk),
            public(&self.builder_sk),
        )
    }
}

/// Flashblocks in the all-in-one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevnetFlashblocks {
    /// The builder's flashblocks WebSocket port (0 = ephemeral).
    pub builder_port: u16,
    /// Time between two flashblocks of one payload.
    pub interval: Duration,
    /// engine-mux's outbound flashblocks port, `--flashblocks-port` (0 = ephemeral).
    pub mux_port: u16,
    /// flashblocks-rpc in front of engine-mux's RPC port, subscribed to engine-mux's stream, on
    /// this port (0 = ephemeral; `None` = not started).
    pub rpc_port: Option<u16>,
}

impl Default for DevnetFlashblocks {
    fn default() -> Self {
        Self {
            builder_port: 0,
            interval: Duration::from_millis(200),
            mux_port: 1112,
            rpc_port: None,
        }
    }
}

impl DevnetFlashblocks {
    /// Flashblocks per payload at most: two slots' worth (getPayload seals the stream long
    /// before; the bound only matters for a payload nobody asks for).
    pub fn max_per_payload(&self, block_time: Duration) -> u64 {
        let per_slot = block_time.as_nanos() / self.interval.as_nanos().max(1);
        (per_slot * 2 + 1).clamp(2, 256) as u64
    }
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            genesis: None,
            genesis_timestamp: None,
            isthmus_offset: None,
            block_time: Duration::from_secs(1),
            tx_rate: 10.0,
            builder_faults: Vec::new(),
            builders: 1,
            builder_policy: None,
            get_payload_lead: None,
            max_blocks: None,
            mux_args: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mux_port: 0,
            flashblocks: None,
            flashblocks_p2p: None,
            history_blocks: None,
        }
    }
}

/// Why the devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// Genesis problem.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// An engine could not listen.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// engine-mux rejected its flags.
    #[error("engine-mux flags: {0}")]
    MuxArgs(String),
    /// engine-mux config invalid.
    #[error("engine-mux config: {0}")]
    MuxConfig(String),
    /// engine-mux could not start.
    #[error("engine-mux start: {0}")]
    MuxStart(String),
    /// flashblocks-rpc could not start.
    #[error("flashblocks-rpc: {0}")]
    FlashblocksRpc(String),
    /// Dev keys could not be derived.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The devnet's own options contradict each other.
    #[error("devnet config: {0}")]
    Config(String),
}

/// Loads the genesis both engines share, with the fork offset applied.
pub fn load_genesis(
    path: Option<&std::path::Path>,
    timestamp: u64,
    isthmus_offset: Option<u64>,
) -> Result<LoadedGenesis, GenesisError> {
    let overrides = ForkOverrides {
        isthmus_time: isthmus_offset.map(|o| timestamp + o),
        jovian_time: isthmus_offset.map(|o| timestamp + o),
    };
    match path {
        Some(p) => load_genesis_file(p, timestamp, overrides),
        None => default_genesis(timestamp, overrides),
    }
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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

/// The builder engines in order (b1 first), shared with the fault schedule.
type ScheduledBuilders = Arc<std::sync::Mutex<Vec<Arc<Engine>>>>;

/// The name the devnet gives its builder number `n` (1-based) and engine-mux uses for it.
pub fn builder_name(n: usize) -> String {
    format!("b{n}")
}

/// Starts an engine in `role` on `host` (port 0 = ephemeral), without flashblocks.
pub async fn start_engine_on(
    genesis: LoadedGenesis,
    role: Role,
    host: IpAddr,
    auth_port: u16,
    http_port: u16,
    jwt: JwtSecret,
) -> Result<RunningEngine, ServerError> {
    let config = EngineServerConfig {
        auth_addr: SocketAddr::new(host, auth_port),
        http_addr: SocketAddr::new(host, http_port),
        jwt,
        flashblocks: None,
    };
    start_engine(Arc::new(Engine::new(genesis, role)), config).await
}

/// Starts an engine in `role` with a full listener config (e.g. flashblocks on).
pub async fn start_engine_with(
    genesis: LoadedGenesis,
    role: Role,
    config: EngineServerConfig,
) -> Result<RunningEngine, ServerError> {
    start_engine(Arc::new(Engine::new(genesis, role)), config).await
}

/// How the devnet wires engine-mux: its two engines, their secret, where it listens, and the
/// builder's flashblocks stream when flashblocks are on.
#[derive(Clone, Debug)]
pub struct MuxWiring {
    /// The local engine's auth RPC.
    pub local_url: String,
    /// The builder's auth RPC.
    pub builder_url: String,
    /// The one secret both engines and op-node's driver use.
    pub jwt: JwtSecret,
    /// Host for engine-mux's listeners.
    pub host: IpAddr,
    /// Engine API port (0: any free port).
    pub port: u16,
    /// The builder's flashblocks WebSocket and the port engine-mux re-publishes on (0: any).
    pub flashblocks: Option<(SocketAddr, u16)>,
    /// Flashblocks P2P: engine-mux authorizes the builder per block (instead of `flashblocks`).
    pub flashblocks_p2p: Option<DevnetP2p>,
}

/// One more builder engine-mux fans out to, beside [`MuxWiring::builder_url`].
#[derive(Clone, Debug)]
pub struct ExtraBuilder {
    /// Its name (label `builder="<name>"`, `debug_setBuilderEnabled`).
    pub name: String,
    /// Its auth RPC.
    pub url: String,
    /// Its flashblocks WebSocket, when flashblocks are on.
    pub flashblocks: Option<SocketAddr>,
}

/// Starts engine-mux as the devnet wires it. `passthrough` are engine-mux flags the operator
/// gave the devnet; they are parsed as engine-mux parses its command line, then the devnet's
/// own wiring is set on the typed configuration (never re-parsed from strings).
pub async fn start_mux(
    wiring: MuxWiring,
    passthrough: &[String],
) -> Result<RunningMux, DevnetError> {
    start_mux_with_builders(wiring, None, &[], passthrough).await
}

/// [`start_mux`] with several builders: the first (`wiring.builder_url`) named `first_name`
/// (engine-mux's default name when `None`), then `extras` in priority order. The builders are
/// given as engine-mux's `--builder-name` and `--extra-builder` flags, its multi-builder
/// contract, ahead of `passthrough`.
pub async fn start_mux_with_builders(
    wiring: MuxWiring,
    first_name: Option<&str>,
    extras: &[ExtraBuilder],
    passthrough: &[String],
) -> Result<RunningMux, DevnetError> {
    let secret = hex::encode(wiring.jwt.as_bytes());
    let mut builder_flags = Vec::new();
    if let Some(name) = first_name {
        builder_flags.extend(["--builder-name".to_string(), name.to_string()]);
    }
    for extra in extras {
        let mut spec = format!("name={},url={},jwt-token={secret}", extra.name, extra.url);
        if let Some(ws) = extra.flashblocks {
            spec.push_str(&format!(",flashblocks-url=ws://{ws}"));
        }
        builder_flags.extend(["--extra-builder".to_string(), spec]);
    }
    let argv = std::iter::once("engine-mux".to_string())
        .chain(builder_flags)
        .chain(passthrough.iter().cloned());
    let mut args =
        MuxArgs::try_parse_from(argv).map_err(|e| DevnetError::MuxArgs(e.to_string()))?;
    args.l2.l2_url = wiring.local_url;
    args.l2.l2_jwt_token = Some(secret.clone());
    args.l2.l2_jwt_path = None;
    args.builder.builder_url = wiring.builder_url;
    args.builder.builder_jwt_token = Some(secret.clone());
    args.builder.builder_jwt_path = None;
    args.auth.auth_jwt_token = Some(secret);
    args.auth.auth_jwt_path = None;
    if let Some(p2p) = wiring.flashblocks_p2p {
        args.flashblocks_p2p.flashblocks_p2p = true;
        args.flashblocks_p2p.flashblocks_authorizer_sk = Some(hex::encode(p2p.authorizer_sk));
        args.flashblocks_p2p.flashblocks_builder_vk =
            Some(hex::encode(public(&p2p.authorized_builder_sk).as_bytes()));
    }
    if let Some((builder_ws, port)) = wiring.flashblocks {
        args.flashblocks.enabled = true;
        args.flashblocks.flashblocks_builder_url = format!("ws://{builder_ws}");
        args.flashblocks.flashblocks_host = wiring.host.to_string();
        args.flashblocks.flashblocks_port = port;
    }
    let mut config =
        engine_mux::Config::try_from(args).map_err(|e| DevnetError::MuxConfig(e.to_string()))?;
    config.rpc_addr = SocketAddr::new(wiring.host, wiring.port);
    config.debug_addr = SocketAddr::new(wiring.host, 0);
    engine_mux::start(config)
        .await
        .map_err(|e| DevnetError::MuxStart(e.to_string()))
}

/// Starts flashblocks-rpc on `listen`: subscribed to engine-mux's flashblocks on `stream`, with
/// engine-mux's RPC port (eth_* without a token; transactions copied to the builder) upstream.
pub async fn start_flashblocks_rpc(
    stream: SocketAddr,
    mux_rpc: SocketAddr,
    listen: SocketAddr,
) -> Result<flashblocks_rpc::Running, DevnetError> {
    let argv = [
        "flashblocks-rpc".to_string(),
        format!("--flashblocks-url=ws://{stream}"),
        format!("--upstream-url=http://{mux_rpc}"),
        format!("--rpc-addr={listen}"),
    ];
    let bad = |e: String| DevnetError::FlashblocksRpc(e);
    let args = flashblocks_rpc::cli::Args::try_parse_from(argv).map_err(|e| bad(e.to_string()))?;
    let config = flashblocks_rpc::Config::try_from(args).map_err(|e| bad(e.to_string()))?;
    flashblocks_rpc::start(config)
        .await
        .map_err(|e| bad(e.to_string()))
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
        let driver = start_driver(
            DriverConfig {
                engine_url: mux_url.clone(),
                jwt,
                block_time: config.block_time,
                get_payload_lead: config.get_payload_lead.unwrap_or(config.block_time / 5),
                call_timeout: Duration::from_secs(2).max(config.block_time),
                params: SequencerParams::default(),
                max_blocks: config.max_blocks,
            },
            spec.clone(),
        );
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

/// Switches builder faults on and off as the chain reaches each window's heights (the fault
/// state for block N is set right after block N-1 is proposed), each window on the builders it
/// names (every builder when it names none).
fn schedule_faults(
    driver: &DriverHandle,
    builders: ScheduledBuilders,
    windows: Vec<FaultWindow>,
) -> tokio::task::JoinHandle<()> {
    let mut events = driver.subscribe();
    tokio::spawn(async move {
        if windows.is_empty() {
            return;
        }
        let apply = |next: u64| {
            let engines = builders.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (i, engine) in engines.iter().enumerate() {
                apply_windows(engine.faults(), &windows, i + 1, next);
            }
        };
        apply(1);
        loop {
            match events.recv().await {
                Ok(DriverEvent::Proposed(b)) => apply(b.number + 1),
                Ok(DriverEvent::Missed { number, .. }) => apply(number),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// Sets builder `index`'s (1-based) switches for height `next`: per fault kind, on (with the
/// covering window's value) when a window of that kind for this builder covers `next`, off
/// when none does. Switches already in the wanted state are left alone (a tripped
/// `down_after_flashblock` stays tripped, not re-armed).
fn apply_windows(
    faults: &crate::engine::faults::Faults,
    windows: &[FaultWindow],
    index: usize,
    next: u64,
) {
    let mine: Vec<&FaultWindow> = windows.iter().filter(|w| w.targets(index)).collect();
    let active = faults.active();
    for (i, w) in mine.iter().enumerate() {
        if mine[..i].iter().any(|o| same_kind(&o.fault, &w.fault)) {
            continue; // this kind was decided by its first window
        }
        let covering = mine
            .iter()
            .find(|o| same_kind(&o.fault, &w.fault) && o.covers(next));
        let on = active.iter().any(|f| same_kind(f, &w.fault));
        match covering {
            Some(c) if !active.contains(&c.fault) => faults.set(c.fault, true),
            None if on => faults.set(w.fault, false),
            _ => {}
        }
    }
}

fn same_kind(a: &crate::engine::faults::Fault, b: &crate::engine::faults::Fault) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Reads a counter from Prometheus text: the sum of all samples of `name` whose labels contain
/// every `label="value"` in `labels`.
pub use engine_api::prometheus::sum as metric_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_sums_matching_series() {
        let text = "# HELP x\nengine_mux_fallbacks_total{reason=\"invalid\"} 2\nengine_mux_fallbacks_total{reason=\"timeout\"} 3\nengine_mux_blocks_proposed_total{source=\"builder\"} 7\n";
        assert_eq!(metric_value(text, "engine_mux_fallbacks_total", &[]), 5.0);
        assert_eq!(
            metric_value(text, "engine_mux_fallbacks_total", &[("reason", "invalid")]),
            2.0
        );
        assert_eq!(
            metric_value(
                text,
                "engine_mux_blocks_proposed_total",
                &[("source", "builder")]
            ),
            7.0
        );
        assert_eq!(metric_value(text, "nope", &[]), 0.0);
    }

    #[test]
    fn fault_windows_switch_only_the_builders_they_name_and_repeat_windows_do_not_flip_flop() {
        use crate::engine::faults::{Fault, Faults};
        let windows: Vec<FaultWindow> = ["b2:invalid@3..5", "down@4..6", "b1:down@10..12"]
            .iter()
            .map(|w| w.parse().unwrap())
            .collect();
        let (b1, b2) = (Faults::default(), Faults::default());
        let at = |next: u64| {
            apply_windows(&b1, &windows, 1, next);
            apply_windows(&b2, &windows, 2, next);
            (b1.active(), b2.active())
        };
        assert_eq!(at(3), (vec![], vec![Fault::Invalid]));
        assert_eq!(
            at(4),
            (vec![Fault::Down], vec![Fault::Down, Fault::Invalid])
        );
        assert_eq!(at(5), (vec![Fault::Down], vec![Fault::Down]));
        assert_eq!(at(6), (vec![], vec![]));
        assert_eq!(
            at(10),
            (vec![Fault::Down], vec![]),
            "the second down window of b1 is not switched off by the first"
        );
        assert_eq!(at(12), (vec![], vec![]));
    }

    #[test]
    fn flashblocks_payload_bound() {
        let fb = DevnetFlashblocks {
            builder_port: 0,
            interval: Duration::from_millis(50),
            mux_port: 0,
            rpc_port: None,
        };
        assert_eq!(fb.max_per_payload(Duration::from_millis(250)), 11);
        assert_eq!(
            DevnetFlashblocks::default().max_per_payload(Duration::from_secs(1)),
            11
        );
    }
}
