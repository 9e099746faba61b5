//! Parsing single values of the command line: secrets, URLs, addresses, durations.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::Path,
    time::Duration,
};

use engine_api::JwtSecret;
use http::Uri;

use super::ConfigError;

/// Checks a flashblocks WebSocket URL (`ws://` or `wss://` with a host).
pub(crate) fn parse_ws_url(flag: &'static str, url: &str) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl {
        flag,
        value: url.to_string(),
        reason: reason.into(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if !matches!(uri.scheme_str(), Some("ws" | "wss")) || uri.host().is_none_or(str::is_empty) {
        return Err(bad("expected ws://host:port or wss://host:port"));
    }
    Ok(url.to_string())
}

pub(crate) fn load_secret(
    token: Option<&str>,
    path: Option<&Path>,
    token_flag: &'static str,
    path_flag: &'static str,
) -> Result<Option<JwtSecret>, ConfigError> {
    let flags = engine_api::secret::SecretFlags {
        token: token_flag,
        path: path_flag,
    };
    engine_api::secret::load_secret(token, path, flags).map_err(|e| match e {
        engine_api::secret::SecretError::Malformed { flag, reason } => {
            ConfigError::BadJwt { flag, reason }
        }
        engine_api::secret::SecretError::Unreadable { flag, path, source } => {
            ConfigError::UnreadableJwt {
                flag,
                path,
                reason: source.to_string(),
            }
        }
    })
}

/// Parses an upstream URL; a bare `host:port` (rollup-boost's default form) means http.
pub(crate) fn parse_url(flag: &'static str, value: &str) -> Result<Uri, ConfigError> {
    let bad = |reason: String| ConfigError::BadUrl {
        flag,
        value: value.to_string(),
        reason,
    };
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(bad(format!(
                "scheme {other:?} is not supported (use http or https)"
            )));
        }
        None => return Err(bad("missing scheme".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("missing host".into()));
    }
    Ok(uri)
}

pub(super) fn resolve(
    flag: &'static str,
    host: &str,
    port: u16,
) -> Result<SocketAddr, ConfigError> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ConfigError::BadAddr {
            flag,
            value: format!("{host}:{port}"),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ConfigError::BadAddr {
            flag,
            value: format!("{host}:{port}"),
            reason: "no address".into(),
        })
}

pub(crate) fn millis(flag: &'static str, ms: u64) -> Result<Duration, ConfigError> {
    if ms == 0 {
        return Err(ConfigError::OutOfRange {
            flag,
            reason: "must be greater than 0".into(),
        });
    }
    Ok(Duration::from_millis(ms))
}
