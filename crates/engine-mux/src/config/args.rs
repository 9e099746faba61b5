//! Command-line flags and environment variables. Names, env vars and defaults follow
//! rollup-boost so an existing deployment switches binaries without editing its config.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use super::flags::{
    BuilderArgs, BuilderPolicyArg, FlashblocksArgs, FlashblocksP2pArgs, InboundAuthArgs, L2Args,
    LogFormat, MoreBuildersArgs, SelectionPolicyArg,
};
use crate::execution_mode::ExecutionMode;

/// engine-mux: Engine API sidecar that lets an external builder build an OP Stack chain's
/// blocks, validates every builder block on the local execution client, and falls back to the
/// local block whenever the builder fails.
#[derive(Clone, Debug, Parser)]
#[command(name = "engine-mux", version, about, long_about = None)]
pub struct Args {
    /// Operator commands against a running instance (instead of starting one).
    #[command(subcommand)]
    pub command: Option<Command>,

    #[allow(missing_docs)] // clap would print a doc comment here as help text
    #[command(flatten)]
    pub l2: L2Args,

    #[allow(missing_docs)] // clap would print a doc comment here as help text
    #[command(flatten)]
    pub builder: BuilderArgs,

    #[allow(missing_docs)] // clap would print a doc comment here as help text
    #[command(flatten)]
    pub builders: MoreBuildersArgs,

    #[allow(missing_docs)] // clap would print a doc comment here as help text
    #[command(flatten)]
    pub auth: InboundAuthArgs,

    #[allow(missing_docs)] // clap would print a doc comment here as help text
    #[command(flatten)]
    pub flashblocks: FlashblocksArgs,

    #[allow(missing_docs)] // clap would print a doc comment here as help text
    #[command(flatten)]
    pub flashblocks_p2p: FlashblocksP2pArgs,

