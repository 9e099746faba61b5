//! Command line: `devnet` runs everything; subcommands run one component.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use super::{
    args::{GenesisArgs, JwtArgs, parse_duration},
    ha::HaArgs,
    soak::SoakArgs,
};
use crate::engine::faults::{Fault, FaultWindow};

/// A real small OP Stack devnet: local engine, builder, engine-mux, op-node driver, spammer.
#[derive(Debug, Parser)]
#[command(name = "devnet", version)]
pub struct Cli {
    /// Component to run alone; without one, everything runs in this process.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for the all-in-one run.
    #[command(flatten)]
    pub all: AllArgs,
}

/// Components that can run on their own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The local execution engine (Engine API on --auth-port, eth RPC on --http-port).
    Engine(EngineArgs),
    /// The builder engine, with fault switches (flags, or `devnet_setFault` on --http-port).
    Builder(BuilderArgs),
    /// op-node's sequencer loop against an engine URL (engine-mux or an engine).
    Driver(DriverArgs),
    /// Sends signed transfers from the dev accounts to an RPC URL.
    Spam(SpamArgs),
    /// Writes the effective genesis (timestamp filled, fork overrides applied) so another client
    /// (e.g. `op-reth node --chain FILE`) can start the very same chain; prints its hash.
    Genesis(GenesisOutArgs),
    /// A high-availability set: two sequencer stacks and an op-conductor stand-in switching the
    /// leader on a failover schedule (preconfirmations carried over by engine-mux).
    Ha(HaArgs),
    /// The whole stack under a seeded schedule of overlapping faults for a duration, checking
    /// every invariant while it runs; prints one figure a line and the seed to replay.
    Soak(SoakArgs),
}

/// `devnet genesis`.
#[derive(Debug, Clone, Args)]
pub struct GenesisOutArgs {
    /// Where to write the JSON.
    #[arg(long)]
    pub out: PathBuf,
    /// Genesis options.
    #[command(flatten)]
    pub genesis: GenesisArgs,
}

/// `devnet` with no subcommand.
#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    /// Slot length (`250ms`, `1s`, or seconds as a number).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Spammer transactions per second (0 disables the spammer).
    #[arg(long, default_value_t = 10.0)]
    pub tx_rate: f64,
    /// Builder fault windows by block height, `[BUILDER:]FAULT@FROM..TO` (FAULT: down, hang,
    /// invalid, wrong_attributes, zero_state_root, empty, stale, slow=MS, flashblocks_down,
    /// drop_preconfirmed, down_after_flashblock=N; BUILDER: `b2` or `2`, without it every
    /// builder); repeatable.
    #[arg(long = "builder-fault", value_name = "[BUILDER:]FAULT@FROM..TO")]
    pub builder_faults: Vec<FaultWindow>,
    /// Builder engines to start, named b1..bN in engine-mux's priority order (each with its
    /// own ports and, with --flashblocks, its own flashblocks stream).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub builders: u16,
    /// engine-mux's --builder-policy (gas-used, priority, block-value): how the builders'
    /// blocks are ordered at getPayload (default: engine-mux's).
    #[arg(long)]
    pub builder_policy: Option<String>,
    /// Stop after this many blocks.
    #[arg(long)]
    pub max_blocks: Option<u64>,
    /// engine-mux RPC port (what op-node would talk to).
    #[arg(long, default_value_t = 8081)]
    pub mux_port: u16,
    /// Flashblocks end to end: the builder streams them, engine-mux ingests, re-publishes
    /// (on --flashblocks-port) and assembles blocks from them.
    #[arg(long)]
    pub flashblocks: bool,
    /// engine-mux's outbound flashblocks WebSocket port (with --flashblocks; 0 = ephemeral).
    #[arg(long, default_value_t = 1112)]
    pub flashblocks_port: u16,
    /// flashblocks-rpc's port (with --flashblocks; 0 = ephemeral): pending state from
    /// engine-mux's flashblocks in front of engine-mux's RPC port, for wallets.
    #[arg(long, default_value_t = 8547)]
    pub flashblocks_rpc_port: u16,
    /// The builder's flashblocks WebSocket port (with --flashblocks; 0 = ephemeral).
    #[arg(long, default_value_t = 0)]
    pub builder_flashblocks_port: u16,
    /// Time between two flashblocks of one block (with --flashblocks).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub flashblocks_interval: Duration,
    /// Flashblocks P2P authorization instead of engine-mux's WebSocket ingestion: the builder
    /// streams flashblocks (on --builder-flashblocks-port) only for payloads engine-mux
    /// authorized with `flashblocks_forkchoiceUpdatedV3` (dev keys; engine-mux gets
    /// --flashblocks-p2p and the keys).
    #[arg(long, conflicts_with = "flashblocks")]
    pub flashblocks_p2p: bool,
    /// The op-node driver calls engine-mux through its typed in-process handle
    /// (`RunningMux::engine()`) instead of JSON-RPC over HTTP: engine-mux embedded in the node.
    #[arg(long)]
    pub embedded_driver: bool,
    /// Extra engine-mux flags, e.g. `--mux-arg=--builder-timeout --mux-arg=300`; repeatable.
    #[arg(long = "mux-arg", allow_hyphen_values = true)]
    pub mux_args: Vec<String>,
    /// Genesis options.
    #[command(flatten)]
    pub genesis: GenesisArgs,
}

