//! Executing the pending blocks through the upstream's `eth_simulateV1` (op-geth and op-reth
//! serve it, as does the devnet engine): each pending block becomes one simulated block with its
//! header fields as block overrides and its transactions (deposits included) as calls, on top of
//! the head the pending blocks extend. From one run per new flashblock come the receipts a
//! stream without metadata does not send and the balances of every sender and recipient; state
//! reads of other accounts, code and storage append probe calls to a run of their own.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Instant,
};

use alloy_consensus::Transaction;
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, U64, U256, hex};
use alloy_rpc_types_eth::simulate::SimulateError as CallFailure;
use engine_api::codes::METHOD_NOT_FOUND;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, watch};

use crate::{
    context::Context,
    metrics::Simulation,
    pending::block::{Outcome, PendingBlock, PendingTx},
};
use rpc_objects::fees::{BASE_FEE_VAULT, L1_FEE_VAULT, OPERATOR_FEE_VAULT};

/// Executions (one per pending chain seen) kept for the handlers; older ones are dropped.
pub const MAX_EXECUTIONS: usize = 8;
/// Where the balance reader's code is placed (a state override of a probe block).
pub const BALANCE_PROBE: Address = Address::new(hex!("00000000000000000000000000000000fb0ba1a0"));
/// Where the code reader's code is placed.
pub const CODE_PROBE: Address = Address::new(hex!("00000000000000000000000000000000fb0bc0de"));
/// `BALANCE(calldata[0..32])` as one word.
const BALANCE_READER: [u8; 9] = hex!("5f35315f5260205ff3");
/// The code of the account `calldata[0..32]` (EXTCODESIZE + EXTCODECOPY, returned whole).
const CODE_READER: [u8; 11] = hex!("5f35803b805f5f843c5ff3");
/// Storage slot `calldata[0..32]` of the account running it (placed over the account's own
/// code, so `SLOAD` reads its storage).
const STORAGE_READER: [u8; 9] = hex!("5f35545f5260205ff3");
/// Gas of one probe call (a 24 KiB code copy costs ~6k).
const PROBE_GAS: u64 = 200_000;

/// A state read after the pending transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Read {
    /// An account's balance.
    Balance(Address),
    /// An account's code.
    Code(Address),
    /// One storage slot of an account.
    Storage(Address, B256),
}

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

/// The pending chain a simulation ran: the head it extends and its blocks' hashes (each
/// flashblock changes its block's hash, so this names one flashblock of each block).
pub type ChainKey = (B256, Vec<B256>);

/// The served pending chain, copied out of the lock: its key, head and blocks.
pub fn snapshot(ctx: &Context) -> Option<(ChainKey, Vec<PendingBlock>)> {
    let state = ctx.read();
    let chain = state.chain(Instant::now());
    let head = chain.first()?.parent_hash();
    let key = (head, chain.iter().map(|b| b.hash).collect());
    Some((key, chain.into_iter().cloned().collect()))
}

/// A pending transaction as a call: same sender, nonce, gas, fees, target, value, input and
/// access list. A deposit pays no gas and its mint cannot be expressed (it is left out): it
/// states zero fees, because op-reth prices a call without fee fields at the block's base fee
/// and refuses the whole request (-38014) when the sender cannot pay that (the L1-attributes
/// depositor holds nothing); op-geth runs a call without fee fields at price 0 either way.
pub fn tx_call(tx: &PendingTx) -> Value {
    let inner = &tx.tx;
    let mut call = json!({
        "from": inner.signer(),
        "gas": U64::from(inner.gas_limit()),
        "value": inner.value(),
        "input": inner.input(),
    });
    if let Some(to) = inner.to() {
        call["to"] = json!(to);
    }
    if inner.is_deposit() {
        call["maxFeePerGas"] = json!("0x0");
        call["maxPriorityFeePerGas"] = json!("0x0");
        return call;
    }
    call["nonce"] = json!(U64::from(inner.nonce()));
    if inner.is_dynamic_fee() {
        call["maxFeePerGas"] = json!(U256::from(inner.max_fee_per_gas()));
        call["maxPriorityFeePerGas"] = json!(U256::from(
            inner.max_priority_fee_per_gas().unwrap_or_default()
        ));
    } else {
        call["gasPrice"] = json!(U256::from(inner.max_fee_per_gas()));
    }
    if let Some(list) = inner.access_list() {
        call["accessList"] = json!(list);
    }
    if let Some(auths) = inner.authorization_list() {
        call["authorizationList"] = json!(auths);
    }
    call
}

