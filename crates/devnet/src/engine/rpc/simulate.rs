//! `eth_simulateV1` with op-reth's rules (reth v1.10.2, `EthCall::simulate_v1` and
//! `rpc-eth-types/src/simulate.rs`), so that a client tested on the devnet sends only requests
//! op-reth accepts:
//!
//! - each simulated block follows the one before (the requested block first): number + 1,
//!   timestamp + 12 s, then its `blockOverrides`; without `validation` its base fee is 0 unless
//!   overridden, and the nonce and base fee checks are off;
//! - a gas limit override above both the parent's gas limit and the RPC gas cap (50M) is
//!   refused (-38026); the calls' stated gas limits together may not exceed the block's gas
//!   limit (-38015, checked before any call runs, whatever the calls would use); a call without
//!   `gas` gets an equal share of what is left;
//! - a call without fee fields is priced at the block's base fee (`maxFeePerGas` = base fee,
//!   priority 0), so its sender must hold `gas * base fee + value` even without validation: a
//!   call from an account without funds is refused (-38014) unless the base fee is 0 or its fee
//!   fields say 0;
//! - a call op-revm refuses as a transaction refuses the whole request with reth's code
//!   (-38010 … -38025), a call that reverts or halts is a failed call result (code 3 with the
//!   revert output as `returnData`, or -32003), and its gas counts in its block.

use alloy_primitives::{Bytes, TxKind};
use alloy_rpc_types_eth::{BlockOverrides, TransactionRequest, state::StateOverride};
use engine_api::codes;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use op_revm::OpHaltReason;
use revm::context::{
    TxEnv,
    result::{ExecutionResult, HaltReason, InvalidTransaction, OutOfGasError},
};
use serde_json::{Value, json};

use super::params::{call_at, err, hex_u64};
use crate::{
    chain::fees::next_base_fee,
    engine::{
        Engine,
        call::{CallError, CallRunner, SimulateRefusal},
    },
};

/// reth's `DEFAULT_MAX_SIMULATE_BLOCKS`.
pub const MAX_SIMULATE_BLOCKS: usize = 256;
/// reth's `RPC_DEFAULT_GAS_CAP` (`--rpc.gascap`): a gas limit override above it and above the
/// parent's gas limit is refused.
pub const RPC_GAS_CAP: u64 = 50_000_000;
/// reth's default step between simulated blocks' timestamps.
pub const TIMESTAMP_INCREMENT: u64 = 12;

/// reth's `eth_simulateV1` error codes (`EthSimulateError::error_code`).
pub mod simulate_codes {
    /// Nonce below the sender's (with validation).
    pub const NONCE_TOO_LOW: i32 = -38010;
    /// Nonce above the sender's (with validation).
    pub const NONCE_TOO_HIGH: i32 = -38011;
    /// Max fee below the block's base fee (with validation).
    pub const BASE_FEE_TOO_LOW: i32 = -38012;
    /// Gas limit below the intrinsic gas.
    pub const INTRINSIC_GAS_TOO_LOW: i32 = -38013;
    /// The sender cannot pay `gas * price + value`.
    pub const INSUFFICIENT_FUNDS: i32 = -38014;
    /// The calls' gas limits together exceed the block's.
    pub const BLOCK_GAS_LIMIT_EXCEEDED: i32 = -38015;
    /// The sender has code (never: EIP-3607 is off in simulation).
    pub const SENDER_NOT_EOA: i32 = -38024;
    /// Init code too large.
    pub const MAX_INIT_CODE_SIZE_EXCEEDED: i32 = -38025;
    /// A gas limit override above the RPC gas cap.
    pub const CLIENT_LIMIT_REACHED: i32 = -38026;
    /// reth's `TransactionRejected`: other invalid transactions, and halted calls.
    pub const TRANSACTION_REJECTED: i32 = -32003;
}
use simulate_codes::*;

/// One block of an `eth_simulateV1` request.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimBlock {
    #[serde(default)]
    calls: Vec<TransactionRequest>,
    #[serde(default)]
    block_overrides: Option<BlockOverrides>,
    #[serde(default)]
    state_overrides: Option<StateOverride>,
}

/// The `eth_simulateV1` payload.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimulatePayload {
    block_state_calls: Vec<SimBlock>,
    #[serde(default)]
    validation: bool,
}