/// `devnet engine`.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Engine API (JWT) port.
    #[arg(long, default_value_t = 8551)]
    pub auth_port: u16,
    /// Plain eth RPC port.
    #[arg(long, default_value_t = 8545)]
    pub http_port: u16,
    /// JWT options.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Genesis options.
    #[command(flatten)]
    pub genesis: GenesisArgs,
}

/// `devnet builder`.
#[derive(Debug, Clone, Args)]
pub struct BuilderArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Engine API (JWT) port.
    #[arg(long, default_value_t = 8552)]
    pub auth_port: u16,
    /// Plain eth RPC + `devnet_setFault` port.
    #[arg(long, default_value_t = 8546)]
    pub http_port: u16,
    /// Faults on from the start (down, hang, invalid, empty, stale, slow=MS, flashblocks_down,
    /// down_after_flashblock=N); repeatable.
    #[arg(long = "fault")]
    pub faults: Vec<Fault>,
    /// Publish flashblocks over WebSocket on this port (op-rbuilder uses 1111).
    #[arg(long)]
    pub flashblocks_port: Option<u16>,
    /// Time between flashblocks of one payload.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub flashblocks_interval: Duration,
    /// JWT options.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Genesis options.
    #[command(flatten)]
    pub genesis: GenesisArgs,
}

/// `devnet driver`.
#[derive(Debug, Clone, Args)]
pub struct DriverArgs {
    /// Engine API URL (engine-mux or an engine).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub engine_url: String,
    /// Slot length.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Stop after this many blocks.
    #[arg(long)]
    pub max_blocks: Option<u64>,
    /// JWT options.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Genesis options (must match the engine's; the timestamp is read from its block 0).
    #[command(flatten)]
    pub genesis: GenesisArgs,
}

/// `devnet spam`.
#[derive(Debug, Clone, Args)]
pub struct SpamArgs {
    /// RPC URL to send to.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    pub rpc_url: String,
    /// Transactions per second.
    #[arg(long, default_value_t = 10.0)]
    pub tx_rate: f64,
    /// Chain id.
    #[arg(long, default_value_t = 901)]
    pub chain_id: u64,
    /// Hex JWT secret, when the URL is an authenticated port.
    #[arg(long, hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_in_one_flags_parse() {
        let cli = Cli::try_parse_from([
            "devnet",
            "--block-time",
            "250ms",
            "--tx-rate",
            "50",
            "--builder-fault",
            "down@20..30",
            "--builder-fault",
            "slow=300@5..8",
            "--isthmus-time",
            "10",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.all.block_time, Duration::from_millis(250));
        assert_eq!(cli.all.builder_faults.len(), 2);
        assert_eq!(cli.all.builder_faults[1].fault, Fault::Slow(300));
        assert_eq!(cli.all.genesis.isthmus_offset, Some(10));
        assert!(!cli.all.flashblocks);
        assert_eq!(cli.all.flashblocks_port, 1112);
        assert_eq!(cli.all.flashblocks_interval, Duration::from_millis(200));
        let cli = Cli::try_parse_from([
            "devnet",
            "--flashblocks",
            "--flashblocks-interval",
            "50ms",
            "--flashblocks-port",
            "0",
            "--builder-fault",
            "down_after_flashblock=3@10..12",
        ])
        .unwrap();
        assert!(cli.all.flashblocks);
        assert_eq!(cli.all.flashblocks_port, 0);
        assert_eq!(cli.all.flashblocks_interval, Duration::from_millis(50));
        assert_eq!(cli.all.builders, 1, "one builder by default");
        let cli = Cli::try_parse_from([
            "devnet",
            "--builders",
            "3",
            "--builder-policy",
            "priority",
            "--builder-fault",
            "b2:invalid@10..20",
            "--builder-fault",
            "3:slow=900@1..100",
        ])
        .unwrap();
        assert_eq!(cli.all.builders, 3);
        assert_eq!(cli.all.builder_policy.as_deref(), Some("priority"));
        assert_eq!(cli.all.builder_faults[0].builder, Some(2));
        assert_eq!(cli.all.builder_faults[1].fault, Fault::Slow(900));
        assert_eq!(cli.all.builder_faults[1].builder, Some(3));
        assert!(Cli::try_parse_from(["devnet", "--builders", "0"]).is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "devnet",
            "builder",
            "--fault",
            "hang",
            "--auth-port",
            "9551",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Builder(b)) => {
                assert_eq!(b.faults, vec![Fault::Hang]);
                assert_eq!(b.auth_port, 9551);
            }
            other => panic!("{other:?}"),
        }
    }
}
