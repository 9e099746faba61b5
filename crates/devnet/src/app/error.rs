//! Why the devnet, its flags or a command failed: one home every part of `app` depends on.

use std::path::PathBuf;

use crate::{
    chain::{accounts::AccountsError, genesis::GenesisError},
    engine::rpc::ServerError,
};

/// Why the devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// Genesis problem.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// An engine could not listen.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// engine-mux rejected its flags.
    #[error("engine-mux flags: {0}")]
    MuxArgs(String),
    /// engine-mux config invalid.
    #[error("engine-mux config: {0}")]
    MuxConfig(String),
    /// engine-mux could not start.
    #[error("engine-mux start: {0}")]
    MuxStart(String),
    /// flashblocks-rpc could not start.
    #[error("flashblocks-rpc: {0}")]
    FlashblocksRpc(String),
    /// Dev keys could not be derived.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The devnet's own options contradict each other.
    #[error("devnet config: {0}")]
    Config(String),
}

/// Why CLI values could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The JWT secret is malformed or its file unreadable (the message names the flag).
    #[error("{0}")]
    Jwt(String),
    /// The JWT file could not be created.
    #[error("JWT file {path}: {source}")]
    JwtFile {
        /// The path.
        path: PathBuf,
        /// IO error.
        source: std::io::Error,
    },
    /// A URL did not parse.
    #[error("URL {0:?}: {1}")]
    Url(String, String),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad flags.
    #[error(transparent)]
    Cli(#[from] CliError),
    /// Genesis problem.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// Startup problem.
    #[error(transparent)]
    Devnet(#[from] DevnetError),
    /// An engine could not listen.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Talking to a remote engine failed.
    #[error("{0}")]
    Remote(String),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// IO error.
        source: std::io::Error,
    },
}
