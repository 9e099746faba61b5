//! The `eth_*` subset op-node, engine-mux, the spammer and the tests use.

use std::sync::Arc;

use alloy_consensus::{TxReceipt, transaction::Recovered};
use alloy_eips::BlockNumberOrTag;
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use alloy_rpc_types_eth::{BlockTransactions, Filter, FilterBlockOption, TransactionRequest};
use engine_api::codes;
use jsonrpsee::{
    RpcModule,
    types::{ErrorObjectOwned, Params},
};
use op_alloy_consensus::{OpReceipt, OpTxEnvelope};
use rpc_objects::{
    BlockContext, BlockShape, Included, OpTransactionReceipt, Transaction, fees::BlockFees,
};
use serde_json::{Value, json};

use crate::{
    chain::state::StateSnapshot,
    engine::{
        Engine,
        call::{CallError, CallRunner, estimate_gas},
        store::ChainBlock,
    },
};

/// geth's and reth's code for a call that reverted; the revert data goes in the error's `data`.
const EXECUTION_REVERTED: i32 = 3;
/// Most blocks one `eth_feeHistory` covers (geth's limit).
const MAX_FEE_HISTORY_BLOCKS: u64 = 1024;
/// Most blocks one `eth_getLogs` scans.
const MAX_LOG_RANGE: u64 = 10_000;
/// What `eth_maxPriorityFeePerGas` suggests at least: op-geth's default minimum suggested
/// priority fee (`--gpo.minsuggestedpriorityfee`, 0.001 gwei).
pub(crate) const MIN_SUGGESTED_PRIORITY_FEE: u128 = 1_000_000;

impl From<CallError> for ErrorObjectOwned {
    fn from(e: CallError) -> Self {
        match &e {
            CallError::Reverted(data) => {
                ErrorObjectOwned::owned(EXECUTION_REVERTED, e.to_string(), Some(data.clone()))
            }
            CallError::Halted(_) | CallError::Invalid(_) => err(SERVER_ERROR, e.to_string()),
        }
    }
}

type RpcResult = Result<Value, ErrorObjectOwned>;

/// EIP-1474 "resource not found": the block a state query names is unknown. Not (yet) in
/// [`engine_api::codes`], which holds the JSON-RPC 2.0 and Engine API sets.
const RESOURCE_NOT_FOUND: i32 = -32001;
/// The generic server error geth and reth answer rejected transactions and unavailable state
/// with (EIP-1474 "invalid input"). Not (yet) in [`engine_api::codes`].
const SERVER_ERROR: i32 = -32000;

pub(super) fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

pub(super) fn hex_u64(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

/// A block reference as eth methods take it: a tag, a number or a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockRef {
    Latest,
    Pending,
    Safe,
    Finalized,
    Earliest,
    Number(u64),
    Hash(B256),
}

/// An optional block tag/number param; absent means `latest`, as in geth.
fn block_ref_or_latest(v: Option<&Value>) -> Result<BlockRef, ErrorObjectOwned> {
    v.map(parse_block_ref)
        .transpose()
        .map(|r| r.unwrap_or(BlockRef::Latest))
}

