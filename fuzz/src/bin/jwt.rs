//! Engine API JWTs (engine_api::auth::check_bearer, which every server here uses). Even first
//! byte: the rest is an `Authorization` header value. Odd: the rest is `header-JSON \n
//! claims-JSON`, signed here with the secret, so the fuzzer explores validation past the
//! signature. Properties: a token only validates when it was signed with the secret (the same
//! token never validates under another secret); a validated token is HS256 with an `iat` within
//! 60 s of now.

use alloy_rpc_types_engine::JwtSecret;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use http::HeaderValue;

const SECRET: [u8; 32] = [0x42; 32];
const OTHER: [u8; 32] = [0x43; 32];

fn sign(header: &[u8], claims: &[u8]) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&SECRET).expect("any key length");
    mac.update(msg.as_bytes());
    format!(
        "{msg}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn main() {
    let secret = JwtSecret::from_hex(hex(&SECRET)).expect("32 bytes");
    let other = JwtSecret::from_hex(hex(&OTHER)).expect("32 bytes");
    afl::fuzz!(|data: &[u8]| {
        let (mode, rest) = engine_mux_fuzz::split_first(data);
        let (value, signed) = if mode & 1 == 0 {
            let Ok(v) = HeaderValue::from_bytes(rest) else {
                engine_api::check_bearer(&secret, None).expect_err("no header is refused");
                return;
            };
            (v, None)
        } else {
            let mut parts = rest.splitn(2, |b| *b == b'\n');
            let header = parts.next().unwrap_or_default();
            let claims = parts.next().unwrap_or_default();
            let token = sign(header, claims);
            let v = HeaderValue::from_str(&format!("Bearer {token}")).expect("base64 is ASCII");
            (v, Some((header, claims)))
        };
        let ok = engine_api::check_bearer(&secret, Some(&value)).is_ok();
        if engine_api::check_bearer(&other, Some(&value)).is_ok() {
            panic!("a token validated under a secret it was not signed with");
        }
        if !ok {
            return;
        }
        let Some((header, claims)) = signed else {
            // The fuzzer cannot forge the MAC; a raw header validating means it found one.
            panic!("an unsigned header value validated: {value:?}");
        };
        // serde_json (which the validation uses) does not check UTF-8 inside strings it skips,
        // so a token signed with the secret whose unknown fields hold invalid UTF-8 validates,
        // as it does on op-geth (Go's JSON replaces such bytes): read the parts the same way.
        let header: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(header))
            .expect("validated header is JSON");
        assert_eq!(
            header["alg"], "HS256",
            "validated a token whose alg is not HS256"
        );
        let claims: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(claims))
            .expect("validated claims are JSON");
        let iat = claims["iat"]
            .as_u64()
            .expect("validated claims have a numeric iat");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            iat.abs_diff(now) <= 60 + 1,
            "iat {iat} is {}s from now",
            iat.abs_diff(now)
        );
    });
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
