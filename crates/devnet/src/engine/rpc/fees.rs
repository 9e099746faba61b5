//! Fee suggestions: `eth_feeHistory` (geth's rules) and the tip `eth_maxPriorityFeePerGas`
//! suggests (op-geth's floor).

use std::sync::Arc;

use engine_api::codes;
use jsonrpsee::types::Params;
use serde_json::Value;

use super::params::{
    RESOURCE_NOT_FOUND, RpcResult, err, parse_block_ref, quantity, resolve, to_json,
};
use crate::engine::{Engine, store::ChainBlock};

/// Most blocks one `eth_feeHistory` covers (geth's limit).
const MAX_FEE_HISTORY_BLOCKS: u64 = 1024;
/// What `eth_maxPriorityFeePerGas` suggests at least: op-geth's default minimum suggested
/// priority fee (`--gpo.minsuggestedpriorityfee`, 0.001 gwei).
pub(crate) const MIN_SUGGESTED_PRIORITY_FEE: u128 = 1_000_000;

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

pub(super) fn eth_fee_history(engine: &Engine, p: Params<'_>) -> RpcResult {
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
pub(super) fn max_priority_fee(engine: &Engine) -> u128 {
    let head = engine.head();
    let median = rewards(&head, &[50.0])[0];
    median.max(MIN_SUGGESTED_PRIORITY_FEE)
}
