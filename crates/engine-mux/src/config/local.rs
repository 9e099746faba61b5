//! How engine-mux reaches the local execution client: over HTTP (the sidecar, `--l2-*`), or in
//! process through the embedding node's own [`LocalEngine`].

use std::{fmt, sync::Arc, time::Duration};

use engine_api::{JwtSecret, Upstream, UpstreamConfig, tls::TrustedRoots};

use crate::local_engine::{LOCAL_LABEL, LocalEngine};

/// The local execution client: where it is and how engine-mux talks to it.
#[derive(Clone)]
pub enum LocalElConfig {
    /// Over HTTP with a JWT (`--l2-url`, `--l2-jwt-*`, `--l2-timeout`).
    Http(UpstreamConfig),
    /// In process: the embedding node answers engine-mux's calls itself, no socket, no JWT.
    InProcess(Arc<dyn LocalEngine>),
}

impl fmt::Debug for LocalElConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // UpstreamConfig's Debug shows the secret's type only (alloy's JwtSecret hides it).
            Self::Http(c) => f.debug_tuple("Http").field(c).finish(),
            Self::InProcess(e) => f.debug_tuple("InProcess").field(e).finish(),
        }
    }
}

impl LocalElConfig {
    /// An EL over HTTP at `url` (`http://` or `https://`), calls signed with `secret` and bounded
    /// by `timeout` (the CLI's default is [`DEFAULT_L2_TIMEOUT`]).
    pub fn http(url: http::Uri, secret: JwtSecret, timeout: Duration) -> Self {
        Self::Http(UpstreamConfig {
            name: LOCAL_LABEL,
            url,
            secret: Some(secret),
            timeout,
            max_response_bytes: engine_api::upstream::DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// The embedding node's own engine.
    pub fn in_process(engine: impl LocalEngine) -> Self {
        Self::InProcess(Arc::new(engine))
    }

    /// The HTTP client's configuration, when the EL is reached over HTTP.
    pub fn http_config(&self) -> Option<&UpstreamConfig> {
        match self {
            Self::Http(c) => Some(c),
            Self::InProcess(_) => None,
        }
    }

    /// The JWT secret of the HTTP EL (the inbound secret's default, as with rollup-boost).
    pub fn secret(&self) -> Option<JwtSecret> {
        self.http_config().and_then(|c| c.secret)
    }

    /// The client engine-mux calls: an [`Upstream`] trusting `roots` for `https://`, or the
    /// in-process engine.
    pub fn connect(&self, roots: &TrustedRoots) -> Arc<dyn LocalEngine> {
        match self {
            Self::Http(c) => Arc::new(Upstream::with_roots(c.clone(), roots)),
            Self::InProcess(e) => e.clone(),
        }
    }

    /// Where it is, for the startup log.
    pub fn describe(&self) -> String {
        match self {
            Self::Http(c) => c.url.to_string(),
            Self::InProcess(_) => "in process".into(),
        }
    }
}

/// `--l2-timeout`'s default.
pub const DEFAULT_L2_TIMEOUT: Duration = Duration::from_millis(1000);
