//! The command line to `Config`: every refusal names its flag.

use std::net::SocketAddr;

use clap::Parser;
use engine_api::JwtSecret;

use super::*;
use crate::execution_mode::ExecutionMode;

const HEX: &str = "688f5d737bad920bdfb2fc2f488d6b6209eebda1dae949a8de91398d932c517a";

fn config(extra: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec![
        "engine-mux",
        "--l2-jwt-token",
        HEX,
        "--builder-jwt-token",
        HEX,
    ];
    argv.extend_from_slice(extra);
    Config::try_from(Args::try_parse_from(argv).unwrap())
}

/// Failover carry-over accepts peers' frames only when signed: a peer URL without the set's
/// secret is refused at start, naming both flags; with it, the stream and the outbound peer
/// path share one key, and the secret never shows in the config's Debug.
#[test]
fn peer_urls_need_the_sets_secret() {
    let e = config(&["--flashblocks-peer-url", "ws://10.0.0.2:1112"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--flashblocks-peer-url") && e.contains("--flashblocks-peer-secret"),
        "{e}"
    );
    let c = config(&[
        "--flashblocks-peer-url",
        "ws://10.0.0.2:1112",
        "--flashblocks-peer-secret",
        HEX,
    ])
    .unwrap();
    let failover = c.failover.as_ref().unwrap();
    assert_eq!(Some(&failover.peers.key), c.peer_key.as_ref());
    assert_eq!(failover.carry_budget, Duration::from_millis(100));
    assert!(!format!("{c:?}").contains(&HEX[..16]), "secret in Debug");
    assert!(
        config(&["--flashblocks-peer-secret", "zz"])
            .unwrap_err()
            .to_string()
            .contains("--flashblocks-peer-secret")
    );
}

#[test]
fn every_bad_input_names_its_flag() {
    let missing =
        Config::try_from(Args::try_parse_from(["engine-mux", "--l2-jwt-token", HEX]).unwrap());
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("--builder-jwt-token")
    );
    let bad = Config::try_from(
        Args::try_parse_from([
            "engine-mux",
            "--l2-jwt-token",
            "zz",
            "--builder-jwt-token",
            HEX,
        ])
        .unwrap(),
    );
    assert!(bad.unwrap_err().to_string().contains("--l2-jwt-token"));
    let unreadable = config(&["--auth-jwt-path", "/nonexistent/jwt.hex"])
        .unwrap_err()
        .to_string();
    assert!(
        unreadable.contains("--auth-jwt-path") && unreadable.contains("/nonexistent/jwt.hex"),
        "{unreadable}"
    );
    assert!(
        config(&["--l2-url", "ftp://x"])
            .unwrap_err()
            .to_string()
            .contains("--l2-url")
    );
    assert!(
        config(&["--builder-url", "http://"])
            .unwrap_err()
            .to_string()
            .contains("--builder-url")
    );
    assert!(
        config(&["--get-payload-deadline-ms", "1500"])
            .unwrap_err()
            .to_string()
            .contains("--get-payload-deadline-ms")
    );
    assert!(
        config(&["--rpc-host", "no such host!"])
            .unwrap_err()
            .to_string()
            .contains("--rpc-host")
    );
}

#[test]
fn secrets_and_auth_modes() {
    let c = config(&[]).unwrap();
    assert_eq!(
        c.inbound_secret,
        c.l2.secret(),
        "inbound auth defaults to the L2 secret"
    );
    assert!(
        config(&["--no-inbound-auth"])
            .unwrap()
            .inbound_secret
            .is_none()
    );
    let other = "11".repeat(32);
    let c = config(&["--auth-jwt-token", &other]).unwrap();
    assert_eq!(c.inbound_secret, Some(JwtSecret::from_hex(&other).unwrap()));
    assert!(
        !format!("{c:?}").contains(HEX),
        "Debug output must not leak secrets"
    );
    let dir = std::env::temp_dir().join(format!("engine-mux-jwt-{}", std::process::id()));
    std::fs::write(&dir, format!("0x{other}\n")).unwrap();
    let c = config(&["--auth-jwt-path", dir.to_str().unwrap()]).unwrap();
    assert_eq!(c.inbound_secret, Some(JwtSecret::from_hex(&other).unwrap()));
    let _ = std::fs::remove_file(dir);
}

// RFC 8032 TEST 1 key pair (only a test vector; never a real key).
const AUTHORIZER_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const BUILDER_VK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

