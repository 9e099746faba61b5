//! The `eth_simulateV1` request: pending transactions as calls, pending blocks as simulated
//! blocks with their header fields as overrides, probe blocks that read state after them, each
//! shaped so op-reth and op-geth accept it (see the README, "What op-reth and op-geth accept").

use alloy_consensus::Transaction;
use alloy_primitives::{Address, B256, Bytes, U64, U256, hex};
use serde_json::{Value, json};

use crate::pending::{block::PendingBlock, tx::PendingTx};

/// Where the balance reader's code is placed (a state override of a probe block).
pub const BALANCE_PROBE: Address = Address::new(hex!("00000000000000000000000000000000fb0ba1a0"));
/// Where the code reader's code is placed.
pub const CODE_PROBE: Address = Address::new(hex!("00000000000000000000000000000000fb0bc0de"));
/// `BALANCE(calldata[0..32])` as one word.
pub(super) const BALANCE_READER: [u8; 9] = hex!("5f35315f5260205ff3");
/// The code of the account `calldata[0..32]` (EXTCODESIZE + EXTCODECOPY, returned whole).
const CODE_READER: [u8; 11] = hex!("5f35803b805f5f843c5ff3");
/// Storage slot `calldata[0..32]` of the account running it (placed over the account's own
/// code, so `SLOAD` reads its storage).
pub(super) const STORAGE_READER: [u8; 9] = hex!("5f35545f5260205ff3");
/// Gas of one probe call (a 24 KiB code copy costs ~6k).
pub(super) const PROBE_GAS: u64 = 200_000;

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
pub(super) fn stated_gas(block: &Value) -> u64 {
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
pub(super) fn probe_blocks(reads: &[Read]) -> Vec<Value> {
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