fn parse_block_ref(v: &Value) -> Result<BlockRef, ErrorObjectOwned> {
    let bad = || {
        err(
            codes::INVALID_PARAMS,
            format!("invalid block reference {v}"),
        )
    };
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => {
            if let Some(h) = o.get("blockHash").and_then(Value::as_str) {
                return h.parse().map(BlockRef::Hash).map_err(|_| bad());
            }
            o.get("blockNumber")
                .and_then(Value::as_str)
                .ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    Ok(match s {
        "latest" => BlockRef::Latest,
        "pending" => BlockRef::Pending,
        "safe" => BlockRef::Safe,
        "finalized" => BlockRef::Finalized,
        "earliest" => BlockRef::Earliest,
        hex if hex.len() == 66 => BlockRef::Hash(hex.parse().map_err(|_| bad())?),
        hex => BlockRef::Number(hex.parse::<U64>().map_err(|_| bad())?.to()),
    })
}

fn resolve(engine: &Engine, r: BlockRef) -> Option<Arc<ChainBlock>> {
    engine.with_chain(|chain| match r {
        BlockRef::Latest | BlockRef::Pending => Some(chain.head()),
        BlockRef::Safe => chain.block(&chain.safe_hash()),
        BlockRef::Finalized => chain.block(&chain.finalized_hash()),
        BlockRef::Earliest => chain.canonical_block(0),
        BlockRef::Number(n) => chain.canonical_block(n),
        BlockRef::Hash(h) => chain.block(&h),
    })
}

fn state_at(engine: &Engine, r: BlockRef) -> Result<Arc<StateSnapshot>, ErrorObjectOwned> {
    let block = resolve(engine, r).ok_or_else(|| err(RESOURCE_NOT_FOUND, "block not found"))?;
    engine
        .with_chain(|chain| chain.state(&block.hash))
        .ok_or_else(|| {
            err(
                SERVER_ERROR,
                format!("state for block {} not available", block.number()),
            )
        })
}

fn context(block: &ChainBlock) -> BlockContext {
    BlockContext::of(&block.header, block.hash)
}

/// The L1 fee parameters of a block, from its L1-attributes deposit.
fn block_fees(block: &ChainBlock) -> Option<BlockFees> {
    BlockFees::from_l1_info_deposit(block.transactions.first()?.inner())
}

fn in_block(block: &ChainBlock, ctx: &BlockContext, index: usize) -> Option<Transaction> {
    let tx = block.transactions.get(index)?;
    let receipt = OpReceipt::from(block.receipts.get(index)?.clone());
    let deposit = rpc_objects::deposit_info(&receipt);
    Some(rpc_objects::transaction(
        tx,
        Some((ctx, index as u64, deposit)),
    ))
}

fn to_json(v: impl serde::Serialize) -> RpcResult {
    serde_json::to_value(v).map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))
}

/// A transaction as `eth_getTransactionByHash` answers it: at its position in `block`, or
/// pending (`None`).
pub fn transaction_json(
    tx: &Recovered<OpTxEnvelope>,
    at: Option<(&ChainBlock, usize)>,
) -> RpcResult {
    match at {
        Some((block, index)) => to_json(in_block(block, &context(block), index)),
        None => to_json(rpc_objects::transaction(tx, None)),
    }
}

/// A block as `eth_getBlockBy*` answers it (transactions as objects when `full`, else hashes).
pub fn block_json(block: &ChainBlock, full: bool) -> RpcResult {
    let ctx = context(block);
    let transactions = if full {
        BlockTransactions::Full(
            (0..block.transactions.len())
                .filter_map(|i| in_block(block, &ctx, i))
                .collect(),
        )
    } else {
        BlockTransactions::Hashes(block.transactions.iter().map(|t| t.tx_hash()).collect())
    };
    let shape = BlockShape {
        header: &block.header,
        hash: block.hash,
        size: alloy_rlp::Encodable::length(&block.to_consensus_block()) as u64,
        withdrawals: &[],
    };
    to_json(rpc_objects::block(shape, transactions))
}

/// The receipt of the `index`-th transaction of `block`, with its L1 fee fields.
pub fn receipt(block: &ChainBlock, index: usize) -> Option<OpTransactionReceipt> {
    let tx = block.transactions.get(index)?;
    let receipt = OpReceipt::from(block.receipts.get(index)?.clone());
    let previous = index
        .checked_sub(1)
        .and_then(|i| block.receipts.get(i))
        .map_or(0, |r| r.cumulative_gas_used());
    let first_log_index: usize = block.receipts[..index].iter().map(|r| r.logs().len()).sum();
    let included = Included {
        tx,
        receipt: &receipt,
        index: index as u64,
        gas_used: receipt.cumulative_gas_used().saturating_sub(previous),
        first_log_index: first_log_index as u64,
    };
    Some(rpc_objects::receipt(
        &context(block),
        included,
        block_fees(block).as_ref(),
    ))
}