/// Applies a simulated block's state overrides: only code replacements are served (a devnet
/// limitation; reth also takes balance, nonce and storage).
fn override_state(
    runner: &mut CallRunner<'_>,
    overrides: Option<&StateOverride>,
) -> Result<(), ErrorObjectOwned> {
    for (address, account) in overrides.into_iter().flatten() {
        let only_code = account.balance.is_none()
            && account.nonce.is_none()
            && account.state.is_none()
            && account.state_diff.is_none()
            && account.move_precompile_to.is_none();
        let Some(code) = account.code.as_ref().filter(|_| only_code) else {
            return Err(err(
                codes::INVALID_PARAMS,
                "only code can be overridden in eth_simulateV1 blocks",
            ));
        };
        runner.set_code(*address, code.clone());
    }
    Ok(())
}

/// The error reth answers for a call op-revm refuses as a transaction.
fn refusal(e: SimulateRefusal) -> ErrorObjectOwned {
    let invalid = match e {
        SimulateRefusal::Invalid(i) => i,
        SimulateRefusal::Other(m) => return err(TRANSACTION_REJECTED, m),
    };
    match invalid {
        InvalidTransaction::NonceTooLow { tx, state } => err(
            NONCE_TOO_LOW,
            format!("nonce too low: next nonce {state}, tx nonce {tx}"),
        ),
        InvalidTransaction::NonceTooHigh { .. } => err(NONCE_TOO_HIGH, "nonce too high"),
        InvalidTransaction::GasPriceLessThanBasefee => {
            err(BASE_FEE_TOO_LOW, "max fee per gas less than block base fee")
        }
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
        | InvalidTransaction::GasFloorMoreThanGasLimit { .. } => {
            err(INTRINSIC_GAS_TOO_LOW, "intrinsic gas too low")
        }
        InvalidTransaction::LackOfFundForMaxFee { fee, balance } => err(
            INSUFFICIENT_FUNDS,
            format!("insufficient funds for gas * price + value: have {balance} want {fee}"),
        ),
        InvalidTransaction::RejectCallerWithCode => err(SENDER_NOT_EOA, "sender is not an EOA"),
        InvalidTransaction::CreateInitCodeSizeLimit => {
            err(MAX_INIT_CODE_SIZE_EXCEEDED, "max initcode size exceeded")
        }
        InvalidTransaction::PriorityFeeGreaterThanMaxFee => err(
            TRANSACTION_REJECTED,
            "max priority fee per gas higher than max fee per gas",
        ),
        other => err(TRANSACTION_REJECTED, other.to_string()),
    }
}

