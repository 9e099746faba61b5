//! The `eth_*` subset op-node, engine-mux, the spammer and the tests use.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rpc_types_eth::{Filter, FilterBlockOption, TransactionRequest};
use engine_api::codes;
use jsonrpsee::{
    RpcModule,
    types::{ErrorObjectOwned, Params},
};
use serde_json::{Value, json};

use super::{
    fees::{eth_fee_history, max_priority_fee},
    params::{
        BlockRef, RESOURCE_NOT_FOUND, RpcResult, SERVER_ERROR, block_ref_or_latest, call_at, err,
        hex_u64, parse_block_ref, resolve, state_at, tag_ref, to_json,
    },
    render::{block_json, receipt, transaction_json},
    simulate::eth_simulate,
};
use crate::engine::{
    Engine,
    call::{CallRunner, estimate_gas},
    store::ChainBlock,
};

/// Most blocks one `eth_getLogs` scans.
const MAX_LOG_RANGE: u64 = 10_000;

fn block_by(engine: &Engine, r: BlockRef, full: bool) -> RpcResult {
    resolve(engine, r).map_or(Ok(Value::Null), |b| block_json(&b, full))
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
    module.register_method("eth_simulateV1", |p, e, _| eth_simulate(e, p))?;
    module.register_method("eth_maxPriorityFeePerGas", |_, e, _| -> RpcResult {
        Ok(json!(U256::from(max_priority_fee(e))))
    })?;
    module.register_method("eth_gasPrice", |_, e, _| -> RpcResult {
        let base = e.head().header.base_fee_per_gas.unwrap_or_default();
        Ok(json!(U256::from(base)))
    })?;
    Ok(())
}