#[test]
fn flashblocks_p2p_takes_both_keys_and_hides_the_secret() {
    let c = config(&[
        "--flashblocks-p2p",
        "--flashblocks-authorizer-sk",
        AUTHORIZER_SK,
        "--flashblocks-builder-vk",
        &format!("0x{BUILDER_VK}"),
    ])
    .unwrap();
    let p2p = c.flashblocks_p2p.as_ref().expect("p2p on");
    assert_eq!(
        alloy_primitives::hex::encode(p2p.builder_vk.as_bytes()),
        BUILDER_VK
    );
    assert!(
        !format!("{c:?}").contains(AUTHORIZER_SK),
        "Debug output must not leak the authorizer key"
    );
    let args =
        Args::try_parse_from(["engine-mux", "--flashblocks-authorizer-sk", AUTHORIZER_SK]).unwrap();
    assert!(
        !format!("{args:?}").contains(AUTHORIZER_SK),
        "nor the parsed flags"
    );
    assert!(config(&[]).unwrap().flashblocks_p2p.is_none());
}

#[test]
fn flashblocks_p2p_misconfigurations_stop_startup_naming_the_flag() {
    let sk = ["--flashblocks-authorizer-sk", AUTHORIZER_SK];
    let vk = ["--flashblocks-builder-vk", BUILDER_VK];
    let with = |extra: &[&str]| {
        let mut argv = vec!["--flashblocks-p2p"];
        argv.extend_from_slice(extra);
        config(&argv).unwrap_err().to_string()
    };
    let err = with(&[&sk[..], &vk[..], &["--flashblocks"]].concat());
    assert!(
        err.contains("--flashblocks-p2p conflicts with --flashblocks"),
        "{err}"
    );
    let err = with(&vk);
    assert!(
        err.contains("--flashblocks-authorizer-sk") && err.contains("required"),
        "{err}"
    );
    let err = with(&sk);
    assert!(
        err.contains("--flashblocks-builder-vk") && err.contains("required"),
        "{err}"
    );
    let err = config(&sk).unwrap_err().to_string();
    assert!(
        err.contains("--flashblocks-authorizer-sk") && err.contains("--flashblocks-p2p"),
        "{err}"
    );
    let err = config(&vk).unwrap_err().to_string();
    assert!(
        err.contains("--flashblocks-builder-vk") && err.contains("--flashblocks-p2p"),
        "{err}"
    );
    let bad_secret = "zz".repeat(32);
    let err = with(&[&["--flashblocks-authorizer-sk", &bad_secret][..], &vk[..]].concat());
    assert!(
        err.contains("--flashblocks-authorizer-sk: malformed key"),
        "{err}"
    );
    assert!(
        !err.contains(&bad_secret),
        "the value is never echoed: {err}"
    );
    let err = with(&[&sk[..], &["--flashblocks-builder-vk", "0x1234"][..]].concat());
    assert!(
        err.contains("--flashblocks-builder-vk: malformed key") && err.contains("32 bytes"),
        "{err}"
    );
}

#[test]
fn require_auth_all_is_off_by_default_and_conflicts_with_no_inbound_auth() {
    assert!(!config(&[]).unwrap().require_auth_all);
    assert!(config(&["--require-auth-all"]).unwrap().require_auth_all);
    assert!(
        Args::try_parse_from(["engine-mux", "--no-inbound-auth", "--require-auth-all"]).is_err()
    );
}

#[test]
fn bare_host_port_urls_mean_http() {
    let c = config(&["--l2-url", "127.0.0.1:8551"]).unwrap();
    assert_eq!(
        c.l2.http_config().unwrap().url.to_string(),
        "http://127.0.0.1:8551/"
    );
}

fn secret() -> JwtSecret {
    JwtSecret::from_hex(HEX).unwrap()
}

/// `Config::builder` with the local EL and the builder the command line's defaults name.
fn built_like_the_cli() -> ConfigBuilder {
    Config::builder(LocalElConfig::http(
        "http://127.0.0.1:8551".parse().unwrap(),
        secret(),
        DEFAULT_L2_TIMEOUT,
    ))
    .builder(BuilderConfig::http(
        "builder",
        "http://127.0.0.1:8551".parse().unwrap(),
        secret(),
        Duration::from_millis(1000),
    ))
    // The command line reads SSL_CERT_FILE / SSL_CERT_DIR; a builder takes roots it is given.
    .tls_roots(engine_api::tls::TrustedRoots::from_env())
}

