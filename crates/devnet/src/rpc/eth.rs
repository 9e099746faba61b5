//! The `eth_*` subset op-node, engine-mux, the spammer and the tests use.

use std::sync::Arc;

use alloy_consensus::{Transaction, TxReceipt, transaction::Recovered};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use engine_api::codes;
use jsonrpsee::{
    RpcModule,
    types::{ErrorObjectOwned, Params},
};
use op_alloy_consensus::{OpReceiptEnvelope, OpTxEnvelope};
use serde_json::{Value, json};

use crate::{chain::ChainBlock, engine::Engine, state::StateSnapshot};

type RpcResult = Result<Value, ErrorObjectOwned>;

/// EIP-1474 "resource not found": the block a state query names is unknown. Not (yet) in
/// [`engine_api::codes`], which holds the JSON-RPC 2.0 and Engine API sets.
const RESOURCE_NOT_FOUND: i32 = -32001;
/// The generic server error geth and reth answer rejected transactions and unavailable state
/// with (EIP-1474 "invalid input"). Not (yet) in [`engine_api::codes`].
const SERVER_ERROR: i32 = -32000;

fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

fn hex_u64(v: u64) -> Value {
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

/// JSON of a transaction, with its position when it is in a block.
pub fn transaction_json(tx: &Recovered<OpTxEnvelope>, at: Option<(&ChainBlock, usize)>) -> Value {
    let mut v = serde_json::to_value(tx.inner()).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("hash".into(), json!(tx.tx_hash()));
        o.insert("from".into(), json!(tx.signer()));
        let (block_hash, number, index, base_fee) = match at {
            Some((b, i)) => (
                json!(b.hash),
                hex_u64(b.number()),
                hex_u64(i as u64),
                b.header.base_fee_per_gas,
            ),
            None => (Value::Null, Value::Null, Value::Null, None),
        };
        o.insert("blockHash".into(), block_hash);
        o.insert("blockNumber".into(), number);
        o.insert("transactionIndex".into(), index);
        let gas_price = tx.effective_gas_price(base_fee);
        o.insert("gasPrice".into(), json!(format!("{gas_price:#x}")));
    }
    v
}

/// JSON of a block header plus transactions (hashes or full objects).
pub fn block_json(block: &ChainBlock, full: bool) -> Value {
    let mut v = serde_json::to_value(&block.header).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("hash".into(), json!(block.hash));
        o.insert("totalDifficulty".into(), json!("0x0"));
        let size = alloy_rlp::Encodable::length(&block.to_consensus_block());
        o.insert("size".into(), hex_u64(size as u64));
        o.insert("uncles".into(), json!([]));
        o.insert("withdrawals".into(), json!([]));
        let txs: Vec<Value> = block
            .transactions
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                if full {
                    transaction_json(tx, Some((block, i)))
                } else {
                    json!(tx.tx_hash())
                }
            })
            .collect();
        o.insert("transactions".into(), Value::Array(txs));
    }
    v
}

/// JSON of the receipt of the `index`-th transaction of `block`.
pub fn receipt_json(block: &ChainBlock, index: usize) -> Option<Value> {
    let tx = block.transactions.get(index)?;
    let receipt: &OpReceiptEnvelope = block.receipts.get(index)?;
    let cumulative = receipt.cumulative_gas_used();
    let previous = index
        .checked_sub(1)
        .and_then(|i| block.receipts.get(i))
        .map_or(0, |r| r.cumulative_gas_used());
    let log_offset: usize = block.receipts[..index].iter().map(|r| r.logs().len()).sum();
    let logs: Vec<Value> = receipt
        .logs()
        .iter()
        .enumerate()
        .map(|(i, log)| {
            json!({
                "address": log.address,
                "topics": log.topics(),
                "data": log.data.data,
                "blockHash": block.hash,
                "blockNumber": hex_u64(block.number()),
                "transactionHash": tx.tx_hash(),
                "transactionIndex": hex_u64(index as u64),
                "logIndex": hex_u64((log_offset + i) as u64),
                "removed": false,
            })
        })
        .collect();
    let contract_address = tx.to().is_none().then(|| tx.signer().create(tx.nonce()));
    let mut v = json!({
        "transactionHash": tx.tx_hash(),
        "transactionIndex": hex_u64(index as u64),
        "blockHash": block.hash,
        "blockNumber": hex_u64(block.number()),
        "from": tx.signer(),
        "to": tx.to(),
        "cumulativeGasUsed": hex_u64(cumulative),
        "gasUsed": hex_u64(cumulative - previous),
        "effectiveGasPrice": format!("{:#x}", tx.effective_gas_price(block.header.base_fee_per_gas)),
        "contractAddress": contract_address,
        "logs": logs,
        "logsBloom": receipt.bloom(),
        "status": if receipt.status() { "0x1" } else { "0x0" },
        "type": format!("{:#x}", tx.inner().tx_type() as u8),
    });
    if let (OpReceiptEnvelope::Deposit(d), Value::Object(o)) = (receipt, &mut v) {
        if let Some(nonce) = d.receipt.deposit_nonce {
            o.insert("depositNonce".into(), hex_u64(nonce));
        }
        if let Some(version) = d.receipt.deposit_receipt_version {
            o.insert("depositReceiptVersion".into(), hex_u64(version));
        }
    }
    Some(v)
}

