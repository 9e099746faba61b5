//! TLS to upstreams (`https://` engines, `wss://` flashblocks streams): the one place that builds
//! rustls' client configuration. It runs on the `ring` provider, passed explicitly (never the
//! process-wide default, which may be unset or ambiguous), and trusts the system's root
//! certificates, or, as OpenSSL-based tools do, those in the PEM file `SSL_CERT_FILE` names (or
//! the directory `SSL_CERT_DIR` names), so a private CA needs no flag of its own.

use std::{error::Error as StdError, sync::Arc};

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

/// A client configuration trusting the system's roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
pub fn client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::warn!(error = %e, "skipping root certificates that could not be read");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
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
    client_config_with_roots(roots)
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

    #[test]
    fn an_explicit_root_store_builds_without_touching_the_process_default() {
        // No provider is installed process-wide here; building must not need one.
        assert!(client_config_with_roots(RootCertStore::empty()).is_ok());
    }
}
