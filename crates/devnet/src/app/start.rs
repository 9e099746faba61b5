//! Starting the devnet's parts one at a time: genesis, engines, engine-mux wired to them, and
//! flashblocks-rpc in front of engine-mux. The all-in-one run, `devnet ha` and the tests use them.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use alloy_rpc_types_engine::JwtSecret;
use clap::Parser;
use engine_mux::{RunningMux, cli::Args as MuxArgs};

use super::{config::DevnetP2p, error::DevnetError};
use crate::{
    chain::genesis::{
        ForkOverrides, GenesisError, LoadedGenesis, default_genesis, load_genesis_file,
    },
    engine::{
        Engine, Role,
        rpc::{EngineServerConfig, RunningEngine, ServerError, start_engine},
    },
};

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
            Some(hex::encode(p2p.authorized_builder_vk().as_bytes()));
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