/// A pending block as a simulated block: its header's number, timestamp, gas limit, fee
/// recipient, prevRandao and base fee as overrides (without a base fee override geth and reth
/// simulate at base fee 0 and would charge senders less), its transactions as calls.
pub fn simulated_block(block: &PendingBlock) -> Value {
    json!({
        "blockOverrides": {
            "number": U64::from(block.number()),
            "time": U64::from(block.header.timestamp),
            "gasLimit": U64::from(block.header.gas_limit),
            "feeRecipient": block.header.beneficiary,
            "prevRandao": block.header.mix_hash,
            "baseFeePerGas": U64::from(block.base_fee()),
        },
        "calls": block.txs.iter().map(tx_call).collect::<Vec<_>>(),
    })
}

/// op-reth's default `--rpc.gascap`: it refuses (-38026) a simulated block whose gas limit
/// override is above both this and the parent's gas limit.
pub const RPC_GAS_CAP: u64 = 50_000_000;

/// The gas limits the calls of a simulated block state, added up (a call without `gas` counts
/// nothing).
fn stated_gas(block: &Value) -> u64 {
    block["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["gas"].as_str()?.parse::<U64>().ok())
        .fold(0u64, |sum, g| sum.saturating_add(g.to()))
}

/// Raises a simulated block's gas limit override to the sum of its calls' gas limits when they
/// do not fit under the header's `gas_limit`. op-reth refuses a block whose calls' stated gas
/// limits add up to more than its gas limit (-38015), whatever they use; a real block only
/// needs each transaction's limit to fit in the gas left, so a full block's limits often add up
/// to more. Only then does GASLIMIT read differently in the simulation.
fn fit_gas_limit(gas_limit: u64, block: &mut Value) {
    let stated = stated_gas(block);
    if stated > gas_limit {
        block["blockOverrides"]["gasLimit"] = json!(U64::from(stated));
    }
}

/// The most gas a caller's call appended to the last pending block can state and still be
/// accepted by op-reth: the block's gas limit can be raised up to the larger of its own and
/// the RPC gas cap, less what the pending transactions of that block state.
pub fn tail_gas_allowance(blocks: &[PendingBlock]) -> u64 {
    let Some(last) = blocks.last() else { return 0 };
    let stated = stated_gas(&simulated_block(last));
    last.header
        .gas_limit
        .max(RPC_GAS_CAP)
        .saturating_sub(stated)
}

/// The probe blocks for `reads`: balances and code read by reader code placed at two probe
/// addresses; storage by replacing each account's code with a slot reader in a block of its
/// own (after the balance and code reads, which must see the real code).
fn probe_blocks(reads: &[Read]) -> Vec<Value> {
    let word = |a: Address| B256::left_padding_from(a.as_slice());
    let call =
        |to: Address, data: B256| json!({"to": to, "input": data, "gas": U64::from(PROBE_GAS)});
    let mut accounts = Vec::new();
    let mut slots = Vec::new();
    let mut slot_code = serde_json::Map::new();
    for read in reads {
        match *read {
            Read::Balance(a) => accounts.push(call(BALANCE_PROBE, word(a))),
            Read::Code(a) => accounts.push(call(CODE_PROBE, word(a))),
            Read::Storage(a, slot) => {
                slots.push(call(a, slot));
                slot_code.insert(
                    a.to_string(),
                    json!({"code": Bytes::from_static(&STORAGE_READER)}),
                );
            }
        }
    }
    // Probe calls carry no fees; at base fee 0 (geth's and reth's default without
    // validation, stated so for any EL) they credit no base fee vault.
    let overrides = json!({"baseFeePerGas": "0x0"});
    let mut out = Vec::new();
    if !accounts.is_empty() {
        out.push(json!({
            "blockOverrides": overrides,
            "stateOverrides": {
                BALANCE_PROBE.to_string(): {"code": Bytes::from_static(&BALANCE_READER)},
                CODE_PROBE.to_string(): {"code": Bytes::from_static(&CODE_READER)},
            },
            "calls": accounts,
        }));
    }
    if !slots.is_empty() {
        out.push(json!({"blockOverrides": overrides, "stateOverrides": slot_code, "calls": slots}));
    }
    out
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
struct SimulatedCalls {
    calls: Vec<SimCallResult>,
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

/// The `eth_simulateV1` params for `blocks` on top of `head`, `tail` last in the last pending
/// block, then the `extra` blocks; and how many blocks they ask for. Every block's stated gas
/// fits its gas limit (op-reth's -38015), deposits state zero fees (op-reth's -38014).
pub fn simulate_request(
    head: B256,
    blocks: &[PendingBlock],
    tail: Option<Value>,
    extra: Vec<Value>,
) -> (Value, usize) {
    let mut block_state_calls: Vec<Value> = blocks.iter().map(simulated_block).collect();
    if let Some(call) = tail
        && let Some(last) = block_state_calls.last_mut()
        && let Some(calls) = last["calls"].as_array_mut()
    {
        calls.push(call);
    }
    for (block, simulated) in blocks.iter().zip(&mut block_state_calls) {
        fit_gas_limit(block.header.gas_limit, simulated);
    }
    block_state_calls.extend(extra);
    let requested = block_state_calls.len();
    (
        json!([{ "blockStateCalls": block_state_calls }, { "blockHash": head }]),
        requested,
    )
}

/// Simulates `blocks` on top of `head` with `tail` (a caller's call) run last in the last
/// pending block, in its environment, then the `extra` blocks (probe reads).
pub async fn simulate(
    ctx: &Context,
    head: B256,
    blocks: &[PendingBlock],
    tail: Option<Value>,
    extra: Vec<Value>,
) -> Result<Ran, SimulateError> {
    let has_tail = tail.is_some();
    let (request, requested) = simulate_request(head, blocks, tail, extra);
    let answer = call_simulate(ctx, &request).await?;
    if answer.len() != requested {
        return Err(SimulateError::Failed(format!(
            "{} simulated blocks for {} requested",
            answer.len(),
            requested
        )));
    }
    let mut answer = answer.into_iter().map(|b| b.calls);
    let mut ran: Vec<Vec<SimCallResult>> = answer.by_ref().take(blocks.len()).collect();
    let tail = match (has_tail, ran.last_mut()) {
        (true, Some(last)) => last.pop(),
        _ => None,
    };
    for (block, calls) in blocks.iter().zip(&ran) {
        if calls.len() != block.txs.len() {
            return Err(SimulateError::Failed(format!(
                "{} call results for {} transactions",
                calls.len(),
                block.txs.len()
            )));
        }
    }
    Ok(Ran {
        blocks: ran,
        tail,
        extra: answer.flatten().collect(),
    })
}

/// The pending chain executed: every block with every receipt, and balances read after it.
#[derive(Debug)]
pub struct Execution {
    /// The head the chain extends.
    pub head: B256,
    /// The blocks, receipts filled in from the simulation where the stream sent none.
    pub blocks: Vec<PendingBlock>,
    /// Balances after the chain of every sender and recipient (and fee recipient), as the
    /// simulation left them, corrected for the L1 and operator fees it gets wrong.
    pub balances: HashMap<Address, U256>,
}

impl Execution {
    /// The executed block with `hash`.
    pub fn block(&self, hash: &B256) -> Option<&PendingBlock> {
        self.blocks.iter().find(|b| b.hash == *hash)
    }

    /// Whether the executed chain ran no code (plain transfers only).
    pub fn plain_transfers_only(&self) -> bool {
        self.blocks.iter().all(PendingBlock::plain_transfers_only)
    }
}

/// One chain's execution, computed once; `None` when there is nothing to serve.
type ExecutionCell = Arc<OnceCell<Option<Arc<Execution>>>>;

/// Executions by pending chain, bounded (oldest dropped), each computed once however many
/// handlers ask for it at the same time.
#[derive(Debug, Default)]
pub struct Executions {
    entries: Mutex<VecDeque<(ChainKey, ExecutionCell)>>,
    /// How the upstream's simulation pays fees, once told.
    family: OnceCell<Family>,
}

impl Executions {
    fn cell(&self, ctx: &Context, key: &ChainKey) -> ExecutionCell {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, cell)) = entries.iter().find(|(k, _)| k == key) {
            return cell.clone();
        }
        let cell = Arc::new(OnceCell::new());
        entries.push_back((key.clone(), cell.clone()));
        while entries.len() > MAX_EXECUTIONS {
            entries.pop_front();
        }
        ctx.metrics.set_executions_cached(entries.len());
        cell
    }
}

/// How the upstream's `eth_simulateV1` pays fees for calls, where the two families of OP Stack
/// execution clients differ (see the README, "What the simulation charges").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// op-geth: a call without fee fields pays nothing to anyone; the operator fee vault is
    /// credited for priced calls.
    Geth,
    /// op-revm (op-reth, the devnet engine): a call without fee fields still credits the base
    /// fee vault `base fee * gas used`; the operator fee vault is never credited.
    Revm,
}

