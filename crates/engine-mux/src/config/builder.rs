//! A [`Config`] built in code, for a node that embeds engine-mux: no flags, no environment, no
//! files. Every setting starts at the command line's default; [`ConfigBuilder::build`] runs
//! the checks the command line's configuration goes through too (it is built here), and a
//! refusal names the flag that sets the same value.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use engine_api::{JwtSecret, UpstreamConfig, tls::TrustedRoots};

use super::{
    BuilderConfig, Config, ConfigError, FlashblocksConfig, FlashblocksP2pConfig, HealthConfig,
    LocalElConfig, LogConfig, args::LogFormat,
};
use crate::{
    execution_mode::ExecutionMode,
    select::{BuilderPolicy, SelectionPolicy},
};

/// The Engine API's getPayload timeout; engine-mux's own budget stays under it.
const ENGINE_API_GET_PAYLOAD_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for HealthConfig {
    /// `--health-check-interval 60`, `--max-unsafe-interval 10`, no degrade/recover tolerance.
    fn default() -> Self {
        Self::every(Duration::from_secs(60), Duration::from_secs(10))
    }
}

impl HealthConfig {
    /// Probes every `check_interval` (faster, at most 500 ms apart, while something is
    /// unhealthy); an upstream whose latest block is older than `max_unsafe_interval` is behind.
    pub fn every(check_interval: Duration, max_unsafe_interval: Duration) -> Self {
        Self {
            check_interval,
            fast_interval: check_interval.min(Duration::from_millis(500)),
            max_unsafe_interval,
            tolerance: crate::health::Tolerance::default(),
        }
    }
}

impl Default for LogConfig {
    /// `--log-level info`, text, to stdout, no OTLP export.
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            file: None,
            otlp: None,
        }
    }
}

impl BuilderConfig {
    /// A builder over HTTP named `name` (logs, metrics, the debug API), called with `secret`
    /// and bounded by `timeout` (`--builder-timeout`, 1000 ms by default), enabled, priority 0.
    pub fn http(name: &'static str, url: http::Uri, secret: JwtSecret, timeout: Duration) -> Self {
        Self {
            name,
            upstream: UpstreamConfig {
                name: "builder",
                url,
                secret: Some(secret),
                timeout,
                max_response_bytes: engine_api::upstream::DEFAULT_MAX_RESPONSE_BYTES,
            },
            flashblocks_url: None,
            priority: 0,
            enabled: true,
        }
    }

    /// With its flashblocks stream at `url` (`ws://` or `wss://`; needs
    /// [`ConfigBuilder::flashblocks`]).
    pub fn with_flashblocks(mut self, url: impl Into<String>) -> Self {
        self.flashblocks_url = Some(url.into());
        self
    }

    /// With priority `priority` (lower is preferred).
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }
}

/// Who may call the RPC port's `engine_*` methods.
#[derive(Clone, Copy, Debug)]
enum InboundAuth {
    /// The local EL's JWT secret, as rollup-boost does (none for an in-process EL).
    LocalElSecret,
    /// This secret.
    Secret(JwtSecret),
    /// Nobody is checked (`--no-inbound-auth`).
    Off,
}

/// Builds a [`Config`] in code; see [`Config::builder`].
#[derive(Debug)]
#[must_use = "call build() for the configuration"]
pub struct ConfigBuilder {
    config: Config,
    inbound: InboundAuth,
}

impl Config {
    /// A configuration whose local EL is `l2`, every other setting at the command line's
    /// default (listening on 127.0.0.1:8081, debug on 127.0.0.1:5555, no metrics port, no
    /// builder until one is added).
    pub fn builder(l2: LocalElConfig) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                l2,
                builders: Vec::new(),
                builder_policy: BuilderPolicy::GasUsed,
                builder_grace: Duration::from_millis(50),
                inbound_secret: None,
                require_auth_all: false,
                rpc_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
                debug_addr: SocketAddr::from(([127, 0, 0, 1], 5555)),
                metrics_addr: None,
                max_request_body: 32 * 1024 * 1024,
                execution_mode: ExecutionMode::Enabled,
                selection: SelectionPolicy::AlwaysBuilder,
                get_payload_deadline: Duration::from_millis(800),
                external_state_root: false,
                prevalidate_lead: None,
                ignore_unhealthy_builders: true,
                payload_id_capacity: 1024,
                builder_queue_depth: 256,
                catch_up_depth: Some(64),
                catch_up_budget: Duration::from_secs(10),
                health: HealthConfig::default(),
                log: LogConfig::default(),
                flashblocks: None,
                flashblocks_p2p: None,
                failover: None,
                peer_key: None,
                tls_roots: TrustedRoots::system(),
            },
            inbound: InboundAuth::LocalElSecret,
        }
    }
}

