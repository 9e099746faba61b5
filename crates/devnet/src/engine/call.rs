//! Running a call that is not a transaction of any block (`eth_call`, `eth_estimateGas`) on a
//! block's post-state, with the same op-revm machinery blocks execute with.

use alloy_consensus::Header;
use alloy_evm::{Evm, EvmFactory};
use alloy_op_evm::{OpEvmFactory, OpTx, env::evm_env_for_op_block};
use alloy_primitives::{Address, Bytes, TxKind, U256, map::AddressMap};
use alloy_rpc_types_eth::{BlockOverrides, TransactionRequest};
use alloy_sol_types::SolError;
use op_revm::{OpHaltReason, OpTransaction};
use revm::{
    context::{
        TxEnv,
        result::{ExecutionResult, ResultAndState},
    },
    state::{Account, AccountInfo, Bytecode},
};

use crate::chain::{genesis::ChainSpec, state::StateSnapshot};

/// Intrinsic gas of any transaction: `eth_estimateGas` never answers less.
const TX_BASE_GAS: u64 = 21_000;

/// Why a call did not produce output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran and reverted, with this revert data.
    #[error("execution reverted{}", revert_reason(.0).map(|r| format!(": {r}")).unwrap_or_default())]
    Reverted(Bytes),
    /// The call ran and halted (out of gas, invalid opcode, ...).
    #[error("{0}")]
    Halted(String),
    /// The call could not run as a transaction (fees, balance, gas limit, ...).
    #[error("{0}")]
    Invalid(String),
}

/// The `Error(string)` message in revert data, if it is one.
pub fn revert_reason(data: &Bytes) -> Option<String> {
    alloy_sol_types::Revert::abi_decode(data)
        .ok()
        .map(|r| r.reason)
}

/// A finished call: gas used and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// Gas the call used (after refunds).
    pub gas_used: u64,
    /// Return data.
    pub output: Bytes,
    /// Logs emitted.
    pub logs: Vec<alloy_primitives::Log>,
}

/// Runs calls on the post-state of one block, in that block's environment (number, timestamp,
/// base fee, L1 fee parameters as its state holds them).
pub struct CallRunner<'a> {
    spec: &'a ChainSpec,
    header: Header,
    state: &'a StateSnapshot,
    db: crate::chain::state::ExecutionDb,
    /// Gas the last call used, reverted or halted ones included (what `eth_simulateV1` reports
    /// and adds to its block, as geth and reth do).
    last_gas_used: u64,
}

impl<'a> CallRunner<'a> {
    /// Calls on `state`, the post-state of the block with `header` and `hash`.
    pub fn new(
        spec: &'a ChainSpec,
        header: &'a Header,
        hash: alloy_primitives::B256,
        state: &'a StateSnapshot,
    ) -> Self {
        Self {
            spec,
            header: header.clone(),
            state,
            db: state.child(header.number, hash),
            last_gas_used: 0,
        }
    }

    /// Gas the last call used, whether it succeeded, reverted or halted.
    pub fn last_gas_used(&self) -> u64 {
        self.last_gas_used
    }

    /// The block the calls run in.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Runs `req` with at most `gas_limit` gas. Like geth, a request without any fee field runs
    /// at gas price zero (no base fee check, no fee charged), and the nonce is not checked.
    pub fn run(
        &mut self,
        req: &TransactionRequest,
        gas_limit: u64,
    ) -> Result<CallOutcome, CallError> {
        self.execute(req, gas_limit, false)
    }

    /// Like [`Self::run`], but the call's state changes stay for the calls after it (as the
    /// calls of one `eth_simulateV1` block), whether it succeeded or reverted.
    pub fn run_and_commit(
        &mut self,
        req: &TransactionRequest,
        gas_limit: u64,
    ) -> Result<CallOutcome, CallError> {
        self.execute(req, gas_limit, true)
    }

    /// Moves the calls to the block after the current one (number + 1, timestamp + 1).
    pub fn next_block(&mut self) {
        self.header.number += 1;
        self.header.timestamp += 1;
    }