/// An embedder's configuration built in code starts where the command line's does: with only
/// the required secrets given, both are the same `Config`, field for field (its Debug prints
/// every field; the secrets are compared on their own since Debug hides them).
#[test]
fn the_builders_defaults_are_the_command_lines() {
    let cli = config(&[]).unwrap();
    let built = built_like_the_cli().build().unwrap();
    assert_eq!(format!("{built:?}"), format!("{cli:?}"));
    assert_eq!(built.inbound_secret, cli.inbound_secret);
    assert_eq!(built.l2.secret(), Some(secret()));
    assert_eq!(
        built.builders[0].upstream.secret,
        cli.builders[0].upstream.secret
    );

    // The same with settings away from the defaults, set each way.
    let cli = config(&[
        "--execution-mode",
        "dry-run",
        "--no-inbound-auth",
        "--metrics",
        "--builder-policy",
        "priority",
        "--get-payload-deadline-ms",
        "700",
        "--no-builder-catch-up",
        "--health-check-interval",
        "5",
        "--block-selection-policy",
        "gas-used",
    ])
    .unwrap();
    let built = built_like_the_cli()
        .execution_mode(ExecutionMode::DryRun)
        .no_inbound_auth()
        .metrics_addr(SocketAddr::from(([127, 0, 0, 1], 9090)))
        .builder_policy(BuilderPolicy::Priority)
        .get_payload_deadline(Duration::from_millis(700))
        .catch_up(None, Duration::from_secs(10))
        .health(HealthConfig::every(
            Duration::from_secs(5),
            Duration::from_secs(10),
        ))
        .selection(SelectionPolicy::GasUsed { min_percent: 10 })
        .build()
        .unwrap();
    assert_eq!(format!("{built:?}"), format!("{cli:?}"));
    assert_eq!(built.inbound_secret, None);
}

/// The builder's checks are the command line's (one path), and name the flag for the same
/// setting; an in-process local EL has no secret, so the RPC port checks none unless given.
#[test]
fn the_builder_refuses_what_the_command_line_refuses() {
    let deadline = built_like_the_cli()
        .get_payload_deadline(Duration::from_millis(1000))
        .build()
        .unwrap_err()
        .to_string();
    assert_eq!(
        deadline,
        config(&["--get-payload-deadline-ms", "1000"])
            .unwrap_err()
            .to_string()
    );
    assert!(deadline.contains("--get-payload-deadline-ms"), "{deadline}");
    let twice = built_like_the_cli()
        .builder(BuilderConfig::http(
            "builder",
            "http://127.0.0.1:9551".parse().unwrap(),
            secret(),
            Duration::from_millis(1000),
        ))
        .build()
        .unwrap_err()
        .to_string();
    assert!(twice.contains("used twice"), "{twice}");
    for (cli, built) in [
        (
            "--payload-id-cache-size",
            built_like_the_cli().payload_id_capacity(0).build(),
        ),
        (
            "--builder-queue-depth",
            built_like_the_cli().builder_queue_depth(0).build(),
        ),
        (
            "--selection-min-gas-percent",
            built_like_the_cli()
                .selection(SelectionPolicy::GasUsed { min_percent: 101 })
                .build(),
        ),
    ] {
        let e = built.unwrap_err().to_string();
        assert!(e.contains(cli), "{e}");
    }

    #[derive(Debug)]
    struct Nothing;
    impl crate::local_engine::LocalEngine for Nothing {
        fn call<'a>(
            &'a self,
            _: &'a str,
            _: &'a serde_json::value::RawValue,
            _: Duration,
        ) -> crate::local_engine::LocalFuture<'a, Box<serde_json::value::RawValue>> {
            Box::pin(async {
                Err(engine_api::UpstreamError::Transport {
                    upstream: "l2",
                    detail: "nothing here".into(),
                })
            })
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(1)
        }
    }
    let in_process = Config::builder(LocalElConfig::in_process(Nothing))
        .build()
        .unwrap();
    assert_eq!(in_process.inbound_secret, None);
    assert!(in_process.builders.is_empty());
    let checked = Config::builder(LocalElConfig::in_process(Nothing))
        .inbound_secret(secret())
        .build()
        .unwrap();
    assert_eq!(checked.inbound_secret, Some(secret()));
}