/// What the upstream's simulation of the pending transactions gets wrong about balances, by
/// account: `(credit, debit)` to apply to a simulated balance. Both families run a call
/// without an L1 data fee (op-geth: no rollup cost data, and `buyGas` skips L1 and operator
/// costs for messages that skip nonce checks; op-revm: an empty enveloped transaction costs
/// nothing) but still refund the unused part of the operator fee (`operator fee(gas limit) -
/// operator fee(gas used)`) they never charged. So each sender pays, on top of what the
/// simulation took, its L1 data fee plus the operator fee at its gas limit; the L1 fee vault
/// gets the L1 fees. By family: op-revm credits the base fee vault for the deposits (run as
/// calls without fees, at the pending block's base fee) and not the operator fee vault.
fn unsimulated_fees(blocks: &[PendingBlock], family: Family) -> HashMap<Address, (U256, U256)> {
    let mut out: HashMap<Address, (U256, U256)> = HashMap::new();
    for block in blocks {
        for ptx in &block.txs {
            if ptx.tx.is_deposit() {
                if family == Family::Revm {
                    let minted = U256::from(block.base_fee()) * U256::from(ptx.gas_used);
                    let vault = out.entry(BASE_FEE_VAULT).or_default();
                    vault.1 = vault.1.saturating_add(minted);
                }
                continue;
            }
            let Some(fees) = ptx.fees else { continue };
            let at_limit = block.fees().map_or(U256::ZERO, |f| {
                f.tx_fees(&ptx.tx.inner().encoded_2718(), ptx.tx.gas_limit())
                    .operator_fee
            });
            let payer = out.entry(ptx.tx.signer()).or_default();
            payer.1 = payer.1.saturating_add(fees.l1_fee).saturating_add(at_limit);
            let l1 = out.entry(L1_FEE_VAULT).or_default();
            l1.0 = l1.0.saturating_add(fees.l1_fee);
            if family == Family::Revm {
                let op = out.entry(OPERATOR_FEE_VAULT).or_default();
                op.0 = op.0.saturating_add(fees.operator_fee);
            }
        }
    }
    out
}