/// reth's `resolve_transaction`: a request's missing fields filled in (sender 0, the state's
/// nonce, the block's share of gas, the chain id, create when there is no target) and, for a
/// request whose fees do not make a whole transaction, the base fee as its price.
fn resolve(
    runner: &mut CallRunner<'_>,
    req: &TransactionRequest,
    default_gas: u64,
    chain_id: u64,
) -> TxEnv {
    let caller = req.from.unwrap_or_default();
    let base_fee = u128::from(runner.header().base_fee_per_gas.unwrap_or_default());
    let nonce = req.nonce.unwrap_or_else(|| runner.nonce(caller));
    // alloy's preferred type: a `gasPrice` makes it legacy (EIP-2930 with an access list),
    // anything else EIP-1559.
    let (tx_type, gas_price, priority) = match (req.gas_price, req.max_fee_per_gas) {
        (Some(price), _) => (u8::from(req.access_list.is_some()), price, None),
        (None, max_fee) => {
            let priority = req.max_priority_fee_per_gas.unwrap_or(0);
            let max_fee = max_fee.unwrap_or_else(|| {
                req.max_priority_fee_per_gas
                    .map_or(base_fee, |p| p.max(base_fee))
            });
            (2, max_fee, Some(priority))
        }
    };
    TxEnv {
        tx_type,
        caller,
        gas_limit: req.gas.unwrap_or(default_gas),
        gas_price,
        gas_priority_fee: priority,
        kind: req.to.unwrap_or(TxKind::Create),
        value: req.value.unwrap_or_default(),
        data: req.input.input().cloned().unwrap_or_default(),
        nonce,
        chain_id: Some(req.chain_id.unwrap_or(chain_id)),
        access_list: req.access_list.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// One call's result as reth reports it (`SimCallResult`).
fn call_result(result: ExecutionResult<OpHaltReason>, gas_limit: u64) -> Value {
    let gas_used = hex_u64(result.tx_gas_used());
    match result {
        ExecutionResult::Success { output, logs, .. } => json!({
            "status": "0x1",
            "returnData": output.into_data(),
            "gasUsed": gas_used,
            "logs": logs.iter().map(|l| json!({
                "address": l.address,
                "topics": l.topics(),
                "data": l.data.data,
                "removed": false,
            })).collect::<Vec<_>>(),
        }),
        ExecutionResult::Revert { output, .. } => {
            let message = CallError::Reverted(output.clone()).to_string();
            json!({
                "status": "0x0",
                "returnData": output,
                "gasUsed": gas_used,
                "logs": [],
                "error": {"code": 3, "message": message},
            })
        }
        ExecutionResult::Halt { reason, .. } => json!({
            "status": "0x0",
            "returnData": Bytes::new(),
            "gasUsed": gas_used,
            "logs": [],
            "error": {"code": TRANSACTION_REJECTED, "message": halt_message(&reason, gas_limit)},
        }),
    }
}

/// reth's message for a halted call (`RpcInvalidTransactionError::halt`).
fn halt_message(reason: &OpHaltReason, gas_limit: u64) -> String {
    match reason {
        OpHaltReason::Base(HaltReason::OutOfGas(kind)) => match kind {
            OutOfGasError::Memory => {
                format!("out of gas: gas exhausted during memory expansion: {gas_limit}")
            }
            OutOfGasError::Precompile => format!(
                "out of gas: gas exhausted during precompiled contract execution: {gas_limit}"
            ),
            OutOfGasError::InvalidOperand => {
                format!("out of gas: invalid operand to an opcode: {gas_limit}")
            }
            _ => format!("out of gas: gas required exceeds: {gas_limit}"),
        },
        other => format!("EVM error: {other:?}"),
    }
}

/// `eth_simulateV1` with op-reth's rules (see the module docs).
pub(super) fn eth_simulate(engine: &Engine, p: Params<'_>) -> Result<Value, ErrorObjectOwned> {
    let mut seq = p.sequence();
    let payload: SimulatePayload = seq.next()?;
    let r: Option<Value> = seq.optional_next()?;
    if payload.block_state_calls.len() > MAX_SIMULATE_BLOCKS {
        return Err(err(codes::INVALID_PARAMS, "too many blocks."));
    }
    if payload.block_state_calls.is_empty() {
        return Err(err(codes::INVALID_PARAMS, "calls are empty."));
    }
    let validation = payload.validation;
    let (block, state) = call_at(engine, r.as_ref())?;
    let spec = engine.spec();
    let mut runner = CallRunner::new(spec, &block.header, block.hash, &state);
    let mut out = Vec::with_capacity(payload.block_state_calls.len());
    for simulated in &payload.block_state_calls {
        let parent = runner.header().clone();
        let base_fee = if validation {
            next_base_fee(spec, &parent).map_err(|e| err(TRANSACTION_REJECTED, e.to_string()))?
        } else {
            0
        };
        {
            let h = runner.header_mut();
            h.number += 1;
            h.timestamp += TIMESTAMP_INCREMENT;
            h.base_fee_per_gas = Some(base_fee);
            h.gas_used = 0;
        }
        if let Some(o) = &simulated.block_overrides {
            if let Some(limit) = o.gas_limit
                && limit > parent.gas_limit
                && limit > RPC_GAS_CAP
            {
                return Err(err(CLIENT_LIMIT_REACHED, "Client adjustable limit reached"));
            }
            runner
                .override_block(o)
                .map_err(|e| err(codes::INVALID_PARAMS, e.to_string()))?;
        }
        override_state(&mut runner, simulated.state_overrides.as_ref())?;
        let gas_limit = runner.header().gas_limit;
        let stated: u64 = simulated
            .calls
            .iter()
            .filter_map(|c| c.gas)
            .fold(0u64, u64::saturating_add);
        if stated > gas_limit {
            return Err(err(
                BLOCK_GAS_LIMIT_EXCEEDED,
                "Block gas limit exceeded by the block's transactions",
            ));
        }
        let unstated = simulated.calls.iter().filter(|c| c.gas.is_none()).count() as u64;
        let default_gas = (gas_limit - stated).checked_div(unstated).unwrap_or(0);
        let mut gas_used = 0u64;
        let mut calls = Vec::with_capacity(simulated.calls.len());
        for req in &simulated.calls {
            let tx = resolve(&mut runner, req, default_gas, spec.chain_id);
            let limit = tx.gas_limit;
            let result = runner.simulate_call(tx, validation).map_err(refusal)?;
            gas_used += result.tx_gas_used();
            calls.push(call_result(result, limit));
        }
        runner.header_mut().gas_used = gas_used;
        let header = runner.header();
        out.push(json!({
            "number": hex_u64(header.number),
            "timestamp": hex_u64(header.timestamp),
            "gasLimit": hex_u64(header.gas_limit),
            "gasUsed": hex_u64(gas_used),
            "baseFeePerGas": hex_u64(header.base_fee_per_gas.unwrap_or_default()),
            "miner": header.beneficiary,
            "calls": calls,
        }));
    }
    Ok(Value::Array(out))
}