fn block_by(engine: &Engine, r: BlockRef, full: bool) -> RpcResult {
    resolve(engine, r).map_or(Ok(Value::Null), |b| block_json(&b, full))
}

/// The block a call runs in and the state it runs on. `pending` is the head: this engine builds
/// pending blocks only for payload jobs, not for RPC.
pub(super) fn call_at(
    engine: &Engine,
    r: Option<&Value>,
) -> Result<(Arc<ChainBlock>, Arc<StateSnapshot>), ErrorObjectOwned> {
    let r = block_ref_or_latest(r)?;
    let block = resolve(engine, r).ok_or_else(|| err(RESOURCE_NOT_FOUND, "block not found"))?;
    Ok((block, state_at(engine, r)?))
}

fn no_overrides(overrides: Option<&Value>) -> Result<(), ErrorObjectOwned> {
    match overrides {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(err(
            codes::INVALID_PARAMS,
            "state and block overrides are not supported",
        )),
    }
}

fn eth_call(engine: &Engine, p: Params<'_>) -> RpcResult {
    let mut seq = p.sequence();
    let req: TransactionRequest = seq.next()?;
    let r: Option<Value> = seq.optional_next()?;
    let overrides: Option<Value> = seq.optional_next()?;
    let block_overrides: Option<Value> = seq.optional_next()?;
    no_overrides(overrides.as_ref())?;
    no_overrides(block_overrides.as_ref())?;
    let (block, state) = call_at(engine, r.as_ref())?;
    let mut runner = CallRunner::new(engine.spec(), &block.header, block.hash, &state);
    let cap = crate::engine::call::gas_cap(&runner, &req);
    Ok(json!(runner.run(&req, cap)?.output))
}

fn eth_estimate_gas(engine: &Engine, p: Params<'_>) -> RpcResult {
    let mut seq = p.sequence();
    let req: TransactionRequest = seq.next()?;
    let r: Option<Value> = seq.optional_next()?;
    let overrides: Option<Value> = seq.optional_next()?;
    no_overrides(overrides.as_ref())?;
    let (block, state) = call_at(engine, r.as_ref())?;
    let mut runner = CallRunner::new(engine.spec(), &block.header, block.hash, &state);
    Ok(hex_u64(estimate_gas(&mut runner, &req)?))
}

/// A quantity given as a hex string or a JSON number (clients send both for `blockCount`).
fn quantity(v: &Value) -> Result<u64, ErrorObjectOwned> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<U64>().ok().map(|n| n.to()),
        _ => None,
    }
    .ok_or_else(|| err(codes::INVALID_PARAMS, format!("invalid quantity {v}")))
}

/// Effective tips and gas used of a block's non-deposit transactions, by tip.
fn tips(block: &ChainBlock) -> Vec<(u128, u64)> {
    let base_fee = block.header.base_fee_per_gas.unwrap_or_default();
    let mut previous = 0;
    let mut out: Vec<(u128, u64)> = block
        .transactions
        .iter()
        .zip(&block.receipts)
        .filter_map(|(tx, receipt)| {
            let used = receipt.cumulative_gas_used().saturating_sub(previous);
            previous = receipt.cumulative_gas_used();
            if tx.is_deposit() {
                return None;
            }
            let tip = alloy_consensus::Transaction::effective_tip_per_gas(tx.inner(), base_fee)?;
            Some((tip, used))
        })
        .collect();
    out.sort_unstable();
    out
}