/// A balance as the simulation reported it, with what the simulation got wrong applied (see
/// [`unsimulated_fees`]).
pub fn corrected_balance(
    blocks: &[PendingBlock],
    address: Address,
    simulated: U256,
    family: Family,
) -> U256 {
    match unsimulated_fees(blocks, family).get(&address) {
        Some((credit, debit)) => simulated.saturating_add(*credit).saturating_sub(*debit),
        None => simulated,
    }
}

/// Gas of the calibration call: a call to an account without code uses exactly this.
const CALIBRATION_GAS: u64 = 21_000;

/// Tells the upstream's [`Family`] from one `eth_simulateV1` run on its head: the base fee
/// vault's balance read (at base fee 0) before and after a block at base fee 1 holding one
/// call without fee fields to an account without code. op-revm credits the vault 21000, op-geth
/// nothing; anything else is an error (and is asked again next time).
async fn detect_family(ctx: &Context) -> Result<Family, SimulateError> {
    let read = json!({"to": BALANCE_PROBE,
        "input": B256::left_padding_from(BASE_FEE_VAULT.as_slice()), "gas": U64::from(PROBE_GAS)});
    let probe_block = |with_code: bool| {
        let mut b = json!({"blockOverrides": {"baseFeePerGas": "0x0"}, "calls": [read]});
        if with_code {
            b["stateOverrides"] = json!({
                BALANCE_PROBE.to_string(): {"code": Bytes::from_static(&BALANCE_READER)},
            });
        }
        b
    };
    let request = json!([{ "blockStateCalls": [
        probe_block(true),
        // Zero fees stated: op-reth would price a call without them at base fee 1 and refuse
        // it when the zero address cannot pay.
        {"blockOverrides": {"baseFeePerGas": "0x1"},
            "calls": [{"to": CODE_PROBE, "gas": U64::from(CALIBRATION_GAS),
                "maxFeePerGas": "0x0", "maxPriorityFeePerGas": "0x0"}]},
        probe_block(false),
    ]}, "latest"]);
    let answer = call_simulate(ctx, &request).await?;
    let vault = |i: usize| {
        answer
            .get(i)
            .and_then(|b| b.calls.first())
            .and_then(word_u256)
    };
    match (vault(0), vault(2)) {
        (Some(before), Some(after)) if after == before => Ok(Family::Geth),
        (Some(before), Some(after)) if after == before + U256::from(CALIBRATION_GAS) => {
            Ok(Family::Revm)
        }
        other => Err(SimulateError::Failed(format!(
            "calibration: base fee vault {other:?}"
        ))),
    }
}

