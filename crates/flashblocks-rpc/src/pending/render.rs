//! JSON of pending blocks, transactions and receipts in the shapes `eth_*` answers use.

use alloy_consensus::{Transaction, TxReceipt};
use alloy_primitives::U256;
use op_alloy_consensus::OpReceipt;
use serde_json::{Map, Value, json};

use super::block::PendingBlock;

fn hex_u64(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

fn hex_u256(v: U256) -> Value {
    Value::String(format!("{v:#x}"))
}

/// `eth_getTransactionByHash` shape of the `index`-th transaction.
pub fn transaction_json(block: &PendingBlock, index: usize) -> Option<Value> {
    let ptx = block.txs.get(index)?;
    let mut v = serde_json::to_value(ptx.tx.inner()).ok()?;
    let o = v.as_object_mut()?;
    o.insert("hash".into(), json!(ptx.hash));
    o.insert("from".into(), json!(ptx.tx.signer()));
    o.insert("blockHash".into(), json!(block.hash));
    o.insert("blockNumber".into(), hex_u64(block.number()));
    o.insert("transactionIndex".into(), hex_u64(index as u64));
    let price = ptx.tx.effective_gas_price(Some(block.base_fee()));
    o.insert("gasPrice".into(), Value::String(format!("{price:#x}")));
    Some(v)
}

/// `eth_getTransactionReceipt` shape of the `index`-th transaction.
pub fn receipt_json(block: &PendingBlock, index: usize) -> Option<Value> {
    let ptx = block.txs.get(index)?;
    let receipt = &ptx.receipt;
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
                "blockTimestamp": hex_u64(block.header.timestamp),
                "transactionHash": ptx.hash,
                "transactionIndex": hex_u64(index as u64),
                "logIndex": hex_u64(ptx.first_log_index + i as u64),
                "removed": false,
            })
        })
        .collect();
    let tx = &ptx.tx;
    let contract_address = tx.to().is_none().then(|| tx.signer().create(tx.nonce()));
    let mut o = Map::new();
    o.insert("transactionHash".into(), json!(ptx.hash));
    o.insert("transactionIndex".into(), hex_u64(index as u64));
    o.insert("blockHash".into(), json!(block.hash));
    o.insert("blockNumber".into(), hex_u64(block.number()));
    o.insert("from".into(), json!(tx.signer()));
    o.insert("to".into(), json!(tx.to()));
    o.insert(
        "cumulativeGasUsed".into(),
        hex_u64(receipt.cumulative_gas_used()),
    );
    o.insert("gasUsed".into(), hex_u64(ptx.gas_used));
    let price = tx.effective_gas_price(Some(block.base_fee()));
    o.insert(
        "effectiveGasPrice".into(),
        Value::String(format!("{price:#x}")),
    );
    o.insert("contractAddress".into(), json!(contract_address));
    o.insert("logs".into(), Value::Array(logs));
    o.insert("logsBloom".into(), json!(receipt.bloom()));
    o.insert(
        "status".into(),
        Value::String(if receipt.status() { "0x1" } else { "0x0" }.into()),
    );
    o.insert(
        "type".into(),
        Value::String(format!("{:#x}", receipt.tx_type() as u8)),
    );
    if let OpReceipt::Deposit(d) = receipt {
        if let Some(nonce) = d.deposit_nonce {
            o.insert("depositNonce".into(), hex_u64(nonce));
        }
        if let Some(version) = d.deposit_receipt_version {
            o.insert("depositReceiptVersion".into(), hex_u64(version));
        }
    } else if let (Some(fees), Some(params)) = (ptx.fees, block.fees()) {
        // OP Stack receipt extension (op-geth `l1Fee`, `l1GasPrice`, ...).
        o.insert("l1Fee".into(), hex_u256(fees.l1_fee));
        o.insert("l1GasUsed".into(), hex_u256(fees.l1_gas_used));
        o.insert("l1GasPrice".into(), hex_u256(params.l1_base_fee()));
        o.insert(
            "l1BaseFeeScalar".into(),
            hex_u256(params.l1_base_fee_scalar()),
        );
        o.insert("l1BlobBaseFee".into(), hex_u256(params.l1_blob_base_fee()));
        o.insert(
            "l1BlobBaseFeeScalar".into(),
            hex_u256(params.l1_blob_base_fee_scalar()),
        );
        if let Some((scalar, constant)) = params.operator_fee_params() {
            o.insert("operatorFeeScalar".into(), hex_u256(scalar));
            o.insert("operatorFeeConstant".into(), hex_u256(constant));
        }
    }
    Some(Value::Object(o))
}

/// `eth_getBlockByNumber` shape of the block (`full`: transaction objects, else hashes).
pub fn block_json(block: &PendingBlock, full: bool) -> Value {
    let mut v = serde_json::to_value(&block.header).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("hash".into(), json!(block.hash));
        o.insert("totalDifficulty".into(), json!("0x0"));
        o.insert("size".into(), hex_u64(block.size));
        o.insert("uncles".into(), json!([]));
        o.insert("withdrawals".into(), json!(block.withdrawals));
        let txs: Vec<Value> = (0..block.txs.len())
            .map(|i| {
                if full {
                    transaction_json(block, i).unwrap_or(Value::Null)
                } else {
                    json!(block.txs[i].hash)
                }
            })
            .collect();
        o.insert("transactions".into(), Value::Array(txs));
    }
    v
}