/// The tips at `percentiles` of a block's gas (geth's rule: the tip of the transaction whose
/// gas reaches the percentile of the block's non-deposit gas), zero for a block without any.
fn rewards(block: &ChainBlock, percentiles: &[f64]) -> Vec<u128> {
    let tips = tips(block);
    let total: u64 = tips.iter().map(|(_, used)| used).sum();
    percentiles
        .iter()
        .map(|p| {
            let threshold = (total as f64 * p / 100.0) as u64;
            let mut sum = 0;
            for (tip, used) in &tips {
                sum += used;
                if sum >= threshold {
                    return *tip;
                }
            }
            tips.last().map_or(0, |(tip, _)| *tip)
        })
        .collect()
}

fn eth_fee_history(engine: &Engine, p: Params<'_>) -> RpcResult {
    let mut seq = p.sequence();
    let count: Value = seq.next()?;
    let newest: Value = seq.next()?;
    let percentiles: Option<Vec<f64>> = seq.optional_next()?;
    let count = quantity(&count)?.min(MAX_FEE_HISTORY_BLOCKS);
    if let Some(ps) = &percentiles
        && (ps.iter().any(|p| !(0.0..=100.0).contains(p)) || ps.windows(2).any(|w| w[0] > w[1]))
    {
        return Err(err(
            codes::INVALID_PARAMS,
            "reward percentiles must be increasing values in [0, 100]",
        ));
    }
    let newest = resolve(engine, parse_block_ref(&newest)?)
        .ok_or_else(|| err(RESOURCE_NOT_FOUND, "block not found"))?;
    let oldest = (newest.number() + 1).saturating_sub(count);
    let blocks: Vec<Arc<ChainBlock>> = engine.with_chain(|c| {
        (oldest..newest.number())
            .filter_map(|n| c.canonical_block(n))
            .chain(std::iter::once(newest.clone()))
            .collect()
    });
    let blocks = if count == 0 { Vec::new() } else { blocks };
    let mut base_fee_per_gas: Vec<u128> = blocks
        .iter()
        .map(|b| u128::from(b.header.base_fee_per_gas.unwrap_or_default()))
        .collect();
    if !blocks.is_empty() {
        let next = crate::chain::fees::next_base_fee(engine.spec(), &newest.header)
            .map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))?;
        base_fee_per_gas.push(u128::from(next));
    }
    let history = alloy_rpc_types_eth::FeeHistory {
        base_fee_per_gas,
        gas_used_ratio: blocks
            .iter()
            .map(|b| b.header.gas_used as f64 / b.header.gas_limit.max(1) as f64)
            .collect(),
        base_fee_per_blob_gas: Vec::new(),
        blob_gas_used_ratio: Vec::new(),
        oldest_block: if blocks.is_empty() { 0 } else { oldest },
        reward: percentiles.map(|ps| blocks.iter().map(|b| rewards(b, &ps)).collect()),
    };
    to_json(history)
}

/// The median tip of the head block's transactions, at least [`MIN_SUGGESTED_PRIORITY_FEE`].
fn max_priority_fee(engine: &Engine) -> u128 {
    let head = engine.head();
    let median = rewards(&head, &[50.0])[0];
    median.max(MIN_SUGGESTED_PRIORITY_FEE)
}

fn tag_ref(tag: Option<BlockNumberOrTag>, head: u64) -> Result<u64, ErrorObjectOwned> {
    Ok(match tag.unwrap_or(BlockNumberOrTag::Latest) {
        BlockNumberOrTag::Number(n) => n,
        BlockNumberOrTag::Earliest => 0,
        // The devnet's safe and finalized blocks trail the head; logs up to the head are kept.
        _ => head,
    })
}

