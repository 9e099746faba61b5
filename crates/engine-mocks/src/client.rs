//! op-node's side of a test or bench: a signing client and the params op-node sends.

use std::time::Duration;

use alloy_rpc_types_engine::JwtSecret;
use serde_json::{Value, json};

use crate::chain::now;

/// A JSON-RPC client to `url` signing with `secret` (op-node's side of a test or bench).
pub fn engine_client(
    url: &str,
    secret: Option<JwtSecret>,
    timeout: Duration,
) -> engine_api::Upstream {
    engine_api::Upstream::new(engine_api::UpstreamConfig {
        name: "op-node",
        url: url.parse().expect("test URL"),
        secret,
        timeout,
        max_response_bytes: engine_api::upstream::DEFAULT_MAX_RESPONSE_BYTES,
    })
}

/// `s` as hex.
pub fn hex_secret(s: &JwtSecret) -> String {
    alloy_primitives::hex::encode(s.as_bytes())
}

/// Payload attributes as op-node sends them (one L1-info-shaped deposit).
pub fn attributes(no_tx_pool: bool) -> Value {
    json!({
        "timestamp": format!("{:#x}", now() + 1),
        "prevRandao": format!("0x{}", "00".repeat(32)),
        "suggestedFeeRecipient": "0x4200000000000000000000000000000000000011",
        "withdrawals": [],
        "parentBeaconBlockRoot": format!("0x{}", "55".repeat(32)),
        "transactions": ["0x7ef8f8a0deadbeef"],
        "noTxPool": no_tx_pool,
        "gasLimit": "0x1c9c380",
        "eip1559Params": "0x000000fa00000006"
    })
}

/// A forkchoice state whose head/safe/finalized are a hash derived from `head`.
pub fn forkchoice(head: u64) -> Value {
    let h = format!("0x{}{:016x}", "cc".repeat(24), head);
    json!({"headBlockHash": h, "safeBlockHash": h, "finalizedBlockHash": h})
}
