//! What an `eth_simulateV1` answer holds: per simulated block, one result per call; and why a
//! simulation gave nothing to serve.

use alloy_primitives::{Bytes, U64, U256};
use alloy_rpc_types_eth::simulate::SimulateError as CallFailure;

/// Why a simulation gave nothing to serve.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The upstream has no `eth_simulateV1` (-32601).
    #[error("the upstream does not serve eth_simulateV1")]
    Unsupported,
    /// It answered with an error, garbage or not at all.
    #[error("eth_simulateV1 failed: {0}")]
    Failed(String),
}

/// One call's result in an `eth_simulateV1` answer (geth's `simCallResult`, reth's
/// `SimCallResult`). Logs are read as address, topics and data only: op-geth and op-reth add
/// block and transaction fields, other servers (the devnet engine) may not.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimCallResult {
    /// Return data (or revert data).
    #[serde(default)]
    pub return_data: Bytes,
    /// Logs emitted.
    #[serde(default)]
    pub logs: Vec<alloy_primitives::Log>,
    /// Gas used.
    #[serde(deserialize_with = "quantity")]
    pub gas_used: u64,
    /// Success (`0x1`) or failure (`0x0`).
    #[serde(deserialize_with = "status")]
    pub status: bool,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<CallFailure>,
}

fn quantity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v: U64 = serde::Deserialize::deserialize(d)?;
    Ok(v.to())
}

fn status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(quantity(d)? == 1)
}

/// One simulated block's answer: only its calls are read (op-geth answers the whole RPC
/// block around them, the devnet engine a few header fields).
#[derive(Debug, serde::Deserialize)]
pub(super) struct SimulatedCalls {
    pub(super) calls: Vec<SimCallResult>,
}

/// What one run gave: each pending block's call results, the caller's call appended to the
/// last pending block, then the results of the blocks after them (probe reads).
#[derive(Debug)]
pub struct Ran {
    /// Per pending block, one result per transaction.
    pub blocks: Vec<Vec<SimCallResult>>,
    /// The appended call's result.
    pub tail: Option<SimCallResult>,
    /// The later blocks' results, in order.
    pub extra: Vec<SimCallResult>,
}

/// The call's return data as one 32-byte word (a balance or a storage slot), when it succeeded.
pub(super) fn word_u256(r: &SimCallResult) -> Option<U256> {
    (r.status && r.return_data.len() == 32).then(|| U256::from_be_slice(&r.return_data))
}
