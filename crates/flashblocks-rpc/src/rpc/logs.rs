//! `eth_getLogs` over a range that reaches the pending blocks: the upstream's logs up to its
//! head, then the pending blocks' logs (from the stream's receipts or the execution of the
//! pending chain), filtered by address and topics as the upstream filters.

use alloy_consensus::TxReceipt;
use alloy_eips::BlockNumberOrTag;
use alloy_rpc_types_eth::{Filter, FilterBlockOption};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};

use super::answer::RpcError;
use crate::{
    context::Context,
    execute,
    metrics::Source,
    pending::{block::PendingBlock, render},
};

type RpcResult = Result<Box<serde_json::value::RawValue>, ErrorObjectOwned>;

/// Indexes of the pending blocks covered, and the upstream block range below them.
type Span = (Vec<usize>, Option<(u64, u64)>);

/// The pending blocks a filter's range covers, and the upstream range below them (`None`:
/// nothing from the upstream). `None` overall: the range does not reach pending.
fn pending_span(
    filter: &Filter,
    first_pending: u64,
    hashes: &[alloy_primitives::B256],
) -> Option<Span> {
    let head = first_pending.checked_sub(1)?;
    match &filter.block_option {
        FilterBlockOption::AtBlockHash(h) => {
            let i = hashes.iter().position(|x| x == h)?;
            Some((vec![i], None))
        }
        FilterBlockOption::Range {
            from_block,
            to_block,
        } => {
            let last_pending = first_pending + hashes.len() as u64 - 1;
            let to = match to_block {
                Some(BlockNumberOrTag::Pending) => last_pending,
                Some(BlockNumberOrTag::Number(n)) if *n >= first_pending => (*n).min(last_pending),
                _ => return None,
            };
            let from = match from_block {
                Some(BlockNumberOrTag::Pending) => first_pending,
                Some(BlockNumberOrTag::Number(n)) => *n,
                Some(BlockNumberOrTag::Earliest) => 0,
                // Absent, latest, safe, finalized: the upstream's head (latest) is the nearest
                // bound this can evaluate; safe/finalized are at or below it.
                Some(BlockNumberOrTag::Latest) | None => head,
                Some(BlockNumberOrTag::Safe | BlockNumberOrTag::Finalized) => return None,
            };
            if from > to {
                return Some((Vec::new(), None));
            }
            let pending = (from.max(first_pending)..=to)
                .map(|n| (n - first_pending) as usize)
                .collect();
            Some((pending, (from <= head).then_some((from, head))))
        }
    }
}

/// Whether `filter`'s range reaches the served pending blocks.
pub fn reaches_pending(ctx: &Context, filter: &Filter) -> bool {
    let state = ctx.read();
    let chain = state.chain(std::time::Instant::now());
    let Some(first) = chain.first() else {
        return false;
    };
    let hashes: Vec<_> = chain.iter().map(|b| b.hash).collect();
    pending_span(filter, first.number(), &hashes).is_some()
}

/// The logs of `block` that match `filter`, in the `eth_getLogs` shape.
fn block_logs(block: &PendingBlock, filter: &Filter) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for (i, ptx) in block.txs.iter().enumerate() {
        let receipt = ptx.receipt.as_ref()?;
        if !receipt.logs().iter().any(|l| filter.matches(l)) {
            continue;
        }
        let rendered = render::receipt_json(block, i)?;
        let rendered = rendered["logs"].as_array()?;
        for (log, json) in receipt.logs().iter().zip(rendered) {
            if filter.matches(log) {
                out.push(json.clone());
            }
        }
    }
    Some(out)
}

/// `eth_getLogs` when its range reaches the pending blocks; `None`: not such a request, or
/// the pending logs are unknown (no receipts and no execution), so it is forwarded.
pub async fn pending_logs(ctx: &Context, params: &Params<'_>) -> Option<RpcResult> {
    let (filter,): (Filter,) = params.parse().ok()?;
    let (key, blocks) = execute::snapshot(ctx)?;
    let first_pending = blocks.first()?.number();
    let (covered, upstream_range) = pending_span(&filter, first_pending, &key.1)?;
    let execution = if covered.iter().any(|i| !blocks[*i].receipts_complete()) {
        Some(execute::execution(ctx).await?)
    } else {
        None
    };
    let mut pending = Vec::new();
    for i in covered {
        let block = match &execution {
            Some(e) => e.block(&blocks[i].hash)?,
            None => &blocks[i],
        };
        pending.extend(block_logs(block, &filter)?);
    }
    let mut logs: Vec<Value> = Vec::new();
    if let Some((from, to)) = upstream_range {
        let below = filter.clone().from_block(from).to_block(to);
        let answer = ctx
            .upstream
            .call::<Vec<Value>>("eth_getLogs", &json!([below]), ctx.config.upstream.timeout)
            .await;
        ctx.metrics.answered(Source::Upstream);
        logs = match answer {
            Ok(l) => l,
            // The upstream's error (a range too large, ...) is the answer.
            Err(e) => return Some(Err(RpcError::from(e).into())),
        };
    }
    logs.extend(pending);
    ctx.metrics.answered(Source::Pending);
    Some(
        serde_json::value::to_raw_value(&logs)
            .map_err(|e| RpcError::Unavailable(e.to_string()).into()),
    )
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;

    fn filter(v: Value) -> Filter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ranges_reaching_pending_split_into_upstream_and_pending_parts() {
        let hashes = [B256::repeat_byte(1), B256::repeat_byte(2)];
        // Pending blocks 11 and 12 on head 10.
        let span = |v| pending_span(&filter(v), 11, &hashes);
        assert_eq!(
            span(json!({"fromBlock": "0x5", "toBlock": "pending"})),
            Some((vec![0, 1], Some((5, 10))))
        );
        assert_eq!(
            span(json!({"toBlock": "pending"})),
            Some((vec![0, 1], Some((10, 10))))
        );
        assert_eq!(
            span(json!({"fromBlock": "pending", "toBlock": "pending"})),
            Some((vec![0, 1], None))
        );
        assert_eq!(
            span(json!({"fromBlock": "0xb", "toBlock": "0xb"})),
            Some((vec![0], None))
        );
        assert_eq!(
            span(json!({"fromBlock": "0x1", "toBlock": "0x64"})),
            Some((vec![0, 1], Some((1, 10))))
        );
        assert_eq!(
            span(json!({"blockHash": B256::repeat_byte(2)})),
            Some((vec![1], None))
        );
        // Not reaching pending: the upstream's alone.
        assert_eq!(span(json!({"fromBlock": "0x1", "toBlock": "0xa"})), None);
        assert_eq!(span(json!({"toBlock": "latest"})), None);
        assert_eq!(span(json!({})), None);
        assert_eq!(span(json!({"blockHash": B256::repeat_byte(3)})), None);
    }
}