    /// Applies an `eth_simulateV1` block's overrides to the block the calls run in (the
    /// fields geth's and reth's simulated headers take from them; the rest are refused).
    pub fn override_block(&mut self, o: &BlockOverrides) -> Result<(), CallError> {
        if o.difficulty.is_some()
            || o.blob_base_fee.is_some()
            || o.beacon_root.is_some()
            || o.block_hash.is_some()
        {
            return Err(CallError::Invalid(
                "only number, time, gasLimit, feeRecipient, prevRandao and baseFeePerGas can be overridden"
                    .into(),
            ));
        }
        if let Some(n) = o.number {
            self.header.number = n.saturating_to();
        }
        if let Some(t) = o.time {
            self.header.timestamp = t;
        }
        if let Some(g) = o.gas_limit {
            self.header.gas_limit = g;
        }
        if let Some(c) = o.coinbase {
            self.header.beneficiary = c;
        }
        if let Some(r) = o.random {
            self.header.mix_hash = r;
        }
        if let Some(b) = o.base_fee {
            self.header.base_fee_per_gas = Some(b.saturating_to());
        }
        Ok(())
    }

    /// Replaces `address`'s code for the calls after this (balance, nonce and storage stay),
    /// as an `eth_simulateV1` state override with only `code` does.
    pub fn set_code(&mut self, address: Address, code: Bytes) {
        let info = revm::Database::basic(&mut self.db, address)
            .ok()
            .flatten()
            .unwrap_or_default();
        let bytecode = Bytecode::new_raw(code);
        let mut account = Account::from(AccountInfo {
            code_hash: bytecode.hash_slow(),
            code: Some(bytecode),
            ..info
        });
        account.mark_touch();
        let mut changes = AddressMap::default();
        changes.insert(address, account);
        revm::DatabaseCommit::commit(&mut self.db, changes);
    }

    fn execute(
        &mut self,
        req: &TransactionRequest,
        gas_limit: u64,
        commit: bool,
    ) -> Result<CallOutcome, CallError> {
        let caller = req.from.unwrap_or_default();
        // The state so far (with committed calls), not only the block's.
        let account = revm::Database::basic(&mut self.db, caller)
            .ok()
            .flatten()
            .unwrap_or_default();
        let balance = account.balance;
        let value = req.value.unwrap_or_default();
        let priced = req.gas_price.is_some() || req.max_fee_per_gas.is_some();
        if !priced && value > balance {
            return Err(CallError::Invalid(format!(
                "insufficient funds for transfer: address {caller} have {balance} want {value}"
            )));
        }
        let mut evm_env =
            evm_env_for_op_block(&self.header, &self.spec.hardforks, self.spec.chain_id);
        evm_env.cfg_env.disable_nonce_check = true;
        // Unpriced calls pay nothing: no base fee check and, since the sender may hold no ETH
        // at all, no balance check for the (zero) fees and the L1 data fee (the value was
        // checked above).
        evm_env.cfg_env.disable_base_fee = !priced;
        evm_env.cfg_env.disable_balance_check = !priced;
        let (tx_type, gas_price, priority) = match (req.max_fee_per_gas, req.gas_price) {
            (Some(max), _) => (2, max, Some(req.max_priority_fee_per_gas.unwrap_or(0))),
            (None, Some(price)) => (u8::from(req.access_list.is_some()), price, None),
            (None, None) => (0, 0, None),
        };
        let tx = TxEnv {
            tx_type,
            caller,
            gas_limit,
            gas_price,
            gas_priority_fee: priority,
            kind: req.to.unwrap_or(TxKind::Create),
            value,
            data: req.input.input().cloned().unwrap_or_default(),
            nonce: account.nonce,
            chain_id: Some(self.spec.chain_id),
            access_list: req.access_list.clone().unwrap_or_default(),
            ..Default::default()
        };
        let tx = OpTx(OpTransaction {
            base: tx,
            // A call has no encoding; empty bytes make its L1 data fee the minimum.
            enveloped_tx: Some(Bytes::new()),
            deposit: Default::default(),
        });
        let mut evm = OpEvmFactory::<OpTx>::default().create_evm(&mut self.db, evm_env);
        let ResultAndState { result, state } = evm
            .transact_raw(tx)
            .map_err(|e| CallError::Invalid(e.to_string()))?;
        drop(evm);
        if commit {
            revm::DatabaseCommit::commit(&mut self.db, state);
        }
        let gas_used = result.tx_gas_used();
        self.last_gas_used = gas_used;
        match result {
            ExecutionResult::Success { output, logs, .. } => Ok(CallOutcome {
                gas_used,
                output: output.into_data(),
                logs,
            }),
            ExecutionResult::Revert { output, .. } => Err(CallError::Reverted(output)),
            ExecutionResult::Halt { reason, .. } => Err(CallError::Halted(halt_message(&reason))),
        }
    }
}

