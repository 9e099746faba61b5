//! JSON-RPC against the chain's nodes and flashblocks-rpc: a client, calls decoded to JSON, hex
//! quantities, a flashblocks-rpc instance, its metrics, and a field-by-field comparison.

use std::time::Duration;

use alloy_primitives::U256;
use alloy_rpc_types_engine::JwtSecret;
use clap::Parser;
use engine_api::{Upstream, UpstreamConfig};
use flashblocks_rpc::{Config, Running, cli::Args};
use serde_json::{Value, json};

/// Per-call deadline.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A plain JSON-RPC client (with a JWT for engine-mux's port).
pub fn client(url: &str, jwt: Option<JwtSecret>) -> Upstream {
    Upstream::new(UpstreamConfig {
        name: "test",
        url: url.parse().unwrap(),
        secret: jwt,
        timeout: CALL_TIMEOUT,
        max_response_bytes: 1 << 24,
    })
}

/// Calls `method` and returns the result as JSON (`null` included; panics on errors).
pub async fn call(rpc: &Upstream, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let res = rpc
        .forward(&headers, body.to_string().into(), CALL_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{method} {params}: {e}"));
    let raw = flashblocks_rpc::rpc::parse_response(res.body())
        .unwrap_or_else(|e| panic!("{method} {params}: {e:?}"));
    serde_json::from_str(raw.get()).unwrap()
}

/// Hex quantity as u64.
pub fn quantity(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a quantity: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// Hex quantity as U256.
pub fn quantity256(v: &Value) -> U256 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a quantity: {v}"))
        .parse()
        .unwrap()
}

/// Starts flashblocks-rpc on an ephemeral port.
pub async fn start_rpc(flashblocks_url: &str, upstream_url: &str, extra: &[&str]) -> Running {
    flashblocks_rpc::start(rpc_config(flashblocks_url, upstream_url, extra))
        .await
        .unwrap()
}

/// The configuration [`start_rpc`] starts with, for a test that changes it first.
pub fn rpc_config(flashblocks_url: &str, upstream_url: &str, extra: &[&str]) -> Config {
    let mut argv = vec![
        "flashblocks-rpc",
        "--flashblocks-url",
        flashblocks_url,
        "--upstream-url",
        upstream_url,
        "--rpc-addr",
        "127.0.0.1:0",
        "--reconnect-min-ms",
        "50",
        "--reconnect-max-ms",
        "200",
    ];
    argv.extend_from_slice(extra);
    Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap()
}

/// `Some` when `ours` serves a pending block ahead of the upstream's head read after it
/// (so it cannot be the upstream's own answer racing a new block).
pub async fn pending_ahead(upstream: &Upstream, ours: &Upstream) -> Option<()> {
    let pending = call(ours, "eth_getBlockByNumber", json!(["pending", false])).await;
    let head = quantity(&call(upstream, "eth_blockNumber", json!([])).await);
    (quantity(&pending["number"]) > head).then_some(())
}

/// Asserts that every field the upstream sent is present in `ours` with the same value
/// (recursively; arrays element by element). `ours` may carry extra fields (the OP receipt
/// fee fields the devnet does not emit).
pub fn assert_covers(what: &str, upstream: &Value, ours: &Value) {
    match (upstream, ours) {
        (Value::Object(u), Value::Object(o)) => {
            for (k, v) in u {
                let Some(mine) = o.get(k) else {
                    panic!("{what}: missing field {k:?} (upstream {v})");
                };
                assert_covers(&format!("{what}.{k}"), v, mine);
            }
        }
        (Value::Array(u), Value::Array(o)) => {
            assert_eq!(u.len(), o.len(), "{what}: lengths differ");
            for (i, (a, b)) in u.iter().zip(o).enumerate() {
                assert_covers(&format!("{what}[{i}]"), a, b);
            }
        }
        (u, o) => assert_eq!(u, o, "{what}"),
    }
}
