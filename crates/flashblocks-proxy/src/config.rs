//! Validated configuration: everything parsed once at startup, so a malformed value is one clear
//! error naming its flag and never a panic later.

use std::{fmt, net::SocketAddr, time::Duration};

use engine_api::tls::TrustedRoots;
use url::Url;

use crate::{
    auth::{ApiKeyError, ApiKeys},
    cli::{Args, FailurePolicy, LogFormat, SendPath},
    client_ip::{IpNet, IpNetError},
};

/// A startup configuration error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value could not be used.
    #[error("invalid --{flag}: {reason}")]
    Invalid {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// `--api-keys` is malformed.
    #[error("invalid --api-keys: {0}")]
    ApiKeys(#[from] ApiKeyError),
    /// `--trusted-proxies` is malformed.
    #[error("invalid --trusted-proxies: {0}")]
    TrustedProxy(#[from] IpNetError),
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// Redis URL; its `Debug` hides credentials.
#[derive(Clone)]
pub struct RedisUrl(pub(crate) String);

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Url::parse(&self.0) {
            Ok(u) => write!(
                f,
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(6379)
            ),
            Err(_) => f.write_str("<redis url>"),
        }
    }
}

/// Shared limits through Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Server URL; with `cluster`, one or more seed nodes of the cluster.
    pub urls: Vec<RedisUrl>,
    /// Talk to a Redis Cluster (`--redis-cluster`): commands are routed by key slot.
    pub cluster: bool,
    /// Prefix of every key.
    pub key_prefix: String,
    /// What happens to new connections while Redis is unreachable.
    pub failure_policy: FailurePolicy,
    /// Lifetime of this instance's keys (refreshed every third of it).
    pub instance_ttl: Duration,
    /// Timeout of one Redis operation.
    pub timeout: Duration,
}

/// Connection limits.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Concurrent subscribers on this instance.
    pub instance: usize,
    /// Concurrent subscribers per client IP; `None` = no per-IP limit (`--per-ip-connection-limit 0`,
    /// as in websocket-proxy).
    pub per_ip: Option<usize>,
    /// Shared store; `None` = in-memory limits.
    pub redis: Option<RedisConfig>,
}

/// Upstream connection management.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Upstream WebSocket URLs; every flashblock is delivered once whichever delivers it first.
    pub urls: Vec<Url>,
    /// Upper bound of the reconnect backoff.
    pub max_backoff: Duration,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Silence (no pong, no message) after which the connection is dropped and re-dialled.
    pub pong_timeout: Duration,
    /// Roots a `wss://` upstream's certificate must chain to (from `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR`, else the system's).
    pub tls_roots: TrustedRoots,
}

/// Subscriber keepalive.
#[derive(Debug, Clone, Copy)]
pub struct ClientPingConfig {
    /// Interval between pings.
    pub interval: Duration,
    /// Silence after which the subscriber is disconnected.
    pub timeout: Duration,
}

/// Metrics endpoint.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Serve `/metrics` on `addr`.
    pub enabled: bool,
    /// Listen address of the endpoint.
    pub addr: SocketAddr,
    /// Labels added to every series.
    pub global_labels: Vec<(String, String)>,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `EnvFilter` directive.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

/// The validated proxy configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Subscriber listen address.
    pub listen_addr: SocketAddr,
    /// Upstreams.
    pub upstream: UpstreamConfig,
    /// Messages a subscriber may fall behind before it is disconnected.
    pub message_buffer_size: usize,
    /// Connection limits.
    pub limits: LimitsConfig,
    /// API keys; empty = public endpoint.
    pub api_keys: ApiKeys,
    /// Brotli-compress outgoing messages.
    pub compression: bool,
    /// Writer shards.
    pub fanout_shards: usize,
    /// How the shards send frames.
    pub send_path: SendPath,
    /// Header holding the client IP behind a trusted proxy.
    pub ip_header: String,
    /// Peers whose IP header is trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// Subscriber keepalive; `None` = disabled.
    pub client_ping: Option<ClientPingConfig>,
    /// Metrics.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Upper bound on `--message-buffer-size`: beyond it a "lagging" client is just unbounded memory.
pub const MAX_MESSAGE_BUFFER_SIZE: usize = 65_536;

fn ms(flag: &'static str, v: u64) -> Result<Duration, ConfigError> {
    if v == 0 {
        return Err(invalid(flag, "must be greater than 0"));
    }
    Ok(Duration::from_millis(v))
}

