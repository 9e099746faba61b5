//! Validated configuration, parsed once from [`Args`].

use std::{net::SocketAddr, time::Duration};

use engine_api::{JwtSecret, tls::TrustedRoots};

use crate::cli::Args;

/// Why the flags do not make a usable configuration; each variant names its flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value could not be parsed or is out of range.
    #[error("--{flag}: {reason}")]
    Invalid {
        /// The flag (without dashes).
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the flashblocks stream is consumed.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// WebSocket URL.
    pub url: String,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Silence after which the connection is considered dead.
    pub idle_timeout: Duration,
}

/// Bounds of the pending state.
#[derive(Debug, Clone, Copy)]
pub struct PendingConfig {
    /// Most pending blocks held.
    pub max_blocks: usize,
    /// Most flashblocks per block.
    pub max_flashblocks_per_block: u64,
    /// Pending answers need a head observation at most this old.
    pub head_max_age: Duration,
}

/// The upstream EL.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// HTTP URL.
    pub url: http::Uri,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Head poll period.
    pub head_poll_interval: Duration,
    /// Largest response accepted.
    pub max_response_bytes: usize,
    /// JWT secret to mint tokens with, for an authenticated upstream (`Debug` redacts it).
    pub jwt: Option<JwtSecret>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Flashblocks stream.
    pub stream: StreamConfig,
    /// Upstream EL.
    pub upstream: UpstreamSettings,
    /// Pending state bounds.
    pub pending: PendingConfig,
    /// JSON-RPC listen address (HTTP + WebSocket).
    pub rpc_addr: SocketAddr,
    /// Largest request body.
    pub max_request_bytes: u32,
    /// Most concurrent connections.
    pub max_connections: u32,
    /// Prometheus listen address, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Log filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Roots a `wss://` stream's certificate must chain to: what `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR` name when the configuration is built, else the system's.
    pub tls_roots: TrustedRoots,
}

fn addr(flag: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|e| invalid(flag, format!("{s:?} is not host:port ({e})")))
}