impl ConfigBuilder {
    /// Adds a builder (`--builder-url`, `--extra-builder`); builders are ranked by priority,
    /// then in the order added.
    pub fn builder(mut self, builder: BuilderConfig) -> Self {
        self.config.builders.push(builder);
        self
    }

    /// How builders' blocks are ranked against each other (`--builder-policy`).
    pub fn builder_policy(mut self, policy: BuilderPolicy) -> Self {
        self.config.builder_policy = policy;
        self
    }

    /// How long getPayload waits for the other builders once one builder's block is in
    /// (`--builder-grace-ms`).
    pub fn builder_grace(mut self, grace: Duration) -> Self {
        self.config.builder_grace = grace;
        self
    }

    /// The secret op-node's tokens are checked against on the RPC port (`--auth-jwt-*`); by
    /// default the local EL's (an in-process EL has none: then no check).
    pub fn inbound_secret(mut self, secret: JwtSecret) -> Self {
        self.inbound = InboundAuth::Secret(secret);
        self
    }

    /// No token check on the RPC port (`--no-inbound-auth`).
    pub fn no_inbound_auth(mut self) -> Self {
        self.inbound = InboundAuth::Off;
        self
    }

    /// Every method needs the token, not only `engine_*` (`--require-auth-all`).
    pub fn require_auth_all(mut self, on: bool) -> Self {
        self.config.require_auth_all = on;
        self
    }

    /// Where the Engine API, the proxy and `/healthz` listen (`--rpc-host`, `--rpc-port`;
    /// port 0 picks a free one, see [`crate::RunningMux::rpc_addr`]).
    pub fn rpc_addr(mut self, addr: SocketAddr) -> Self {
        self.config.rpc_addr = addr;
        self
    }

    /// Where the debug API listens (`--debug-host`, `--debug-server-port`).
    pub fn debug_addr(mut self, addr: SocketAddr) -> Self {
        self.config.debug_addr = addr;
        self
    }

    /// Serves Prometheus metrics at `addr` (`--metrics`, `--metrics-host`, `--metrics-port`).
    pub fn metrics_addr(mut self, addr: SocketAddr) -> Self {
        self.config.metrics_addr = Some(addr);
        self
    }