fn socket_addr(flag: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(flag, format!("`{v}` is not an `ip:port` socket address")))
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(a: Args) -> Result<Self, Self::Error> {
        let listen_addr = socket_addr("listen-addr", &a.listen_addr)?;

        let mut urls = Vec::new();
        for raw in a
            .upstream_ws
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let url = Url::parse(raw)
                .map_err(|e| invalid("upstream-ws", format!("`{raw}` is not a URL: {e}")))?;
            // `wss://` trusts the system's roots, or those in SSL_CERT_FILE / SSL_CERT_DIR.
            if !matches!(url.scheme(), "ws" | "wss") || url.host_str().is_none() {
                return Err(invalid(
                    "upstream-ws",
                    format!("`{raw}` is not a ws:// or wss:// URL"),
                ));
            }
            urls.push(url);
        }
        if urls.is_empty() {
            return Err(invalid("upstream-ws", "at least one upstream is required"));
        }

        if a.message_buffer_size == 0 || a.message_buffer_size > MAX_MESSAGE_BUFFER_SIZE {
            return Err(invalid(
                "message-buffer-size",
                format!("must be between 1 and {MAX_MESSAGE_BUFFER_SIZE}"),
            ));
        }

        let redis = match a
            .redis_url
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(raw) => {
                let urls: Vec<&str> = raw.split(',').map(str::trim).collect();
                if urls.len() > 1 && !a.redis_cluster {
                    return Err(invalid(
                        "redis-url",
                        "several URLs are only accepted with --redis-cluster",
                    ));
                }
                // Validate now: the client only parses the URL, it does not connect.
                for url in &urls {
                    redis::Client::open(*url)
                        .map_err(|e| invalid("redis-url", format!("not a Redis URL: {e}")))?;
                }
                if a.redis_key_prefix.is_empty() {
                    return Err(invalid("redis-key-prefix", "must not be empty"));
                }
                Some(RedisConfig {
                    urls: urls.iter().map(|u| RedisUrl(u.to_string())).collect(),
                    cluster: a.redis_cluster,
                    key_prefix: a.redis_key_prefix.clone(),
                    failure_policy: a.redis_failure_policy,
                    instance_ttl: ms("redis-instance-ttl-ms", a.redis_instance_ttl_ms)?,
                    timeout: ms("redis-timeout-ms", a.redis_timeout_ms)?,
                })
            }
        };

        let api_keys = ApiKeys::parse(&a.api_keys)?;
        let trusted_proxies = a
            .trusted_proxies
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<IpNet>, _>>()?;

        let header = a.ip_addr_http_header.trim();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "ip-addr-http-header",
                format!("`{header}` is not an HTTP header name"),
            ));
        }

        let mut global_labels = Vec::new();
        for pair in a
            .metrics_global_labels
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                invalid(
                    "metrics-global-labels",
                    format!("`{pair}` is not `name=value`"),
                )
            })?;
            let k = k.trim();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid(
                    "metrics-global-labels",
                    format!("`{k}` is not a label name"),
                ));
            }
            global_labels.push((k.to_string(), v.trim().to_string()));
        }
        if a.metrics_host_label {
            global_labels.push(("host".to_string(), hostname()));
        }

        let client_ping = if a.client_ping_enabled {
            Some(ClientPingConfig {
                interval: ms("client-ping-interval-ms", a.client_ping_interval_ms)?,
                timeout: ms("client-pong-timeout-ms", a.client_pong_timeout_ms)?,
            })
        } else {
            None
        };

        Ok(Self {
            listen_addr,
            upstream: UpstreamConfig {
                urls,
                max_backoff: ms("subscriber-max-interval-ms", a.subscriber_max_interval_ms)?,
                ping_interval: ms("subscriber-ping-interval-ms", a.subscriber_ping_interval_ms)?,
                pong_timeout: ms("subscriber-pong-timeout-ms", a.subscriber_pong_timeout_ms)?,
                // Read once here, as OpenSSL-based tools read them: a private CA needs no flag.
                tls_roots: TrustedRoots::from_env(),
            },
            message_buffer_size: a.message_buffer_size,
            limits: LimitsConfig {
                instance: a.instance_connection_limit,
                // 0 means unlimited, as websocket-proxy reads it.
                per_ip: (a.per_ip_connection_limit != 0).then_some(a.per_ip_connection_limit),
                redis,
            },
            api_keys,
            compression: a.enable_compression,
            fanout_shards: if a.fanout_shards == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                a.fanout_shards
            },
            send_path: a.send_path,
            ip_header: header.to_string(),
            trusted_proxies,
            client_ping,
            metrics: MetricsConfig {
                enabled: a.metrics,
                addr: socket_addr("metrics-addr", &a.metrics_addr)?,
                global_labels,
            },
            log: LogConfig {
                level: a.log_level,
                format: a.log_format,
            },
        })
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["flashblocks-proxy", "--upstream-ws", "ws://127.0.0.1:1111"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_match_websocket_proxy() {
        let c = Config::try_from(args(&[])).unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:8545".parse().unwrap());
        assert_eq!(c.message_buffer_size, 20);
        assert_eq!(c.limits.instance, 100);
        assert_eq!(c.limits.per_ip, Some(10));
        assert!(c.limits.redis.is_none());
        assert!(c.api_keys.is_empty());
        assert!(!c.compression);
        assert_eq!(c.ip_header, "X-Forwarded-For");
        assert!(c.metrics.enabled);
        assert_eq!(c.metrics.addr, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.upstream.max_backoff, Duration::from_millis(20_000));
        assert_eq!(c.upstream.ping_interval, Duration::from_millis(2_000));
        assert_eq!(c.upstream.pong_timeout, Duration::from_millis(4_000));
        assert!(c.client_ping.is_none());
        assert_eq!(
            c.send_path,
            SendPath::Auto,
            "io_uring where available by default"
        );
        let c = Config::try_from(args(&["--send-path", "write"])).unwrap();
        assert_eq!(c.send_path, SendPath::Write);
        assert!(
            Args::try_parse_from(["p", "--upstream-ws", "ws://h:1", "--send-path", "uring"])
                .is_err()
        );
        let c = Config::try_from(args(&["--metrics", "false", "--client-ping-enabled"])).unwrap();
        assert!(!c.metrics.enabled);
        assert_eq!(
            c.client_ping.unwrap().interval,
            Duration::from_millis(15_000)
        );
        assert_eq!(
            c.client_ping.unwrap().timeout,
            Duration::from_millis(30_000)
        );
    }

    #[test]
    fn several_upstreams_comma_separated() {
        let a = Args::try_parse_from(["x", "--upstream-ws", "ws://a:1,ws://b:2/path"]).unwrap();
        let c = Config::try_from(a).unwrap();
        assert_eq!(c.upstream.urls.len(), 2);
    }

    #[test]
    fn wss_upstreams_are_accepted() {
        let a = Args::try_parse_from(["x", "--upstream-ws", "wss://a:443,ws://b:2"]).unwrap();
        let c = Config::try_from(a).unwrap();
        assert_eq!(c.upstream.urls[0].scheme(), "wss");
    }

    fn err(extra: &[&str]) -> String {
        Config::try_from(args(extra)).unwrap_err().to_string()
    }

    #[test]
    fn redis_cluster_takes_seed_nodes_and_per_ip_zero_is_unlimited() {
        let c = Config::try_from(args(&[
            "--redis-cluster",
            "--redis-url",
            "redis://10.0.0.1:7000, redis://10.0.0.2:7000",
            "--per-ip-connection-limit",
            "0",
        ]))
        .unwrap();
        let redis = c.limits.redis.unwrap();
        assert!(redis.cluster);
        assert_eq!(redis.urls.len(), 2);
        assert_eq!(c.limits.per_ip, None);
        assert!(
            err(&["--redis-url", "redis://a:1,redis://b:2"]).contains("--redis-cluster"),
            "several URLs without --redis-cluster"
        );
        let single = Config::try_from(args(&["--redis-url", "redis://a:1"])).unwrap();
        assert!(!single.limits.redis.unwrap().cluster);
    }

    #[test]
    fn malformed_values_name_their_flag() {
        assert!(err(&["--api-keys", "app:key:lots"]).contains("--api-keys"));
        assert!(err(&["--redis-url", "not a url"]).contains("--redis-url"));
        assert!(err(&["--listen-addr", "nowhere"]).contains("--listen-addr"));
        assert!(err(&["--trusted-proxies", "10.0.0.0/99"]).contains("--trusted-proxies"));
        assert!(err(&["--metrics-global-labels", "novalue"]).contains("--metrics-global-labels"));
        assert!(err(&["--message-buffer-size", "0"]).contains("--message-buffer-size"));
        let a = Args::try_parse_from(["x", "--upstream-ws", "http://a:1"]).unwrap();
        assert!(
            Config::try_from(a)
                .unwrap_err()
                .to_string()
                .contains("--upstream-ws")
        );
        let a = Args::try_parse_from(["x", "--upstream-ws", "::::"]).unwrap();
        assert!(
            Config::try_from(a)
                .unwrap_err()
                .to_string()
                .contains("--upstream-ws")
        );
        // A non-number for a numeric flag is a clap error, not a panic.
        assert!(
            Args::try_parse_from([
                "x",
                "--upstream-ws",
                "ws://a",
                "--per-ip-connection-limit",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn redis_url_debug_hides_password() {
        let c = Config::try_from(args(&[
            "--redis-url",
            "redis://user:hunter2@127.0.0.1:6390/0",
        ]))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