fn positive_ms(flag: &'static str, ms: u64) -> Result<Duration, ConfigError> {
    if ms == 0 {
        return Err(invalid(flag, "must be greater than 0"));
    }
    Ok(Duration::from_millis(ms))
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(a: Args) -> Result<Self, Self::Error> {
        let ws: url::Url = a
            .flashblocks_url
            .parse()
            .map_err(|e| invalid("flashblocks-url", format!("{:?}: {e}", a.flashblocks_url)))?;
        if !matches!(ws.scheme(), "ws" | "wss") {
            return Err(invalid("flashblocks-url", "scheme must be ws or wss"));
        }
        let up: url::Url = a
            .upstream_url
            .parse()
            .map_err(|e| invalid("upstream-url", format!("{:?}: {e}", a.upstream_url)))?;
        if up.scheme() != "http" {
            return Err(invalid("upstream-url", "scheme must be http"));
        }
        let upstream_uri: http::Uri = a
            .upstream_url
            .parse()
            .map_err(|e| invalid("upstream-url", format!("{e}")))?;
        let jwt = engine_api::secret::load_secret(
            a.upstream_jwt_secret.as_deref(),
            a.upstream_jwt_path.as_deref(),
            engine_api::secret::SecretFlags {
                token: "upstream-jwt-secret",
                path: "upstream-jwt-path",
            },
        )
        .map_err(|e| invalid(e.flag(), e.reason()))?;
        if a.max_pending_blocks == 0 {
            return Err(invalid("max-pending-blocks", "must be at least 1"));
        }
        if a.max_connections == 0 {
            return Err(invalid("max-connections", "must be at least 1"));
        }
        if a.max_flashblocks_per_block == 0 {
            return Err(invalid("max-flashblocks-per-block", "must be at least 1"));
        }
        if a.max_frame_bytes < 1024 {
            return Err(invalid("max-frame-bytes", "must be at least 1024"));
        }
        let reconnect_min = positive_ms("reconnect-min-ms", a.reconnect_min_ms)?;
        let reconnect_max = positive_ms("reconnect-max-ms", a.reconnect_max_ms)?;
        if reconnect_max < reconnect_min {
            return Err(invalid(
                "reconnect-max-ms",
                "must not be below --reconnect-min-ms",
            ));
        }
        let head_poll_interval = positive_ms("head-poll-interval-ms", a.head_poll_interval_ms)?;
        let head_max_age = positive_ms("head-max-age-ms", a.head_max_age_ms)?;
        if head_max_age <= head_poll_interval {
            return Err(invalid(
                "head-max-age-ms",
                "must be longer than --head-poll-interval-ms",
            ));
        }
        let log_format = match a.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log-format",
                    format!("{other:?}: expected text or json"),
                ));
            }
        };
        tracing_subscriber::EnvFilter::try_new(&a.log_level)
            .map_err(|e| invalid("log-level", e.to_string()))?;
        Ok(Self {
            stream: StreamConfig {
                url: a.flashblocks_url,
                max_frame_bytes: a.max_frame_bytes,
                reconnect_min,
                reconnect_max,
                idle_timeout: positive_ms("stream-idle-timeout-ms", a.stream_idle_timeout_ms)?,
            },
            upstream: UpstreamSettings {
                url: upstream_uri,
                timeout: positive_ms("upstream-timeout-ms", a.upstream_timeout_ms)?,
                head_poll_interval,
                max_response_bytes: a.max_response_bytes,
                jwt,
            },
            pending: PendingConfig {
                max_blocks: a.max_pending_blocks,
                max_flashblocks_per_block: a.max_flashblocks_per_block,
                head_max_age,
            },
            rpc_addr: addr("rpc-addr", &a.rpc_addr)?,
            max_request_bytes: a.max_request_bytes,
            max_connections: a.max_connections,
            metrics_addr: a
                .metrics
                .then(|| addr("metrics-addr", &a.metrics_addr))
                .transpose()?,
            log_level: a.log_level,
            log_format,
            tls_roots: TrustedRoots::from_env(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["flashblocks-rpc"];
        argv.extend_from_slice(extra);
        Config::try_from(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.pending.max_blocks, 4);
        assert_eq!(c.upstream.timeout, Duration::from_secs(2));
        assert!(c.metrics_addr.is_none());
        assert!(c.upstream.jwt.is_none());
        let secret = "ab".repeat(32);
        let c = parse(&["--upstream-jwt-secret", &secret]).unwrap();
        assert!(c.upstream.jwt.is_some());
        assert!(
            !format!("{c:?}").contains(&secret),
            "Debug redacts the secret"
        );
    }

    /// This crate builds engine-api without its `jwt` feature (no jsonwebtoken): the secret from
    /// the flag still mints the token an authenticated EL (op-geth's, op-reth's auth port)
    /// validates, equal to one computed apart (Python's hmac over jsonwebtoken's header, the
    /// value engine-api's tests also check against jsonwebtoken itself).
    #[test]
    fn upstream_jwt_secret_mints_the_engine_api_token_without_jsonwebtoken() {
        let c = parse(&["--upstream-jwt-secret", &"ab".repeat(32)]).unwrap();
        let secret = c.upstream.jwt.expect("the flag's secret");
        assert_eq!(
            engine_api::auth::mint_at(&secret, 1_700_000_000),
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpYXQiOjE3MDAwMDAwMDB9.Ul0uOa5EFWRuqEViaPnhnjcHSXdjIuJc9ELnC0DYFi4"
        );
        let other = parse(&["--upstream-jwt-secret", &format!("0x{}", "ac".repeat(32))])
            .unwrap()
            .upstream
            .jwt
            .expect("a 0x prefix is accepted");
        assert_ne!(
            engine_api::auth::mint_at(&other, 1_700_000_000),
            engine_api::auth::mint_at(&secret, 1_700_000_000)
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag) in [
            (&["--flashblocks-url", "http://x"][..], "--flashblocks-url"),
            (&["--upstream-url", "ws://x"][..], "--upstream-url"),
            (&["--rpc-addr", "nope"][..], "--rpc-addr"),
            (&["--max-pending-blocks", "0"][..], "--max-pending-blocks"),
            (&["--log-format", "xml"][..], "--log-format"),
            (&["--metrics", "--metrics-addr", "x"][..], "--metrics-addr"),
            (
                &["--reconnect-min-ms", "500", "--reconnect-max-ms", "100"][..],
                "--reconnect-max-ms",
            ),
            (&["--head-max-age-ms", "10"][..], "--head-max-age-ms"),
            (
                &["--upstream-jwt-secret", "zz"][..],
                "--upstream-jwt-secret",
            ),
            (
                &["--upstream-jwt-path", "/nonexistent/jwt.hex"][..],
                "--upstream-jwt-path",
            ),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.starts_with(flag), "{args:?}: {err}");
        }
    }
}