    /// Host the engine API (and /healthz) listens on.
    #[arg(
        long,
        env = "RPC_HOST",
        default_value = "127.0.0.1",
        help_heading = "Server"
    )]
    pub rpc_host: String,

    /// Port the engine API (and /healthz) listens on; point op-node's --l2 here.
    #[arg(
        long,
        env = "RPC_PORT",
        default_value_t = 8081,
        help_heading = "Server"
    )]
    pub rpc_port: u16,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_REQUEST_BODY_BYTES", default_value_t = 32 * 1024 * 1024, help_heading = "Server")]
    pub max_request_body_bytes: usize,

    /// Execution mode at startup: enabled (use builder blocks), dry-run (exercise the builder,
    /// always propose the local block), disabled (no builder engine traffic).
    #[arg(long, env = "EXECUTION_MODE", default_value = "enabled", value_parser = parse_mode, help_heading = "Block building")]
    pub execution_mode: ExecutionMode,

    /// Builder blocks carry no state root (zero): the local EL rebuilds each one from its
    /// transactions (op-node's attributes, `noTxPool`) and that block is proposed instead of
    /// validating the builder's.
    #[arg(long, env = "EXTERNAL_STATE_ROOT", help_heading = "Block building")]
    pub external_state_root: bool,

    /// Block selection policy. `gas-used`: the builder block loses when its gas used is below
    /// --selection-min-gas-percent of the local block's. Unset: a valid builder block always wins.
    #[arg(long, env = "BLOCK_SELECTION_POLICY", help_heading = "Block building")]
    pub block_selection_policy: Option<SelectionPolicyArg>,

    /// Percentage of the local block's gas used a builder block must reach under `gas-used`.
    #[arg(
        long,
        env = "SELECTION_MIN_GAS_PERCENT",
        default_value_t = 10,
        help_heading = "Block building"
    )]
    pub selection_min_gas_percent: u64,

    /// Overall engine_getPayload budget in milliseconds (must stay under the spec's 1 s):
    /// past it the local payload is returned.
    #[arg(
        long,
        env = "GET_PAYLOAD_DEADLINE_MS",
        default_value_t = 800,
        help_heading = "Block building"
    )]
    pub get_payload_deadline_ms: u64,

    /// Skip an unhealthy builder entirely (no calls, no waiting) until a probe finds it synced.
    #[arg(long, env = "IGNORE_UNHEALTHY_BUILDERS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", help_heading = "Block building")]
    pub ignore_unhealthy_builders: bool,

    /// How many local→builder payload id mappings are kept (oldest evicted first).
    #[arg(
        long,
        env = "PAYLOAD_ID_CACHE_SIZE",
        default_value_t = 1024,
        help_heading = "Block building"
    )]
    pub payload_id_cache_size: usize,

    /// Depth of the ordered queue of engine calls bound for the builder.
    #[arg(
        long,
        env = "BUILDER_QUEUE_DEPTH",
        default_value_t = 256,
        help_heading = "Block building"
    )]
    pub builder_queue_depth: usize,

    /// Turn off builder catch-up (replaying missed blocks to a builder that fell behind).
    #[arg(long, env = "NO_BUILDER_CATCH_UP", help_heading = "Block building")]
    pub no_builder_catch_up: bool,

    /// How many recent payloads are kept for builder catch-up.
    #[arg(
        long,
        env = "CATCH_UP_DEPTH",
        default_value_t = 64,
        help_heading = "Block building"
    )]
    pub catch_up_depth: usize,

    /// Longest one catch-up run replays, in ms; a builder further behind is caught up over
    /// several runs with live traffic in between.
    #[arg(
        long,
        env = "CATCH_UP_BUDGET_MS",
        default_value_t = 10_000,
        help_heading = "Block building"
    )]
    pub catch_up_budget_ms: u64,

    /// Fetch the builders' blocks shortly before the slot ends and validate the best one on the
    /// local EL then (a speculative engine_newPayload), so op-node's getPayload is answered
    /// without the validation round trip. Off by default: the builders' blocks then close
    /// --prevalidate-lead-ms minus op-node's 50 ms earlier. Off with --external-state-root.
    #[arg(long, env = "PREVALIDATE_BUILDER_PAYLOAD", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", help_heading = "Block building")]
    pub prevalidate_builder_payload: bool,

    /// How long before the slot ends (the attributes' timestamp) the builders' blocks are
    /// fetched and validated, in ms. op-node asks 50 ms before the end; the rest is the time
    /// the fetch and the local EL's validation may take. Builders stop improving a block once
    /// it is fetched.
    #[arg(
        long,
        env = "PREVALIDATE_LEAD_MS",
        default_value_t = 150,
        help_heading = "Block building"
    )]
    pub prevalidate_lead_ms: u64,

    /// Seconds between background probes of both upstreams' latest block (while the builder
    /// is unhealthy it is probed every 500 ms instead).
    #[arg(
        long,
        env = "HEALTH_CHECK_INTERVAL",
        default_value_t = 60,
        help_heading = "Health"
    )]
    pub health_check_interval: u64,

    /// Seconds an upstream's latest block may lag the wall clock before it counts as out of sync.
    #[arg(
        long,
        env = "MAX_UNSAFE_INTERVAL",
        default_value_t = 10,
        help_heading = "Health"
    )]
    pub max_unsafe_interval: u64,

    /// Milliseconds every builder in use must be failing before /healthz answers 206 (0:
    /// at once, as rollup-boost). A failure that clears sooner never shows.
    #[arg(
        long,
        env = "HEALTH_DEGRADE_AFTER_MS",
        default_value_t = 0,
        help_heading = "Health"
    )]
    pub health_degrade_after_ms: u64,

    /// Milliseconds a builder must be good again before /healthz turns from 206 back to 200
    /// (0: at its first good block, as rollup-boost). A recovery that relapses sooner never shows.
    #[arg(
        long,
        env = "HEALTH_RECOVER_AFTER_MS",
        default_value_t = 0,
        help_heading = "Health"
    )]
    pub health_recover_after_ms: u64,

    /// Host of the debug server (debug_setExecutionMode / debug_getExecutionMode).
    #[arg(
        long,
        env = "DEBUG_HOST",
        default_value = "127.0.0.1",
        help_heading = "Debug API"
    )]
    pub debug_host: String,

    /// Port of the debug server.
    #[arg(
        long,
        env = "DEBUG_SERVER_PORT",
        default_value_t = 5555,
        help_heading = "Debug API"
    )]
    pub debug_server_port: u16,

    /// Serve Prometheus metrics on --metrics-host:--metrics-port.
    #[arg(long, env = "METRICS", help_heading = "Observability")]
    pub metrics: bool,

    /// Host of the metrics server.
    #[arg(
        long,
        env = "METRICS_HOST",
        default_value = "127.0.0.1",
        help_heading = "Observability"
    )]
    pub metrics_host: String,

    /// Port of the metrics server.
    #[arg(
        long,
        env = "METRICS_PORT",
        default_value_t = 9090,
        help_heading = "Observability"
    )]
    pub metrics_port: u16,

    /// Log level (trace, debug, info, warn, error) or a tracing filter directive.
    #[arg(
        long,
        env = "LOG_LEVEL",
        default_value = "info",
        help_heading = "Observability"
    )]
    pub log_level: String,

    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        default_value = "text",
        help_heading = "Observability"
    )]
    pub log_format: LogFormat,

    /// Write logs to this file instead of stdout.
    #[arg(long, env = "LOG_FILE", help_heading = "Observability")]
    pub log_file: Option<PathBuf>,

    /// Export traces over OTLP/gRPC to --otlp-endpoint, with W3C trace context sent upstream.
    #[arg(long, env = "TRACING", help_heading = "Observability")]
    pub tracing: bool,

    /// OTLP collector endpoint.
    #[arg(
        long,
        env = "OTLP_ENDPOINT",
        default_value = "http://localhost:4317",
        help_heading = "Observability"
    )]
    pub otlp_endpoint: String,

    // failover carry-over: follow peers' flashblocks, carry a dead leader's preconfirmations.
    #[allow(missing_docs)] // clap would print a doc comment here as help text
    #[command(flatten)]
    pub failover: crate::failover::cli::FailoverArgs,
}