/// The upstream's [`Family`], detected once (a failed detection is retried next time).
async fn family(ctx: &Context) -> Result<Family, SimulateError> {
    ctx.executions
        .family
        .get_or_try_init(|| detect_family(ctx))
        .await
        .copied()
}

/// `simulated`, the balance of `address` after `blocks` as the upstream simulated it,
/// corrected (`None`: a fee vault whose correction depends on the upstream's family, which
/// could not be told).
async fn corrected(
    ctx: &Context,
    blocks: &[PendingBlock],
    address: Address,
    simulated: U256,
) -> Option<U256> {
    let family = if address == BASE_FEE_VAULT || address == OPERATOR_FEE_VAULT {
        match family(ctx).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%e, "simulation family unknown");
                return None;
            }
        }
    } else {
        // Accounts other than these two vaults are corrected the same for both.
        Family::Geth
    };
    Some(corrected_balance(blocks, address, simulated, family))
}

fn word_u256(r: &SimCallResult) -> Option<U256> {
    (r.status && r.return_data.len() == 32).then(|| U256::from_be_slice(&r.return_data))
}

/// The execution of the served pending chain: cached per chain, computed on the first ask (by
/// the background task on each new flashblock, or a handler). `None`: no pending chain, or
/// the simulation is unavailable, failed or diverged from the stream (counted by outcome).
pub async fn execution(ctx: &Context) -> Option<Arc<Execution>> {
    let (key, blocks) = snapshot(ctx)?;
    let cell = ctx.executions.cell(ctx, &key);
    cell.get_or_init(|| execute(ctx, key.0, blocks))
        .await
        .clone()
}

async fn execute(ctx: &Context, head: B256, blocks: Vec<PendingBlock>) -> Option<Arc<Execution>> {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_millis() as u64;
    let mut touched: Vec<Address> = Vec::new();
    let mut seen = HashSet::new();
    for block in &blocks {
        let parties = block
            .txs
            .iter()
            .flat_map(|t| [Some(t.tx.signer()), t.tx.to()])
            .chain([Some(block.header.beneficiary)])
            .flatten();
        for a in parties {
            if seen.insert(a) {
                touched.push(a);
            }
        }
    }
    let reads: Vec<Read> = touched.iter().map(|a| Read::Balance(*a)).collect();
    let ran = match simulate(ctx, head, &blocks, None, probe_blocks(&reads)).await {
        Ok(r) => r,
        Err(SimulateError::Unsupported) => {
            ctx.metrics.simulated(Simulation::Unsupported, elapsed());
            return None;
        }
        Err(e) => {
            tracing::debug!(%e, "pending execution failed");
            ctx.metrics.simulated(Simulation::Failed, elapsed());
            return None;
        }
    };
    let mut executed = Vec::with_capacity(blocks.len());
    for (block, calls) in blocks.iter().zip(&ran.blocks) {
        let outcomes: Vec<Outcome> = calls
            .iter()
            .map(|c| Outcome {
                status: c.status,
                gas_used: c.gas_used,
                logs: c.logs.clone(),
            })
            .collect();
        match block.executed(&outcomes) {
            Ok(b) => executed.push(b),
            Err(e) => {
                tracing::debug!(%e, block = block.number(), "simulation diverged from the stream");
                ctx.metrics.simulated(Simulation::Divergent, elapsed());
                return None;
            }
        }
    }
    let mut balances = HashMap::new();
    for (address, result) in touched.iter().zip(&ran.extra) {
        if let Some(b) = word_u256(result)
            && let Some(b) = corrected(ctx, &executed, *address, b).await
        {
            balances.insert(*address, b);
        }
    }
    ctx.metrics.simulated(Simulation::Ok, elapsed());
    Some(Arc::new(Execution {
        head,
        blocks: executed,
        balances,
    }))
}

/// What a probe read: a balance or slot as a word, code as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadValue {
    /// A balance or a storage word.
    Word(U256),
    /// Code.
    Code(Bytes),
}

