//! The command line to `Config`: every refusal names its flag.

use clap::Parser;

use super::*;

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
        c.inbound_secret, c.l2.secret,
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
    assert_eq!(c.l2.url.to_string(), "http://127.0.0.1:8551/");
}
