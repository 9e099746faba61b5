//! The `eth_*` subset op-node, engine-mux, the spammer and the tests use.

use std::sync::Arc;

use alloy_consensus::{TxReceipt, transaction::Recovered};
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use alloy_rpc_types_eth::BlockTransactions;
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
    engine::{Engine, store::ChainBlock},
};

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