/// Reads `read` after the pending chain `blocks` (on `head`) with a run of its own.
pub async fn probe(
    ctx: &Context,
    head: B256,
    blocks: &[PendingBlock],
    read: Read,
) -> Result<ReadValue, SimulateError> {
    let ran = simulate(ctx, head, blocks, None, probe_blocks(&[read])).await?;
    let result = ran
        .extra
        .first()
        .ok_or_else(|| SimulateError::Failed("no probe result".into()))?;
    if !result.status {
        return Err(SimulateError::Failed(format!(
            "probe failed: {:?}",
            result.error.as_ref().map(|e| &e.message)
        )));
    }
    ctx.metrics.probed();
    Ok(match read {
        Read::Code(_) => ReadValue::Code(result.return_data.clone()),
        Read::Balance(a) => {
            let simulated = word_u256(result)
                .ok_or_else(|| SimulateError::Failed("short balance word".into()))?;
            ReadValue::Word(
                corrected(ctx, blocks, a, simulated)
                    .await
                    .ok_or_else(|| SimulateError::Failed("fee vault correction unknown".into()))?,
            )
        }
        Read::Storage(..) => ReadValue::Word(
            word_u256(result).ok_or_else(|| SimulateError::Failed("short storage word".into()))?,
        ),
    })
}

/// Executes each new pending chain as flashblocks arrive (woken per accepted flashblock; a
/// burst coalesces into one run of the latest chain) until `stop` flips.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = ctx.execute_nudge.notified() => {}
            _ = stop.changed() => return,
        }
        let _ = execution(&ctx).await;
    }
}

