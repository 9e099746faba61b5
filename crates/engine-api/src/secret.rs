//! A JWT secret from command-line flags: a hex token, or a file holding one (surrounding
//! whitespace ignored). Errors name the flag the value came from, so each binary's message
//! points at its own flag.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// The 32-byte HS256 secret of the Engine API's JWTs: alloy's type with the `jwt` feature
/// (validation needs it), else this crate's own type of the same name, which only mints.
#[cfg(feature = "jwt")]
pub use alloy_rpc_types_engine::JwtSecret;
#[cfg(not(feature = "jwt"))]
pub use light::JwtSecret;

#[cfg(not(feature = "jwt"))]
mod light {
    use alloy_primitives::hex;

    /// Bytes in a secret.
    const LEN: usize = 32;

    /// A JWT secret that mints tokens and nothing else: the same hex form and API subset
    /// (`from_hex`, `as_bytes`) as alloy's `JwtSecret`, without jsonwebtoken behind it.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct JwtSecret([u8; LEN]);

    impl JwtSecret {
        /// 64 hex digits, an optional `0x` prefix, surrounding whitespace ignored.
        pub fn from_hex<S: AsRef<str>>(hex: S) -> Result<Self, HexError> {
            let hex = hex.as_ref().trim();
            match hex::decode_to_array(hex) {
                Ok(bytes) => Ok(Self(bytes)),
                Err(hex::FromHexError::InvalidStringLength | hex::FromHexError::OddLength) => {
                    let digits = hex
                        .strip_prefix("0x")
                        .or_else(|| hex.strip_prefix("0X"))
                        .unwrap_or(hex);
                    Err(HexError(format!(
                        "JWT key is expected to have a length of {} digits. {} digits key provided",
                        LEN * 2,
                        digits.len()
                    )))
                }
                Err(e) => Err(HexError(e.to_string())),
            }
        }

        /// The secret's bytes (the HMAC key).
        pub fn as_bytes(&self) -> &[u8] {
            &self.0
        }
    }

    impl std::fmt::Debug for JwtSecret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // Never the bytes: configurations holding a secret are logged.
            f.debug_tuple("JwtSecret").field(&"{{}}").finish()
        }
    }

    /// Why a hex string is not a secret.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{0}")]
    pub struct HexError(String);
}

/// The names (without dashes) of the two flags a secret may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretFlags {
    /// The flag holding the hex secret itself.
    pub token: &'static str,
    /// The flag naming a file that holds the hex secret.
    pub path: &'static str,
}

/// Why no secret could be loaded.
#[derive(Debug)]
pub enum SecretError {
    /// The token (or the file's content) is not 32 bytes of hex.
    Malformed {
        /// The flag the value came from.
        flag: &'static str,
        /// What is wrong, with the file's path first when it came from one.
        reason: String,
    },
    /// The file could not be read.
    Unreadable {
        /// The path flag.
        flag: &'static str,
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SecretError {
    /// The flag to fix.
    pub fn flag(&self) -> &'static str {
        match self {
            SecretError::Malformed { flag, .. } | SecretError::Unreadable { flag, .. } => flag,
        }
    }

    /// What is wrong, without the flag.
    pub fn reason(&self) -> String {
        match self {
            SecretError::Malformed { reason, .. } => {
                format!("malformed JWT secret: {reason} (expected 64 hex characters)")
            }
            SecretError::Unreadable { path, source, .. } => {
                format!("cannot read {}: {source}", path.display())
            }
        }
    }
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{}: {}", self.flag(), self.reason())
    }
}

impl std::error::Error for SecretError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SecretError::Unreadable { source, .. } => Some(source),
            SecretError::Malformed { .. } => None,
        }
    }
}

/// The secret from `token` if given, else from the file at `path`; `None` when neither is.
pub fn load_secret(
    token: Option<&str>,
    path: Option<&Path>,
    flags: SecretFlags,
) -> Result<Option<JwtSecret>, SecretError> {
    if let Some(hex) = token {
        return JwtSecret::from_hex(hex)
            .map(Some)
            .map_err(|e| SecretError::Malformed {
                flag: flags.token,
                reason: e.to_string(),
            });
    }
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
        flag: flags.path,
        path: path.to_path_buf(),
        source,
    })?;
    JwtSecret::from_hex(text.trim())
        .map(Some)
        .map_err(|e| SecretError::Malformed {
            flag: flags.path,
            reason: format!("{}: {e}", path.display()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: SecretFlags = SecretFlags {
        token: "x-jwt-token",
        path: "x-jwt-path",
    };

    #[test]
    fn token_wins_file_is_trimmed_and_nothing_is_none() {
        let hex = "ab".repeat(32);
        let want = JwtSecret::from_hex(&hex).unwrap();
        let file = std::env::temp_dir().join(format!("engine-api-secret-{}", std::process::id()));
        std::fs::write(&file, format!("  {hex}\n")).unwrap();
        let from_file = load_secret(None, Some(&file), FLAGS).unwrap();
        let other = "cd".repeat(32);
        let token_wins = load_secret(Some(&other), Some(&file), FLAGS).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(from_file, Some(want));
        assert_eq!(token_wins, Some(JwtSecret::from_hex(&other).unwrap()));
        assert_eq!(load_secret(None, None, FLAGS).unwrap(), None);
    }

    #[test]
    fn errors_name_the_flag_and_the_problem() {
        let bad = load_secret(Some("zz"), None, FLAGS)
            .unwrap_err()
            .to_string();
        assert!(
            bad.starts_with("--x-jwt-token: malformed JWT secret"),
            "{bad}"
        );
        let missing = Path::new("/nonexistent/jwt.hex");
        let err = load_secret(None, Some(missing), FLAGS).unwrap_err();
        assert!(
            matches!(&err, SecretError::Unreadable { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        let text = err.to_string();
        assert!(
            text.starts_with("--x-jwt-path: cannot read /nonexistent/jwt.hex"),
            "{text}"
        );
        let file =
            std::env::temp_dir().join(format!("engine-api-bad-secret-{}", std::process::id()));
        std::fs::write(&file, "not hex").unwrap();
        let text = load_secret(None, Some(&file), FLAGS)
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&file).unwrap();
        assert!(
            text.starts_with("--x-jwt-path: malformed JWT secret:")
                && text.contains(&file.display().to_string()),
            "{text}"
        );
    }
}