impl CallRunner<'_> {
    /// Runs `tx` as one call of an `eth_simulateV1` block, as reth's simulation does: without
    /// `validation` the nonce and base fee checks are off (the balance check for
    /// `gas * max fee + value` stays). Its state changes stay for the calls after it, whether it
    /// succeeded, reverted or halted. `Err`: op-revm refused it as a transaction. (reth also
    /// turns EIP-3607 off; this revm build has no switch for it, so a sender with code is
    /// refused here.)
    pub fn simulate_call(
        &mut self,
        tx: TxEnv,
        validation: bool,
    ) -> Result<ExecutionResult<OpHaltReason>, SimulateRefusal> {
        let mut evm_env =
            evm_env_for_op_block(&self.header, &self.spec.hardforks, self.spec.chain_id);
        if !validation {
            evm_env.cfg_env.disable_nonce_check = true;
            evm_env.cfg_env.disable_base_fee = true;
            evm_env.cfg_env.tx_gas_limit_cap = Some(u64::MAX);
        }
        let tx = OpTx(OpTransaction {
            base: tx,
            // reth runs a simulated call with an empty envelope: no L1 data fee.
            enveloped_tx: Some(Bytes::new()),
            deposit: Default::default(),
        });
        let mut evm = OpEvmFactory::<OpTx>::default().create_evm(&mut self.db, evm_env);
        let outcome = evm.transact_raw(tx);
        drop(evm);
        let ResultAndState { result, state } = outcome.map_err(|e| match e {
            revm::context::result::EVMError::Transaction(alloy_op_evm::OpTxError(
                op_revm::OpTransactionError::Base(invalid),
            )) => SimulateRefusal::Invalid(invalid),
            other => SimulateRefusal::Other(other.to_string()),
        })?;
        revm::DatabaseCommit::commit(&mut self.db, state);
        self.last_gas_used = result.tx_gas_used();
        Ok(result)
    }

    /// The block the calls run in, to move it on or override its fields.
    pub fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }

    /// The nonce of `address` in the state the calls so far left.
    pub fn nonce(&mut self, address: Address) -> u64 {
        revm::Database::basic(&mut self.db, address)
            .ok()
            .flatten()
            .map_or(0, |a| a.nonce)
    }
}

/// Why op-revm would not run an `eth_simulateV1` call.
#[derive(Debug)]
pub enum SimulateRefusal {
    /// It is not a valid transaction (balance, nonce, fees, intrinsic gas, ...).
    Invalid(revm::context::result::InvalidTransaction),
    /// Anything else (database, OP-specific).
    Other(String),
}

fn halt_message(reason: &OpHaltReason) -> String {
    match reason {
        OpHaltReason::Base(revm::context::result::HaltReason::OutOfGas(_)) => {
            "out of gas".to_string()
        }
        other => format!("execution halted: {other:?}"),
    }
}

/// The gas limit a call may use: the request's `gas`, else the block gas limit; for a priced
/// request also no more than the sender's balance (minus value) buys.
pub fn gas_cap(runner: &CallRunner<'_>, req: &TransactionRequest) -> u64 {
    let (header, state) = (&runner.header, runner.state);
    let mut cap = req.gas.unwrap_or(header.gas_limit).min(header.gas_limit);
    let price = req.max_fee_per_gas.or(req.gas_price).unwrap_or(0);
    if price > 0 {
        let balance = state.balance(&req.from.unwrap_or_default());
        let left = balance.saturating_sub(req.value.unwrap_or_default());
        let affordable = left / U256::from(price);
        cap = cap.min(u64::try_from(affordable).unwrap_or(u64::MAX));
    }
    cap
}

/// `eth_estimateGas`: the least gas limit at which `req` succeeds, found by binary search
/// between what it used and the cap. Fails as the call fails at the cap.
pub fn estimate_gas(
    runner: &mut CallRunner<'_>,
    req: &TransactionRequest,
) -> Result<u64, CallError> {
    let cap = gas_cap(runner, req);
    let first = runner.run(req, cap)?;
    // Below `used` it cannot succeed; refunds and the 63/64 rule can make it need more.
    let mut lo = first.gas_used.saturating_sub(1).max(TX_BASE_GAS - 1);
    let mut hi = cap;
    let optimistic = (first.gas_used + 2_300).saturating_mul(64) / 63;
    if optimistic < hi && runner.run(req, optimistic).is_ok() {
        hi = optimistic;
    }
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        match runner.run(req, mid) {
            Ok(_) => hi = mid,
            Err(CallError::Reverted(_) | CallError::Halted(_) | CallError::Invalid(_)) => lo = mid,
        }
    }
    Ok(hi)
}