/// One `eth_simulateV1` call to the upstream; an upstream without the method (-32601) is
/// `Unsupported`, any other failure `Failed`.
async fn call_simulate(
    ctx: &Context,
    request: &serde_json::Value,
) -> Result<Vec<SimulatedCalls>, SimulateError> {
    match ctx
        .upstream
        .call("eth_simulateV1", request, ctx.config.upstream.timeout)
        .await
    {
        Ok(a) => Ok(a),
        Err(engine_api::UpstreamError::Rpc { error, .. }) if error.code() == METHOD_NOT_FOUND => {
            Err(SimulateError::Unsupported)
        }
        Err(e) => Err(SimulateError::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// op-geth's call result (`simCallResult`: logs as full `types.Log`, error with code 3
    /// and revert data) and the devnet engine's (logs as address, topics, data) both parse.
    #[test]
    fn call_results_of_op_geth_and_the_devnet_engine_parse() {
        let geth = json!({
            "returnData": "0x",
            "logs": [{
                "address": Address::repeat_byte(0xaa),
                "topics": [B256::repeat_byte(1)],
                "data": "0x01",
                "blockNumber": "0xb",
                "transactionHash": B256::repeat_byte(2),
                "transactionIndex": "0x0",
                "blockHash": B256::repeat_byte(3),
                "logIndex": "0x0",
                "removed": false
            }],
            "gasUsed": "0x5208",
            "status": "0x1"
        });
        let r: SimCallResult = serde_json::from_value(geth).unwrap();
        assert!(r.status);
        assert_eq!(r.gas_used, 21_000);
        assert_eq!(r.logs[0].address, Address::repeat_byte(0xaa));
        assert_eq!(r.logs[0].data.data, Bytes::from_static(&[1]));
        let reverted = json!({
            "returnData": "0x2a", "logs": [], "gasUsed": "0x6000", "status": "0x0",
            "error": {"code": 3, "message": "execution reverted", "data": "0x2a"}
        });
        let r: SimCallResult = serde_json::from_value(reverted).unwrap();
        assert!(!r.status);
        assert_eq!(r.error.unwrap().code, 3);
        let devnet = json!({"returnData": "0x", "gasUsed": "0x1", "status": "0x1",
            "logs": [{"address": Address::ZERO, "topics": [], "data": "0x", "removed": false}]});
        assert_eq!(
            serde_json::from_value::<SimCallResult>(devnet)
                .unwrap()
                .logs
                .len(),
            1
        );
    }

    /// A block with an Isthmus L1-attributes deposit (L1 fee scalars and an operator fee of
    /// scalar 2_000_000 and constant 1000) and one EIP-1559 call of `gas_limit` that used
    /// `gas_used`, its receipts sent by the stream.
    fn block_with_operator_fee(
        signer: &alloy_signer_local::PrivateKeySigner,
        gas_limit: u64,
        gas_used: u64,
    ) -> PendingBlock {
        use alloy_consensus::{Eip658Value, Receipt, SignableTransaction, TxEip1559};
        use alloy_primitives::{TxKind, keccak256};
        use alloy_rpc_types_engine::PayloadId;
        use alloy_signer::SignerSync;
        use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope, TxDeposit};
        use op_alloy_rpc_types_engine::{
            OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
            OpFlashblockPayloadMetadata,
        };
        use rpc_objects::fees::{L1_BLOCK_PREDEPLOY, L1_INFO_DEPOSITOR};

        let mut calldata = vec![0u8; 176];
        calldata[..4].copy_from_slice(&keccak256("setL1BlockValuesIsthmus()")[..4]);
        calldata[4..8].copy_from_slice(&1368u32.to_be_bytes());
        calldata[8..12].copy_from_slice(&810_949u32.to_be_bytes());
        calldata[36..68].copy_from_slice(&U256::from(1_000_000_000u64).to_be_bytes::<32>());
        calldata[68..100].copy_from_slice(&U256::from(1u64).to_be_bytes::<32>());
        calldata[164..168].copy_from_slice(&2_000_000u32.to_be_bytes());
        calldata[168..176].copy_from_slice(&1000u64.to_be_bytes());
        let deposit = OpTxEnvelope::Deposit(alloy_consensus::Sealed::new(TxDeposit {
            source_hash: B256::repeat_byte(1),
            from: L1_INFO_DEPOSITOR,
            to: TxKind::Call(L1_BLOCK_PREDEPLOY),
            mint: 0,
            value: U256::ZERO,
            gas_limit: 1_000_000,
            is_system_transaction: false,
            input: calldata.into(),
        }));
        let tx = TxEip1559 {
            chain_id: 901,
            nonce: 0,
            gas_limit,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000,
            to: TxKind::Call(Address::repeat_byte(0xc0)),
            value: U256::ZERO,
            access_list: Default::default(),
            input: Bytes::from_static(&[1, 2, 3, 4]),
        };
        let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
        let call = OpTxEnvelope::Eip1559(tx.into_signed(signature));
        let deposit_gas = 40_000;
        let receipt = |cumulative| Receipt {
            status: Eip658Value::Eip658(true),
            cumulative_gas_used: cumulative,
            logs: Vec::new(),
        };
        let receipts = [
            (
                deposit.tx_hash(),
                OpReceipt::Deposit(OpDepositReceipt {
                    inner: receipt(deposit_gas),
                    deposit_nonce: Some(0),
                    deposit_receipt_version: Some(1),
                }),
            ),
            (
                call.tx_hash(),
                OpReceipt::Eip1559(receipt(deposit_gas + gas_used)),
            ),
        ];
        let fb = OpFlashblockPayload {
            payload_id: PayloadId::new([1; 8]),
            index: 0,
            base: Some(OpFlashblockPayloadBase {
                parent_hash: B256::repeat_byte(0xaa),
                block_number: 11,
                gas_limit: 30_000_000,
                base_fee_per_gas: U256::from(7),
                ..Default::default()
            }),
            diff: OpFlashblockPayloadDelta {
                gas_used: deposit_gas + gas_used,
                block_hash: B256::repeat_byte(0xbb),
                transactions: [deposit, call]
                    .iter()
                    .map(|t| t.encoded_2718().into())
                    .collect(),
                ..Default::default()
            },
            metadata: OpFlashblockPayloadMetadata {
                block_number: 11,
                new_account_balances: Default::default(),
                receipts: receipts.into_iter().collect(),
            },
        };
        PendingBlock::start(&fb, 8).unwrap()
    }

    /// op-geth and op-revm simulate a call without charging its L1 data fee or operator fee,
    /// yet refund the unused operator fee `(gas limit - gas used) * scalar / 1e6`: the sender
    /// is corrected by its L1 fee plus the operator fee at its gas limit (not at the gas it
    /// used); the operator fee vault gets the fee at the gas used unless the upstream credited
    /// it already (op-geth); the base fee vault loses what op-revm credited it for deposits.
    #[test]
    fn simulated_balances_are_corrected_by_l1_fee_and_operator_fee_at_the_gas_limit() {
        let signer = alloy_signer_local::PrivateKeySigner::random();
        let (limit, used) = (100_000u64, 30_000u64);
        let block = block_with_operator_fee(&signer, limit, used);
        let fees = block.txs[1].fees.expect("fees of the call");
        assert!(fees.l1_fee > U256::ZERO, "the call pays an L1 data fee");
        // Isthmus: gas * scalar / 1e6 + constant.
        let operator = |gas: u64| U256::from(gas * 2 + 1000);
        assert_eq!(fees.operator_fee, operator(used));
        let blocks = [block];
        let simulated = U256::from(10u64.pow(18));
        for family in [Family::Geth, Family::Revm] {
            let corrected = |a| corrected_balance(&blocks, a, simulated, family);
            assert_eq!(
                corrected(signer.address()),
                simulated - fees.l1_fee - operator(limit)
            );
            assert_eq!(corrected(L1_FEE_VAULT), simulated + fees.l1_fee);
            assert_eq!(corrected(Address::repeat_byte(0xc0)), simulated);
        }
        let geth = |a| corrected_balance(&blocks, a, simulated, Family::Geth);
        let revm = |a| corrected_balance(&blocks, a, simulated, Family::Revm);
        // op-revm credits no operator fee vault, op-geth did already.
        assert_eq!(revm(OPERATOR_FEE_VAULT), simulated + operator(used));
        assert_eq!(geth(OPERATOR_FEE_VAULT), simulated);
        // op-revm credited the base fee vault for the deposit run as an unpriced call (40000
        // gas at base fee 7); op-geth did not.
        assert_eq!(revm(BASE_FEE_VAULT), simulated - U256::from(7 * 40_000));
        assert_eq!(geth(BASE_FEE_VAULT), simulated);
    }

    /// What op-reth refused in the recording cannot be asked any more: the L1-attributes
    /// deposit (and any deposit) states zero fees, so the empty depositor owes nothing under
    /// the pending block's base fee (-38014); a block whose transactions' gas limits add up to
    /// more than its gas limit, or a caller's call stating the whole block gas limit after the
    /// pending transactions, gets a gas limit override that holds them (-38015), and the
    /// caller's gas is capped so that override stays within op-reth's RPC gas cap (-38026).
    #[test]
    fn requests_fit_op_reths_fee_and_gas_rules() {
        let signer = alloy_signer_local::PrivateKeySigner::random();
        // Deposit 1M + call 29.5M: more than the 30M block.
        let block = block_with_operator_fee(&signer, 29_500_000, 30_000);
        let limit = block.header.gas_limit;
        let blocks = [block];
        let (request, n) = simulate_request(B256::ZERO, &blocks, None, Vec::new());
        assert_eq!(n, 1);
        let sim = &request[0]["blockStateCalls"][0];
        let deposit = &sim["calls"][0];
        assert_eq!(deposit["maxFeePerGas"], json!("0x0"));
        assert_eq!(deposit["maxPriorityFeePerGas"], json!("0x0"));
        assert_eq!(sim["blockOverrides"]["baseFeePerGas"], json!(U64::from(7)));
        let stated = stated_gas(sim);
        assert_eq!(stated, 30_500_000);
        assert_eq!(sim["blockOverrides"]["gasLimit"], json!(U64::from(stated)));

        // A block whose limits fit keeps its gas limit; a caller's call at the cap fits too.
        let blocks = [block_with_operator_fee(&signer, 100_000, 30_000)];
        let allowance = tail_gas_allowance(&blocks);
        assert_eq!(allowance, RPC_GAS_CAP - 1_100_000);
        let (request, _) = simulate_request(B256::ZERO, &blocks, None, Vec::new());
        assert_eq!(
            request[0]["blockStateCalls"][0]["blockOverrides"]["gasLimit"],
            json!(U64::from(limit))
        );
        let tail = json!({"to": Address::ZERO, "gas": U64::from(allowance)});
        let (request, _) = simulate_request(B256::ZERO, &blocks, Some(tail), Vec::new());
        let sim = &request[0]["blockStateCalls"][0];
        assert_eq!(sim["calls"].as_array().unwrap().len(), 3);
        let raised = sim["blockOverrides"]["gasLimit"]
            .as_str()
            .unwrap()
            .parse::<U64>()
            .unwrap()
            .to::<u64>();
        assert_eq!(raised, stated_gas(sim));
        assert!(raised <= RPC_GAS_CAP.max(limit));
    }

    /// The probe blocks: balance and code readers at their probe addresses in one block,
    /// storage reads (the account's code replaced) in a block after it.
    #[test]
    fn probes_put_storage_reads_in_a_block_of_their_own() {
        let a = Address::repeat_byte(0xa);
        let blocks = probe_blocks(&[
            Read::Balance(a),
            Read::Storage(a, B256::ZERO),
            Read::Code(a),
        ]);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0]["calls"].as_array().unwrap().len(), 2);
        assert_eq!(blocks[0]["calls"][0]["to"], json!(BALANCE_PROBE));
        assert_eq!(blocks[0]["calls"][1]["to"], json!(CODE_PROBE));
        assert_eq!(blocks[1]["calls"][0]["to"], json!(a));
        assert_eq!(
            blocks[1]["stateOverrides"][a.to_string()]["code"],
            json!(Bytes::from_static(&STORAGE_READER))
        );
        assert!(probe_blocks(&[]).is_empty());
    }
}
