//! Flag groups and value parsers several commands share (genesis, JWT, durations, URLs).

use std::{path::PathBuf, time::Duration};

use alloy_rpc_types_engine::JwtSecret;
use clap::Args;
use engine_api::secret::{SecretError, SecretFlags, load_secret};

use super::error::CliError;

/// Genesis selection shared by the components.
#[derive(Debug, Clone, Args)]
pub struct GenesisArgs {
    /// Genesis file in op-geth/op-reth format (default: the shipped chain-901 devnet genesis).
    #[arg(long, env = "DEVNET_GENESIS")]
    pub genesis: Option<PathBuf>,
    /// Genesis timestamp (default: now). Engines that share a chain need the same value.
    #[arg(long)]
    pub genesis_timestamp: Option<u64>,
    /// Activate Isthmus and Jovian this many seconds after genesis (default: at genesis), to
    /// exercise the engine V3 → V4 transition. Blocks advance timestamps by at least 1 s.
    #[arg(long = "isthmus-time", value_name = "SECS_AFTER_GENESIS")]
    pub isthmus_offset: Option<u64>,
}

/// JWT secret selection.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// Hex JWT secret.
    #[arg(long, env = "DEVNET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File with the hex JWT secret (created with a random secret if missing).
    #[arg(long)]
    pub jwt_path: Option<PathBuf>,
}

impl JwtArgs {
    /// The secret: from the flag, from the file (creating it), or a fresh random one.
    pub fn resolve(&self) -> Result<JwtSecret, CliError> {
        let flags = SecretFlags {
            token: "jwt-secret",
            path: "jwt-path",
        };
        match load_secret(self.jwt_secret.as_deref(), self.jwt_path.as_deref(), flags) {
            Ok(Some(secret)) => Ok(secret),
            Ok(None) => Ok(JwtSecret::random()),
            // A devnet convenience: a missing file is created with a fresh secret, so the
            // engines and an external op-node can share it across runs.
            Err(SecretError::Unreadable { path, source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let secret = JwtSecret::random();
                std::fs::write(&path, hex::encode(secret.as_bytes()))
                    .map_err(|source| CliError::JwtFile { path, source })?;
                Ok(secret)
            }
            Err(e) => Err(CliError::Jwt(e.to_string())),
        }
    }
}

/// Parses `250ms`, `2s`, `30m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || format!("invalid duration {s:?} (expected e.g. 250ms, 2s, 1.5, 30m)");
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| err());
    }
    if let Some(min) = s.strip_suffix('m') {
        return min
            .trim()
            .parse::<u64>()
            .map(|m| Duration::from_secs(m * 60))
            .map_err(|_| err());
    }
    let secs = s.strip_suffix('s').unwrap_or(s).trim();
    let secs: f64 = secs.parse().map_err(|_| err())?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses an http(s) URL.
pub fn parse_url(s: &str) -> Result<http::Uri, CliError> {
    s.parse()
        .map_err(|e: http::uri::InvalidUri| CliError::Url(s.to_string(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_file_is_created_when_missing_then_reused_and_a_bad_one_names_the_flag() {
        let path = std::env::temp_dir().join(format!("devnet-jwt-{}.hex", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let args = JwtArgs {
            jwt_secret: None,
            jwt_path: Some(path.clone()),
        };
        let created = args.resolve().unwrap();
        assert_eq!(
            args.resolve().unwrap(),
            created,
            "the file written is read back"
        );
        std::fs::write(&path, "not hex").unwrap();
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("--jwt-path"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let bad = JwtArgs {
            jwt_secret: Some("zz".into()),
            jwt_path: None,
        };
        assert!(
            bad.resolve()
                .unwrap_err()
                .to_string()
                .contains("--jwt-secret")
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("xm").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