fn eth_get_logs(engine: &Engine, p: Params<'_>) -> RpcResult {
    let (filter,): (Filter,) = p.parse()?;
    let blocks: Vec<Arc<ChainBlock>> = match filter.block_option {
        FilterBlockOption::AtBlockHash(h) => vec![
            engine
                .with_chain(|c| c.block(&h))
                .ok_or_else(|| err(RESOURCE_NOT_FOUND, "block not found"))?,
        ],
        FilterBlockOption::Range {
            from_block,
            to_block,
        } => {
            let head = engine.head().number();
            let from = tag_ref(from_block, head)?;
            let to = tag_ref(to_block, head)?.min(head);
            if from > to && from <= head {
                return Err(err(codes::INVALID_PARAMS, "invalid block range params"));
            }
            if to.saturating_sub(from) >= MAX_LOG_RANGE {
                return Err(err(
                    codes::INVALID_PARAMS,
                    format!("block range is limited to {MAX_LOG_RANGE} blocks"),
                ));
            }
            engine.with_chain(|c| (from..=to).filter_map(|n| c.canonical_block(n)).collect())
        }
    };
    let mut logs = Vec::new();
    for block in blocks {
        if !filter.matches_bloom(block.header.logs_bloom) {
            continue;
        }
        let mut log_index = 0u64;
        for (i, (tx, receipt)) in block.transactions.iter().zip(&block.receipts).enumerate() {
            for log in receipt.logs() {
                if filter.matches(log) {
                    logs.push(alloy_rpc_types_eth::Log {
                        inner: log.clone(),
                        block_hash: Some(block.hash),
                        block_number: Some(block.number()),
                        block_timestamp: Some(block.header.timestamp),
                        transaction_hash: Some(tx.tx_hash()),
                        transaction_index: Some(i as u64),
                        log_index: Some(log_index),
                        removed: false,
                    });
                }
                log_index += 1;
            }
        }
    }
    to_json(logs)
}

