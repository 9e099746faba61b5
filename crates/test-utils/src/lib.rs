//! Test fixtures shared by the workspace's tests: polling with a deadline (no sleeps as
//! synchronisation), a free port, a metric read from Prometheus text, a certificate authority
//! made for one test (for `https://` and `wss://` peers; its PEM file is what a test's trusted
//! roots, or a child process's `SSL_CERT_FILE`, name), and visible skips. A dev-dependency only.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use tokio_rustls::rustls::{self, pki_types::CertificateDer};

/// How often [`eventually`] and [`eventually_some`] look again.
pub const STEP: Duration = Duration::from_millis(20);

/// Calls `check` every `step` until it returns `Some`, and returns that; panics naming `what`
/// once `within` has passed.
pub async fn poll<T, F: Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    step: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(step).await;
    }
}

/// Returns once `cond` holds, looking every [`STEP`]; panics naming `what` once `within` has
/// passed.
pub async fn eventually<F: Future<Output = bool>>(
    within: Duration,
    what: &str,
    cond: impl FnMut() -> F,
) {
    eventually_every(within, what, STEP, cond).await
}

/// [`eventually`] looking every `step`: for a state that lasts only a few milliseconds.
pub async fn eventually_every<F: Future<Output = bool>>(
    within: Duration,
    what: &str,
    step: Duration,
    mut cond: impl FnMut() -> F,
) {
    poll(within, what, step, || {
        let holds = cond();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// The first `Some` of `check`, looking every [`STEP`]; panics naming `what` once `within` has
/// passed.
pub async fn eventually_some<T, F: Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    check: impl FnMut() -> F,
) -> T {
    poll(within, what, STEP, check).await
}

/// A free loopback port: bound, then released for the caller (or a child process) to bind a
/// moment later.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The value of `series` (`name` or `name{label="value",...}`) in a Prometheus text
/// exposition, read with engine-api's reader (the one the binaries use): the exact series, else
/// the sum of the series of that name carrying those labels. 0 when there is none: a labelled
/// counter nobody incremented is not rendered at all.
pub fn metric(text: &str, series: &str) -> f64 {
    engine_api::prometheus::sample(text, series).unwrap_or(0.0)
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

#[cfg(test)]
mod poll_tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        eventually(Duration::from_secs(5), "the third look", || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { n >= 3 }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "no look after it held");
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for: a condition that never holds")]
    async fn eventually_panics_naming_what_it_waited_for() {
        eventually(
            Duration::from_millis(50),
            "a condition that never holds",
            || async { false },
        )
        .await;
    }

    #[tokio::test]
    async fn eventually_some_returns_the_first_value() {
        let calls = AtomicU32::new(0);
        let v = eventually_some(Duration::from_secs(5), "a value", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { (n == 2).then_some(n * 10) }
        })
        .await;
        assert_eq!(v, 20);
    }

    #[test]
    fn free_port_can_be_bound_again() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was released");
    }

    #[test]
    fn metric_reads_a_series_sums_by_label_and_is_zero_when_absent() {
        let text = "# TYPE engine_mux_fallbacks_total counter\n\
            engine_mux_fallbacks_total{reason=\"invalid\",builder=\"b1\"} 2\n\
            engine_mux_fallbacks_total{reason=\"invalid\",builder=\"b2\"} 3\n\
            engine_mux_fallbacks_total{reason=\"timeout\",builder=\"b1\"} 4\n\
            engine_mux_health_status 206\n";
        assert_eq!(metric(text, "engine_mux_health_status"), 206.0);
        assert_eq!(
            metric(
                text,
                r#"engine_mux_fallbacks_total{reason="invalid",builder="b2"}"#
            ),
            3.0
        );
        assert_eq!(
            metric(text, r#"engine_mux_fallbacks_total{reason="invalid"}"#),
            5.0,
            "a label subset sums the series carrying it"
        );
        assert_eq!(metric(text, "engine_mux_fallbacks_total"), 9.0);
        assert_eq!(
            metric(text, r#"engine_mux_fallbacks_total{reason="error"}"#),
            0.0
        );
        assert_eq!(metric(text, "engine_mux_nothing_total"), 0.0);
    }
}