    /// The largest request body accepted on the RPC port (`--max-request-body-bytes`).
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.config.max_request_body = bytes;
        self
    }

    /// The execution mode at start (`--execution-mode`).
    pub fn execution_mode(mut self, mode: ExecutionMode) -> Self {
        self.config.execution_mode = mode;
        self
    }

    /// How a valid builder block is weighed against the local one (`--block-selection-policy`).
    pub fn selection(mut self, policy: SelectionPolicy) -> Self {
        self.config.selection = policy;
        self
    }

    /// The whole getPayload call's budget, under the Engine API's 1 s
    /// (`--get-payload-deadline-ms`).
    pub fn get_payload_deadline(mut self, deadline: Duration) -> Self {
        self.config.get_payload_deadline = deadline;
        self
    }

    /// Builder blocks carry no state root; the local EL rebuilds each (`--external-state-root`).
    pub fn external_state_root(mut self, on: bool) -> Self {
        self.config.external_state_root = on;
        self
    }

    /// Fetches and validates the builders' blocks `lead` before each slot's end
    /// (`--prevalidate-builder-payload`, `--prevalidate-lead-ms`; off with an external state
    /// root, whose rebuild is the validation).
    pub fn prevalidate(mut self, lead: Option<Duration>) -> Self {
        self.config.prevalidate_lead = lead;
        self
    }

    /// Whether a builder marked unhealthy is skipped (`--ignore-unhealthy-builders`).
    pub fn ignore_unhealthy_builders(mut self, on: bool) -> Self {
        self.config.ignore_unhealthy_builders = on;
        self
    }

    /// Capacity of each builder's payload-id map (`--payload-id-cache-size`).
    pub fn payload_id_capacity(mut self, capacity: usize) -> Self {
        self.config.payload_id_capacity = capacity;
        self
    }

    /// Depth of each builder's ordered call queue (`--builder-queue-depth`).
    pub fn builder_queue_depth(mut self, depth: usize) -> Self {
        self.config.builder_queue_depth = depth;
        self
    }

    /// Builder catch-up: how many recent blocks are kept for it (`None`: off,
    /// `--no-builder-catch-up`) and how long one run may replay (`--catch-up-budget-ms`).
    pub fn catch_up(mut self, depth: Option<usize>, budget: Duration) -> Self {
        self.config.catch_up_depth = depth.filter(|d| *d > 0);
        self.config.catch_up_budget = budget;
        self
    }

    /// Health probing and `/healthz`'s tolerance.
    pub fn health(mut self, health: HealthConfig) -> Self {
        self.config.health = health;
        self
    }

    /// Flashblocks in (from builders with a stream) and out (re-published at the outbound
    /// address) (`--flashblocks`).
    pub fn flashblocks(mut self, flashblocks: FlashblocksConfig) -> Self {
        self.config.flashblocks = Some(flashblocks);
        self
    }

    /// Flashblocks P2P authorization (`--flashblocks-p2p`).
    pub fn flashblocks_p2p(mut self, p2p: FlashblocksP2pConfig) -> Self {
        self.config.flashblocks_p2p = Some(p2p);
        self
    }

    /// Failover carry-over: the peers followed and the set's shared secret
    /// (`--flashblocks-peer-url`, `--flashblocks-peer-secret`).
    pub fn failover(
        mut self,
        failover: crate::failover::FailoverConfig,
        peer_key: crate::failover::signed::PeerKey,
    ) -> Self {
        self.config.failover = Some(failover);
        self.config.peer_key = Some(peer_key);
        self
    }

    /// The high-availability set's secret alone: signs the peer stream this instance serves
    /// (`--flashblocks-peer-secret` without peers to follow).
    pub fn peer_key(mut self, key: crate::failover::signed::PeerKey) -> Self {
        self.config.peer_key = Some(key);
        self
    }

    /// Roots `https://` and `wss://` upstreams must chain to (the system's by default; the
    /// command line uses `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub fn tls_roots(mut self, roots: TrustedRoots) -> Self {
        self.config.tls_roots = roots;
        self
    }

    /// Logging, for [`crate::telemetry::init`] (an embedder usually installs its own
    /// subscriber and leaves this alone).
    pub fn log(mut self, log: LogConfig) -> Self {
        self.config.log = log;
        self
    }

    /// The configuration, checked: the getPayload budget under 1 s, a gas threshold of at
    /// most 100 %, non-empty maps, queues and probe interval, unique builder names, flashblocks
    /// either over WebSocket or over P2P.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut c = self.config;
        c.inbound_secret = match self.inbound {
            InboundAuth::LocalElSecret => c.l2.secret(),
            InboundAuth::Secret(s) => Some(s),
            InboundAuth::Off => None,
        };
        if c.get_payload_deadline >= ENGINE_API_GET_PAYLOAD_TIMEOUT {
            return Err(ConfigError::OutOfRange {
                flag: "get-payload-deadline-ms",
                reason: "must stay under the Engine API's 1000 ms getPayload timeout".into(),
            });
        }
        if let SelectionPolicy::GasUsed { min_percent } = c.selection
            && min_percent > 100
        {
            return Err(ConfigError::OutOfRange {
                flag: "selection-min-gas-percent",
                reason: "must be 0..=100".into(),
            });
        }
        for (flag, v) in [
            ("payload-id-cache-size", c.payload_id_capacity),
            ("builder-queue-depth", c.builder_queue_depth),
        ] {
            if v == 0 {
                return Err(ConfigError::OutOfRange {
                    flag,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        if c.health.check_interval.is_zero() {
            return Err(ConfigError::OutOfRange {
                flag: "health-check-interval",
                reason: "must be greater than 0".into(),
            });
        }
        if c.flashblocks.is_some() && c.flashblocks_p2p.is_some() {
            return Err(ConfigError::Conflict {
                flag: "flashblocks-p2p",
                other: "flashblocks",
                reason: "the builder publishes flashblocks itself over P2P; engine-mux does not receive them over WebSocket",
            });
        }
        let mut names = HashSet::new();
        for b in &c.builders {
            if !names.insert(b.name) {
                return Err(ConfigError::Builder {
                    name: b.name.to_string(),
                    reason: "the name is used twice".into(),
                });
            }
            if b.flashblocks_url.is_some() && c.flashblocks.is_none() {
                return Err(ConfigError::Builder {
                    name: b.name.to_string(),
                    reason: "flashblocks-url is set but --flashblocks is off".into(),
                });
            }
        }
        // Stable: equal priorities keep the order the builders were added in.
        c.builders.sort_by_key(|b| b.priority);
        // With an external state root the rebuild is the validation, on the first ask only.
        if c.external_state_root {
            c.prevalidate_lead = None;
        }
        Ok(c)
    }
}