/// Registers the `eth_*`, `net_version` and `web3_clientVersion` methods.
pub fn register(
    module: &mut RpcModule<Arc<Engine>>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    module.register_method("eth_chainId", |_, e, _| -> RpcResult {
        Ok(hex_u64(e.spec().chain_id))
    })?;
    module.register_method("net_version", |_, e, _| -> RpcResult {
        Ok(Value::String(e.spec().chain_id.to_string()))
    })?;
    module.register_method("web3_clientVersion", |_, _, _| -> RpcResult {
        Ok(Value::String(format!(
            "devnet/{}",
            env!("CARGO_PKG_VERSION")
        )))
    })?;
    module.register_method("eth_blockNumber", |_, e, _| -> RpcResult {
        Ok(hex_u64(e.head().number()))
    })?;
    module.register_method("eth_syncing", |_, _, _| -> RpcResult {
        Ok(Value::Bool(false))
    })?;
    module.register_method("eth_getBlockByNumber", |p: Params<'_>, e, _| -> RpcResult {
        let (r, full): (Value, Option<bool>) = p.parse()?;
        block_by(e, parse_block_ref(&r)?, full.unwrap_or(false))
    })?;
    module.register_method("eth_getBlockByHash", |p: Params<'_>, e, _| -> RpcResult {
        let (h, full): (B256, Option<bool>) = p.parse()?;
        block_by(e, BlockRef::Hash(h), full.unwrap_or(false))
    })?;
    module.register_method("eth_getBalance", |p: Params<'_>, e, _| -> RpcResult {
        let (addr, r): (Address, Option<Value>) = p.parse()?;
        let r = block_ref_or_latest(r.as_ref())?;
        Ok(json!(state_at(e, r)?.balance(&addr)))
    })?;
    module.register_method("eth_getCode", |p: Params<'_>, e, _| -> RpcResult {
        let (addr, r): (Address, Option<Value>) = p.parse()?;
        let r = block_ref_or_latest(r.as_ref())?;
        Ok(json!(state_at(e, r)?.code(&addr)))
    })?;
    module.register_method("eth_getStorageAt", |p: Params<'_>, e, _| -> RpcResult {
        let (addr, slot, r): (Address, U256, Option<Value>) = p.parse()?;
        let r = block_ref_or_latest(r.as_ref())?;
        Ok(json!(B256::from(state_at(e, r)?.storage(&addr, slot))))
    })?;
    module.register_method(
        "eth_getTransactionCount",
        |p: Params<'_>, e, _| -> RpcResult {
            let (addr, r): (Address, Option<Value>) = p.parse()?;
            let r = block_ref_or_latest(r.as_ref())?;
            if r == BlockRef::Pending {
                return Ok(hex_u64(e.pending_nonce(&addr)));
            }
            Ok(hex_u64(state_at(e, r)?.nonce(&addr)))
        },
    )?;
    module.register_method(
        "eth_getTransactionByHash",
        |p: Params<'_>, e, _| -> RpcResult {
            let (h,): (B256,) = p.parse()?;
            if let Some((block, i)) = e.with_chain(|c| c.transaction(&h))
                && let Some(tx) = block.transactions.get(i)
            {
                return transaction_json(tx, Some((&block, i)));
            }
            e.pooled_transaction(&h)
                .map_or(Ok(Value::Null), |tx| transaction_json(&tx, None))
        },
    )?;
    module.register_method(
        "eth_getTransactionReceipt",
        |p: Params<'_>, e, _| -> RpcResult {
            let (h,): (B256,) = p.parse()?;
            to_json(
                e.with_chain(|c| c.transaction(&h))
                    .and_then(|(block, i)| receipt(&block, i)),
            )
        },
    )?;
    module.register_method(
        "eth_sendRawTransaction",
        |p: Params<'_>, e, _| -> RpcResult {
            let (raw,): (Bytes,) = p.parse()?;
            let hash = e
                .submit_raw_transaction(&raw)
                .map_err(|x| err(SERVER_ERROR, x.to_string()))?;
            Ok(json!(hash))
        },
    )?;
    module.register_method("eth_call", |p, e, _| eth_call(e, p))?;
    module.register_method("eth_estimateGas", |p, e, _| eth_estimate_gas(e, p))?;
    module.register_method("eth_feeHistory", |p, e, _| eth_fee_history(e, p))?;
    module.register_method("eth_getLogs", |p, e, _| eth_get_logs(e, p))?;
    module.register_method("eth_simulateV1", |p, e, _| {
        super::simulate::eth_simulate(e, p)
    })?;
    module.register_method("eth_maxPriorityFeePerGas", |_, e, _| -> RpcResult {
        Ok(json!(U256::from(max_priority_fee(e))))
    })?;
    module.register_method("eth_gasPrice", |_, e, _| -> RpcResult {
        let base = e.head().header.base_fee_per_gas.unwrap_or_default();
        Ok(json!(U256::from(base)))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_refs_parse() {
        assert_eq!(parse_block_ref(&json!("latest")).unwrap(), BlockRef::Latest);
        assert_eq!(
            parse_block_ref(&json!("0x10")).unwrap(),
            BlockRef::Number(16)
        );
        let h = B256::repeat_byte(1);
        assert_eq!(parse_block_ref(&json!(h)).unwrap(), BlockRef::Hash(h));
        assert!(parse_block_ref(&json!("nope")).is_err());
        assert!(parse_block_ref(&json!(5)).is_err());
    }

    #[test]
    fn genesis_block_json_parses_as_an_rpc_block() {
        use crate::chain::genesis::{ForkOverrides, default_genesis};
        let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
        let block = ChainBlock::seal(g.header.clone(), Vec::new(), Vec::new(), g.state);
        let v = block_json(&block, false).unwrap();
        let parsed: rpc_objects::Block = serde_json::from_value(v).unwrap();
        assert_eq!(parsed.header.hash, block.hash);
        assert_eq!(parsed.header.inner, g.header);
    }

    /// Block 1 on the default genesis: the L1-attributes deposit and one signed transfer.
    fn block_with_a_transfer() -> ChainBlock {
        use alloy_consensus::transaction::SignerRecoverable;

        use crate::{
            chain::{
                accounts::{funded_dev_signers, sign_transfer},
                attributes::{SequencerParams, sequencer_attributes},
                genesis::{ForkOverrides, default_genesis},
            },
            engine::build::build_block,
        };
        let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
        let signer = funded_dev_signers(&g.state).unwrap().remove(0);
        let spec = g.spec.clone();
        let state = g.state.clone();
        let genesis = ChainBlock::seal(g.header, Vec::new(), Vec::new(), g.state);
        let tx = sign_transfer(
            &signer,
            spec.chain_id,
            0,
            Address::repeat_byte(0xde),
            U256::from(1),
            2_000_000_000,
            1_000_000_000,
        )
        .unwrap();
        let attrs = sequencer_attributes(&spec, &SequencerParams::default(), 1, 1_001);
        let pool = vec![tx.try_into_recovered().unwrap()];
        let built = build_block(&spec, &genesis, &state, &attrs, pool).unwrap();
        assert_eq!(built.block.transactions.len(), 2);
        (*built.block).clone()
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    /// op-reth's `eth_getBlockByNumber(.., true)` answer recorded on a real chain (deposit +
    /// EIP-1559 transactions), kept by rpc-objects.
    const OP_RETH_FULL_BLOCK: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rpc-objects/testdata/op-reth-block-full.json"
    ));

    #[test]
    fn blocks_and_transactions_have_op_reths_field_sets() {
        let block = block_with_a_transfer();
        let ours = block_json(&block, true).unwrap();
        let theirs: Value = serde_json::from_str(OP_RETH_FULL_BLOCK).unwrap();
        assert_eq!(keys(&ours), keys(&theirs));
        // Deposit first, then an EIP-1559 transaction, in both.
        for i in 0..2 {
            assert_eq!(
                keys(&ours["transactions"][i]),
                keys(&theirs["transactions"][i]),
                "transaction {i}"
            );
        }
        let parsed: rpc_objects::Block = serde_json::from_value(ours.clone()).unwrap();
        assert_eq!(parsed.header.hash, block.hash);
        let txs: Vec<_> = parsed.transactions.txns().collect();
        assert_eq!(txs[1].inner.inner.signer(), block.transactions[1].signer());
        assert_eq!(txs[0].deposit_receipt_version, Some(1));
        assert_eq!(
            keys(&block_json(&block, false).unwrap()),
            keys(&theirs),
            "hashes-only block"
        );
    }

    #[test]
    fn transfer_receipt_round_trips_through_op_receipt_with_l1_fee() {
        let block = block_with_a_transfer();
        let ours = receipt(&block, 1).unwrap();
        let v = serde_json::to_value(&ours).unwrap();
        for field in [
            "l1Fee",
            "l1GasUsed",
            "l1GasPrice",
            "l1BaseFeeScalar",
            "l1BlobBaseFee",
            "l1BlobBaseFeeScalar",
            "effectiveGasPrice",
            "blockHash",
            "blockNumber",
            "transactionIndex",
        ] {
            assert!(v[field].is_string(), "{field} missing in {v}");
        }
        assert_eq!(v["transactionIndex"], json!("0x1"));
        assert_eq!(v["gasUsed"], json!("0x5208"));
        assert_eq!(v["type"], json!("0x2"));
        let base_fee = u128::from(block.header.base_fee_per_gas.unwrap());
        let price = (base_fee + 1_000_000_000).min(2_000_000_000);
        assert_eq!(v["effectiveGasPrice"], json!(format!("{price:#x}")));
        let l1_fee = ours.l1_block_info.l1_fee.unwrap();
        assert!(l1_fee > 0, "a transfer pays an L1 data fee");
        let back: OpTransactionReceipt = serde_json::from_value(v).unwrap();
        assert_eq!(back, ours);

        let deposit = serde_json::to_value(receipt(&block, 0).unwrap()).unwrap();
        assert_eq!(deposit["type"], json!("0x7e"));
        assert!(deposit["depositNonce"].is_string());
        assert_eq!(deposit["depositReceiptVersion"], json!("0x1"));
        assert!(deposit.get("l1Fee").is_none());
        assert!(receipt(&block, 2).is_none());
    }
}
