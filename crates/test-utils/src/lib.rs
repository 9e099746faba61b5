//! Test fixtures shared by the workspace's tests: polling with a deadline (no sleeps as
//! synchronisation), a certificate authority made for one test (for `https://` and `wss://`
//! peers; its PEM file is what a test's trusted roots, or a child process's `SSL_CERT_FILE`,
//! name), and visible skips. A dev-dependency only.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use tokio_rustls::rustls::{self, pki_types::CertificateDer};

/// Calls `check` every `step` until it returns `Some`, and returns that; panics naming `what`
/// once `deadline` has passed.
pub async fn poll<T, F: Future<Output = Option<T>>>(
    what: &str,
    deadline: Duration,
    step: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(step).await;
    }
}

/// [`poll`] for a condition: returns once `cond` holds.
pub async fn poll_until<F: Future<Output = bool>>(
    what: &str,
    deadline: Duration,
    step: Duration,
    mut cond: impl FnMut() -> F,
) {
    poll(what, deadline, step, || {
        let holds = cond();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// A certificate authority generated for one test, and server certificates it signs.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// The CA certificate as a PEM file (what `SSL_CERT_FILE` names); removed on drop.
    pub pem_file: PathBuf,
}

impl TestCa {
    /// A new CA; `name` tells CAs of one test apart (in its common name and PEM file name).
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("no SANs");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {name}"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key generation");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        let pem_file = std::env::temp_dir().join(format!(
            "engine-mux-test-ca-{name}-{}.pem",
            std::process::id()
        ));
        std::fs::write(&pem_file, issuer.pem()).expect("writable temp dir");
        Self { issuer, pem_file }
    }

    /// The CA certificate, for a root store that trusts only this CA.
    pub fn root(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A TLS acceptor for `127.0.0.1` / `localhost` presenting a certificate this CA signed.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let key = rcgen::KeyPair::generate().expect("key generation");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("valid SANs");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .expect("a generated key is valid DER");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("matching certificate and key");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_file);
    }
}

/// Set to `1` (as `scripts/test.sh` does) to make a test that cannot run here fail instead of
/// skipping: CI must not pass on tests it never ran.
pub const REQUIRE_ALL_TESTS: &str = "ENGINE_MUX_REQUIRE_ALL_TESTS";

/// Whether `value` (of [`REQUIRE_ALL_TESTS`]) asks for every test to run.
pub fn all_tests_required(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// A test that cannot run here (`why`): fails when [`REQUIRE_ALL_TESTS`] is set, else prints a
/// `SKIPPED` line naming the test, so the skip is visible in the output (`--nocapture` or a
/// failure report).
pub fn skip(test: &str, why: &str) {
    if all_tests_required(std::env::var_os(REQUIRE_ALL_TESTS).as_deref()) {
        panic!("{test} could not run ({why}) and {REQUIRE_ALL_TESTS} is set");
    }
    eprintln!("SKIPPED {test}: {why} (set {REQUIRE_ALL_TESTS}=1 to make this a failure)");
}

#[cfg(test)]
mod skip_tests {
    use super::*;

    #[test]
    fn only_a_set_non_zero_value_requires_every_test() {
        assert!(all_tests_required(Some("1".as_ref())));
        assert!(all_tests_required(Some("yes".as_ref())));
        assert!(!all_tests_required(Some("0".as_ref())));
        assert!(!all_tests_required(Some("".as_ref())));
        assert!(!all_tests_required(None));
    }
}