/// Operator commands.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Talk to a running instance's debug server.
    Debug {
        /// What to do.
        #[command(subcommand)]
        command: DebugCommand,
    },
}

/// Debug API commands.
#[derive(Clone, Debug, Subcommand)]
pub enum DebugCommand {
    /// Switch the execution mode (enabled | dry-run | disabled).
    SetExecutionMode {
        /// The new mode.
        #[arg(value_parser = parse_mode)]
        execution_mode: ExecutionMode,
    },
    /// Print the current execution mode.
    ExecutionMode,
    /// List the builders: name, URL, healthy, enabled, last outcome.
    Builders,
    /// Enable or disable one builder (takes effect on the next FCU).
    SetBuilderEnabled {
        /// The builder's name (see `debug builders`).
        name: String,
        /// true or false.
        #[arg(action = clap::ArgAction::Set)]
        enabled: bool,
    },
}

fn parse_mode(s: &str) -> Result<ExecutionMode, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every default rollup-boost 0.7.17 documents (its `cli.rs`, `client/rpc.rs` and
    /// `flashblocks/args.rs`), pinned. `--ignore-unhealthy-builders` is the one deliberate
    /// difference (docs/migration-from-rollup-boost.md, "Compatibility with rollup-boost").
    #[test]
    fn defaults_match_rollup_boost() {
        let a = Args::try_parse_from(["engine-mux"]).unwrap();
        assert!(
            !a.prevalidate_builder_payload,
            "nothing rollup-boost does not do is on by default"
        );
        assert_eq!(
            (a.health_degrade_after_ms, a.health_recover_after_ms),
            (0, 0),
            "/healthz follows the evidence at once, as rollup-boost's does"
        );
        assert_eq!(a.builders.extra_builders.len(), 0);
        assert_eq!(a.rpc_host, "127.0.0.1");
        assert_eq!(a.rpc_port, 8081);
        assert_eq!(a.debug_host, "127.0.0.1");
        assert_eq!(a.debug_server_port, 5555);
        assert!(!a.metrics);
        assert_eq!(a.metrics_host, "127.0.0.1");
        assert_eq!(a.metrics_port, 9090);
        assert_eq!(a.log_level, "info");
        assert_eq!(a.log_format, LogFormat::Text);
        assert!(a.log_file.is_none());
        assert!(!a.tracing);
        assert_eq!(a.otlp_endpoint, "http://localhost:4317");
        assert_eq!(a.l2.l2_url, "http://127.0.0.1:8551");
        assert_eq!(a.builder.builder_url, "http://127.0.0.1:8551");
        assert_eq!(a.l2.l2_timeout, 1000);
        assert_eq!(a.builder.builder_timeout, 1000);
        assert_eq!(a.health_check_interval, 60);
        assert_eq!(a.max_unsafe_interval, 10);
        assert_eq!(a.execution_mode, ExecutionMode::Enabled);
        assert!(a.block_selection_policy.is_none());
        let fb = &a.flashblocks;
        assert!(!fb.enabled);
        assert_eq!(fb.flashblocks_builder_url, "ws://127.0.0.1:1111");
        assert_eq!(fb.flashblocks_host, "127.0.0.1");
        assert_eq!(fb.flashblocks_port, 1112);
        assert_eq!(fb.flashblock_builder_ws_initial_reconnect_ms, 10);
        assert_eq!(fb.flashblock_builder_ws_max_reconnect_ms, 5000);
        assert_eq!(fb.flashblock_builder_ws_connect_timeout_ms, 5000);
        assert_eq!(fb.flashblock_builder_ws_ping_interval_ms, 500);
        assert_eq!(fb.flashblock_builder_ws_pong_timeout_ms, 1500);
        assert!(!a.external_state_root && !a.flashblocks_p2p.flashblocks_p2p);
        // The deliberate difference: rollup-boost defaults to false.
        assert!(a.ignore_unhealthy_builders);
        assert!(!a.auth.require_auth_all);
    }

    /// The environment variable names rollup-boost reads, each accepted here.
    #[test]
    fn rollup_boost_env_var_names_are_read() {
        let cmd = <Args as clap::CommandFactory>::command();
        let mut envs: Vec<String> = Vec::new();
        fn collect(cmd: &clap::Command, envs: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(e) = arg.get_env() {
                    envs.push(e.to_string_lossy().into_owned());
                }
            }
        }
        collect(&cmd, &mut envs);
        for name in [
            "L2_URL",
            "L2_JWT_TOKEN",
            "L2_JWT_PATH",
            "L2_TIMEOUT",
            "BUILDER_URL",
            "BUILDER_JWT_TOKEN",
            "BUILDER_JWT_PATH",
            "BUILDER_TIMEOUT",
            "RPC_HOST",
            "RPC_PORT",
            "TRACING",
            "METRICS",
            "METRICS_HOST",
            "METRICS_PORT",
            "OTLP_ENDPOINT",
            "LOG_LEVEL",
            "LOG_FORMAT",
            "LOG_FILE",
            "DEBUG_HOST",
            "DEBUG_SERVER_PORT",
            "EXECUTION_MODE",
            "BLOCK_SELECTION_POLICY",
            "EXTERNAL_STATE_ROOT",
            "IGNORE_UNHEALTHY_BUILDERS",
            "HEALTH_CHECK_INTERVAL",
            "MAX_UNSAFE_INTERVAL",
            "FLASHBLOCKS",
            "FLASHBLOCKS_BUILDER_URL",
            "FLASHBLOCKS_HOST",
            "FLASHBLOCKS_PORT",
            "FLASHBLOCK_BUILDER_WS_INITIAL_RECONNECT_MS",
            "FLASHBLOCK_BUILDER_WS_MAX_RECONNECT_MS",
            "FLASHBLOCK_BUILDER_WS_CONNECT_TIMEOUT_MS",
            "FLASHBLOCK_BUILDER_WS_PING_INTERVAL_MS",
            "FLASHBLOCK_BUILDER_WS_PONG_TIMEOUT_MS",
            "FLASHBLOCKS_P2P",
            "FLASHBLOCKS_AUTHORIZER_SK",
            "FLASHBLOCKS_BUILDER_VK",
        ] {
            assert!(envs.iter().any(|e| e == name), "{name} is not read");
        }
    }

    #[test]
    fn mode_accepts_both_spellings() {
        for s in ["dry-run", "dry_run"] {
            let a = Args::try_parse_from(["engine-mux", "--execution-mode", s]).unwrap();
            assert_eq!(a.execution_mode, ExecutionMode::DryRun);
        }
        assert!(Args::try_parse_from(["engine-mux", "--execution-mode", "fast"]).is_err());
        let a =
            Args::try_parse_from(["engine-mux", "--block-selection-policy", "gas-used"]).unwrap();
        assert_eq!(a.block_selection_policy, Some(SelectionPolicyArg::GasUsed));
    }
}
