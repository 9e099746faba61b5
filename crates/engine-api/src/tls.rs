//! TLS to upstreams (`https://` engines, `wss://` flashblocks streams): the one place that builds
//! rustls' client configuration. It runs on the `ring` provider, passed explicitly (never the
//! process-wide default, which may be unset or ambiguous), and trusts the roots a
//! [`TrustedRoots`] names: the system's root certificates, or, as OpenSSL-based tools do, those in
//! the PEM file `SSL_CERT_FILE` names (or the directory `SSL_CERT_DIR` names), so a private CA
//! needs no flag of its own. The binaries read those variables once, at startup
//! ([`TrustedRoots::from_env`]); everything below takes the result explicitly.

use std::{
    error::Error as StdError,
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
};

pub use rustls::{ClientConfig, RootCertStore};

/// Why no TLS client configuration could be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Not a single trusted root certificate could be loaded.
    #[error(
        "no trusted root certificate could be loaded (system store, or SSL_CERT_FILE / SSL_CERT_DIR): {0}"
    )]
    NoRoots(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Which root certificates an upstream's certificate must chain to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedRoots {
    /// A PEM file of CA certificates trusted instead of the system store (`SSL_CERT_FILE`).
    pub ca_file: Option<PathBuf>,
    /// Directories of PEM CA certificates trusted instead of the system store (`SSL_CERT_DIR`).
    pub ca_dirs: Vec<PathBuf>,
}

impl TrustedRoots {
    /// The system store.
    pub fn system() -> Self {
        Self::default()
    }

    /// Exactly the CA certificates in the PEM file `path`.
    pub fn ca_file(path: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: Some(path.into()),
            ca_dirs: Vec::new(),
        }
    }

    /// What `SSL_CERT_FILE` and `SSL_CERT_DIR` in this process's environment name.
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::var_os("SSL_CERT_FILE"),
            std::env::var_os("SSL_CERT_DIR"),
        )
    }

    /// What the values of `SSL_CERT_FILE` and `SSL_CERT_DIR` name (the directory variable is a
    /// `:`-separated list, as OpenSSL reads it; empty entries are ignored).
    pub fn from_vars(ssl_cert_file: Option<OsString>, ssl_cert_dir: Option<OsString>) -> Self {
        Self {
            ca_file: ssl_cert_file.map(PathBuf::from),
            ca_dirs: ssl_cert_dir
                .map(|dirs| {
                    std::env::split_paths(&dirs)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn load(&self) -> rustls_native_certs::CertificateResult {
        if self.ca_file.is_none() && self.ca_dirs.is_empty() {
            return rustls_native_certs::load_native_certs();
        }
        let mut out = rustls_native_certs::load_certs_from_paths(self.ca_file.as_deref(), None);
        for dir in &self.ca_dirs {
            let found = rustls_native_certs::load_certs_from_paths(None, Some(Path::new(dir)));
            out.certs.extend(found.certs);
            out.errors.extend(found.errors);
        }
        out
    }
}

/// A client configuration trusting `roots`.
pub fn client_config(roots: &TrustedRoots) -> Result<Arc<ClientConfig>, TlsError> {
    let loaded = roots.load();
    for e in &loaded.errors {
        tracing::warn!(error = %e, "skipping root certificates that could not be read");
    }
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "skipped root certificates rustls cannot parse");
    }
    if added == 0 {
        let why = if loaded.errors.is_empty() {
            "none found".to_string()
        } else {
            loaded
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(TlsError::NoRoots(why));
    }
    client_config_with_roots(store)
}

/// A client configuration trusting exactly `roots`.
pub fn client_config_with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS error behind `err`, if a TLS failure caused it. Handshake failures arrive wrapped in
/// I/O errors (tokio-rustls), whose `source` skips the wrapped error, so those are opened too.
pub fn failure<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(tls) = failure(inner)
        {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

/// `err` said so that an operator knows what to fix.
pub fn explain(err: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match err {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{err}: the certificate is not signed by a trusted root (the system's, or those in SSL_CERT_FILE / SSL_CERT_DIR)"
        ),
        Error::InvalidCertificate(_) => format!("certificate rejected: {err}"),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_certificate_error_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let outer = std::io::Error::other(inner);
        let found = failure(&outer).expect("the rustls error is found");
        assert!(explain(found).contains("not signed by a trusted root"));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(failure(&plain).is_none());
    }

    /// The variables operators set are read exactly as OpenSSL reads them, without this test
    /// touching the process environment.
    #[test]
    fn ssl_cert_file_and_dir_values_name_the_trusted_roots() {
        let roots = TrustedRoots::from_vars(
            Some("/etc/private/ca.pem".into()),
            Some("/etc/a::/etc/b".into()),
        );
        assert_eq!(roots.ca_file, Some(PathBuf::from("/etc/private/ca.pem")));
        assert_eq!(
            roots.ca_dirs,
            vec![PathBuf::from("/etc/a"), PathBuf::from("/etc/b")]
        );
        assert_eq!(TrustedRoots::from_vars(None, None), TrustedRoots::system());
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_is_an_error_naming_it() {
        let err = client_config(&TrustedRoots::ca_file("/nonexistent/engine-api-ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no trusted root certificate"), "{err}");
        assert!(err.contains("/nonexistent/engine-api-ca.pem"), "{err}");
    }

    #[test]
    fn an_explicit_root_store_builds_without_touching_the_process_default() {
        // No provider is installed process-wide here; building must not need one.
        assert!(client_config_with_roots(RootCertStore::empty()).is_ok());
    }
}
