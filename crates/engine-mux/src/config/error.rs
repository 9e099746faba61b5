//! What can be wrong with a configuration; every message names the flag to fix.

use std::path::PathBuf;

/// A configuration problem; the message names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither the token nor the path flag was given.
    #[error("no JWT secret for {what}: set --{flag}-jwt-token or --{flag}-jwt-path")]
    MissingJwt {
        /// Which upstream.
        what: &'static str,
        /// Flag prefix.
        flag: &'static str,
    },
    /// The secret is not 32 bytes of hex.
    #[error("--{flag}: malformed JWT secret: {reason} (expected 64 hex characters)")]
    BadJwt {
        /// The flag.
        flag: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The secret file could not be read.
    #[error("--{flag}: cannot read {path}: {reason}")]
    UnreadableJwt {
        /// The flag.
        flag: &'static str,
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A URL did not parse or is not http(s).
    #[error("--{flag}: invalid URL {value:?}: {reason}")]
    BadUrl {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What was wrong.
        reason: String,
    },
    /// A host:port pair did not resolve.
    #[error("--{flag}: cannot resolve {value:?}: {reason}")]
    BadAddr {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What was wrong.
        reason: String,
    },
    /// Two flags that cannot be used together.
    #[error("--{flag} conflicts with --{other}: {reason}")]
    Conflict {
        /// The flag.
        flag: &'static str,
        /// The one it conflicts with.
        other: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A flag that only means something with another was given without it, or the other way.
    #[error("--{flag}: {reason}")]
    Requires {
        /// The flag.
        flag: &'static str,
        /// What is missing.
        reason: &'static str,
    },
    /// A key that does not parse (the value itself is never echoed: it may be a secret).
    #[error("--{flag}: malformed key: {reason}")]
    BadKey {
        /// The flag.
        flag: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// One builder's entry (from --extra-builder or --builders-file) is wrong.
    #[error("builder {name:?}: {reason}")]
    Builder {
        /// The builder's name (or its position when it has none).
        name: String,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The builders file cannot be read or parsed.
    #[error("--builders-file {path}: {reason}")]
    BuildersFile {
        /// The path given.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A value out of its allowed range.
    #[error("--{flag}: {reason}")]
    OutOfRange {
        /// The flag.
        flag: &'static str,
        /// What was wrong.
        reason: String,
    },
}
