//! A `wss://` upstream whose certificate a private CA generated in the test signed, trusted
//! through `SSL_CERT_FILE` alone: the proxy connects and fans its flashblocks out. The test sets
//! `SSL_CERT_FILE` first thing; that is sound only because nextest runs every test in a process
//! of its own.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// A CA for one test: its PEM file (what `SSL_CERT_FILE` names) and a server acceptor.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem_file: std::path::PathBuf,
}

impl TestCa {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "flashblocks-proxy test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let pem_file = std::env::temp_dir().join(format!(
            "flashblocks-proxy-test-ca-{}.pem",
            std::process::id()
        ));
        std::fs::write(&pem_file, issuer.pem()).unwrap();
        Self { issuer, pem_file }
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_file);
    }
}

/// A `wss://` upstream streaming flashblocks of payload 1 (index 0, 1, ...) every 50 ms to
/// each connection, answering pings meanwhile.
async fn wss_upstream(acceptor: tokio_rustls::TlsAcceptor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut source) = ws.split();
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                for index in 0.. {
                    tokio::select! {
                        _ = tick.tick() => {
                            if sink.send(Message::text(flashblock(1, index))).await.is_err() {
                                return;
                            }
                        }
                        m = source.next() => if !matches!(m, Some(Ok(_))) { return },
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn wss_upstream_trusted_through_ssl_cert_file_is_fanned_out() {
    assert!(
        std::env::var_os("NEXTEST").is_some(),
        "this test changes the process environment: run it with cargo nextest"
    );
    let ca = TestCa::new();
    // SAFETY: first thing in a single-threaded test runtime, in a process of its own.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca.pem_file) };
    let addr = wss_upstream(ca.acceptor()).await;
    let url = format!("wss://localhost:{}", addr.port());
    let mut argv = vec!["flashblocks-proxy".to_string()];
    let mut flags = base_flags(&[]);
    let at = flags.iter().position(|f| f == "--upstream-ws").unwrap();
    flags[at + 1] = url;
    argv.extend(flags);
    let config = flashblocks_proxy::config::Config::try_from(
        <flashblocks_proxy::cli::Args as clap::Parser>::try_parse_from(argv).unwrap(),
    )
    .unwrap();
    let p = flashblocks_proxy::start(config).await.unwrap();
    let mut ws = subscribe(p.local_addr(), "/").await.unwrap();
    let (payload, _) = key_of(&next_text(&mut ws).await);
    assert_eq!(payload, format!("0x{:016x}", 1));
}
