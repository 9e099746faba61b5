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
                "logIndex": hex_u64(ptx.first_log_index.saturating_add(i as u64)),
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

#[cfg(test)]
mod tests {
    use alloy_consensus::{Eip658Value, Receipt, Sealable};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, B256, Bloom, Bytes, Log as PrimitiveLog, TxKind};
    use alloy_rpc_types_engine::PayloadId;
    use op_alloy_consensus::{OpDepositReceipt, OpReceiptEnvelope, OpTxEnvelope, TxDeposit};
    use op_alloy_rpc_types_engine::{
        OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
        OpFlashblockPayloadMetadata,
    };

    use super::*;

    fn block_with_one_deposit() -> PendingBlock {
        let tx = OpTxEnvelope::Deposit(
            TxDeposit {
                source_hash: B256::repeat_byte(1),
                from: Address::repeat_byte(2),
                to: TxKind::Call(Address::repeat_byte(3)),
                mint: 5,
                value: U256::from(1),
                gas_limit: 50_000,
                is_system_transaction: false,
                input: Bytes::from_static(&[1, 2]),
            }
            .seal_slow(),
        );
        let log = PrimitiveLog::new_unchecked(
            Address::repeat_byte(3),
            vec![B256::repeat_byte(4)],
            Bytes::from_static(&[9]),
        );
        let receipt = OpReceipt::Deposit(OpDepositReceipt {
            inner: Receipt {
                status: Eip658Value::Eip658(true),
                cumulative_gas_used: 30_000,
                logs: vec![log],
            },
            deposit_nonce: Some(7),
            deposit_receipt_version: Some(1),
        });
        let fb = OpFlashblockPayload {
            payload_id: PayloadId::new([1; 8]),
            index: 0,
            base: Some(OpFlashblockPayloadBase {
                parent_hash: B256::repeat_byte(5),
                block_number: 12,
                gas_limit: 30_000_000,
                timestamp: 1_700_000_000,
                base_fee_per_gas: U256::from(1_000),
                ..Default::default()
            }),
            diff: OpFlashblockPayloadDelta {
                gas_used: 30_000,
                block_hash: B256::repeat_byte(6),
                logs_bloom: Bloom::ZERO,
                transactions: vec![tx.encoded_2718().into()],
                ..Default::default()
            },
            metadata: OpFlashblockPayloadMetadata {
                block_number: 12,
                new_account_balances: Default::default(),
                receipts: [(tx.tx_hash(), receipt)].into_iter().collect(),
            },
        };
        PendingBlock::start(&fb, 8).unwrap()
    }

    #[test]
    fn receipt_json_is_an_op_rpc_receipt() {
        let block = block_with_one_deposit();
        let v = receipt_json(&block, 0).unwrap();
        let parsed: alloy_rpc_types_eth::TransactionReceipt<
            OpReceiptEnvelope<alloy_rpc_types_eth::Log>,
        > = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(parsed.transaction_hash, block.txs[0].hash);
        assert_eq!(parsed.block_hash, Some(B256::repeat_byte(6)));
        assert_eq!(parsed.block_number, Some(12));
        assert_eq!(parsed.gas_used, 30_000);
        assert_eq!(parsed.from, Address::repeat_byte(2));
        assert_eq!(v["depositNonce"], json!("0x7"));
        assert_eq!(v["logs"][0]["logIndex"], json!("0x0"));
        assert_eq!(v["logs"][0]["transactionHash"], json!(block.txs[0].hash));
        assert!(receipt_json(&block, 1).is_none());
    }

    #[test]
    fn block_and_transaction_json_are_rpc_shapes() {
        let block = block_with_one_deposit();
        let v = block_json(&block, true);
        let parsed: alloy_rpc_types_eth::Block<Value> = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(parsed.header.hash, B256::repeat_byte(6));
        assert_eq!(parsed.header.number, 12);
        assert_eq!(parsed.header.inner, block.header);
        assert_eq!(v["transactions"][0]["hash"], json!(block.txs[0].hash));
        let hashes = block_json(&block, false);
        assert_eq!(hashes["transactions"], json!([block.txs[0].hash]));
        let tx = transaction_json(&block, 0).unwrap();
        assert_eq!(tx["blockNumber"], json!("0xc"));
        assert_eq!(tx["transactionIndex"], json!("0x0"));
        assert_eq!(tx["from"], json!(Address::repeat_byte(2)));
    }
}