fn block_by(engine: &Engine, r: BlockRef, full: bool) -> RpcResult {
    Ok(resolve(engine, r).map_or(Value::Null, |b| block_json(&b, full)))
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
    module.register_method("eth_getBlockByNumber", |p: Params, e, _| -> RpcResult {
        let (r, full): (Value, Option<bool>) = p.parse()?;
        block_by(e, parse_block_ref(&r)?, full.unwrap_or(false))
    })?;
    module.register_method("eth_getBlockByHash", |p: Params, e, _| -> RpcResult {
        let (h, full): (B256, Option<bool>) = p.parse()?;
        block_by(e, BlockRef::Hash(h), full.unwrap_or(false))
    })?;
    module.register_method("eth_getBalance", |p: Params, e, _| -> RpcResult {
        let (addr, r): (Address, Option<Value>) = p.parse()?;
        let r = block_ref_or_latest(r.as_ref())?;
        Ok(json!(state_at(e, r)?.balance(&addr)))
    })?;
    module.register_method("eth_getTransactionCount", |p: Params, e, _| -> RpcResult {
        let (addr, r): (Address, Option<Value>) = p.parse()?;
        let r = block_ref_or_latest(r.as_ref())?;
        if r == BlockRef::Pending {
            return Ok(hex_u64(e.pending_nonce(&addr)));
        }
        Ok(hex_u64(state_at(e, r)?.nonce(&addr)))
    })?;
    module.register_method("eth_getTransactionByHash", |p: Params, e, _| -> RpcResult {
        let (h,): (B256,) = p.parse()?;
        if let Some((block, i)) = e.with_chain(|c| c.transaction(&h))
            && let Some(tx) = block.transactions.get(i)
        {
            return Ok(transaction_json(tx, Some((&block, i))));
        }
        Ok(e.pooled_transaction(&h)
            .map_or(Value::Null, |tx| transaction_json(&tx, None)))
    })?;
    module.register_method(
        "eth_getTransactionReceipt",
        |p: Params, e, _| -> RpcResult {
            let (h,): (B256,) = p.parse()?;
            Ok(e.with_chain(|c| c.transaction(&h))
                .and_then(|(block, i)| receipt_json(&block, i))
                .unwrap_or(Value::Null))
        },
    )?;
    module.register_method("eth_sendRawTransaction", |p: Params, e, _| -> RpcResult {
        let (raw,): (Bytes,) = p.parse()?;
        let hash = e
            .submit_raw_transaction(&raw)
            .map_err(|x| err(SERVER_ERROR, x.to_string()))?;
        Ok(json!(hash))
    })?;
    module.register_method("eth_gasPrice", |_, e, _| -> RpcResult {
        let base = e.head().header.base_fee_per_gas.unwrap_or_default();
        Ok(json!(U256::from(base)))
    })?;
    Ok(())
}

/// Encodes a transaction for `eth_sendRawTransaction`.
pub fn raw_transaction(tx: &OpTxEnvelope) -> Bytes {
    tx.encoded_2718().into()
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
    fn block_json_parses_as_an_alloy_rpc_block() {
        use crate::genesis::{ForkOverrides, default_genesis};
        let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
        let block = ChainBlock::seal(g.header.clone(), Vec::new(), Vec::new(), g.state);
        let v = block_json(&block, false);
        let parsed: alloy_rpc_types_eth::Block<Value> = serde_json::from_value(v).unwrap();
        assert_eq!(parsed.header.hash, block.hash);
        assert_eq!(parsed.header.inner, g.header);
    }
}
