//! JSON of pending blocks, transactions and receipts: [`rpc_objects`] decides the shapes (the
//! same as the devnet engine's and op-reth's), this module only says where a pending block keeps
//! each part.

use alloy_rpc_types_eth::BlockTransactions;
use rpc_objects::{BlockContext, BlockShape, Included};
use serde_json::Value;

use super::block::PendingBlock;

fn context(block: &PendingBlock) -> BlockContext {
    BlockContext::of(&block.header, block.hash)
}

fn included(block: &PendingBlock, index: usize) -> Option<Included<'_>> {
    let ptx = block.txs.get(index)?;
    Some(Included {
        tx: &ptx.tx,
        // No receipt from the stream: the receipt is the upstream's to answer.
        receipt: ptx.receipt.as_ref()?,
        index: index as u64,
        gas_used: ptx.gas_used,
        first_log_index: ptx.first_log_index,
    })
}

fn transaction(
    block: &PendingBlock,
    ctx: &BlockContext,
    index: usize,
) -> Option<rpc_objects::Transaction> {
    let ptx = block.txs.get(index)?;
    let deposit = ptx
        .receipt
        .as_ref()
        .map(rpc_objects::deposit_info)
        .unwrap_or_default();
    Some(rpc_objects::transaction(
        &ptx.tx,
        Some((ctx, index as u64, deposit)),
    ))
}

/// `eth_getTransactionByHash` shape of the `index`-th transaction.
pub fn transaction_json(block: &PendingBlock, index: usize) -> Option<Value> {
    serde_json::to_value(transaction(block, &context(block), index)?).ok()
}

/// `eth_getTransactionReceipt` shape of the `index`-th transaction.
pub fn receipt_json(block: &PendingBlock, index: usize) -> Option<Value> {
    let receipt = rpc_objects::receipt(&context(block), included(block, index)?, block.fees());
    serde_json::to_value(receipt).ok()
}

/// `eth_getBlockByNumber` shape of the block (`full`: transaction objects, else hashes).
pub fn block_json(block: &PendingBlock, full: bool) -> Value {
    let ctx = context(block);
    let transactions = if full {
        BlockTransactions::Full(
            (0..block.txs.len())
                .filter_map(|i| transaction(block, &ctx, i))
                .collect(),
        )
    } else {
        BlockTransactions::Hashes(block.txs.iter().map(|t| t.hash).collect())
    };
    let shape = BlockShape {
        header: &block.header,
        hash: block.hash,
        size: block.size,
        withdrawals: &block.withdrawals,
    };
    serde_json::to_value(rpc_objects::block(shape, transactions)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use alloy_consensus::{Eip658Value, Receipt, Sealable};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Address, B256, Bloom, Bytes, Log as PrimitiveLog, TxKind, U256};
    use alloy_rpc_types_engine::PayloadId;
    use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope, TxDeposit};
    use op_alloy_rpc_types_engine::{
        OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
        OpFlashblockPayloadMetadata,
    };
    use serde_json::json;

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
        let parsed: rpc_objects::OpTransactionReceipt = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(parsed.inner.transaction_hash, block.txs[0].hash);
        assert_eq!(parsed.inner.block_hash, Some(B256::repeat_byte(6)));
        assert_eq!(parsed.inner.block_number, Some(12));
        assert_eq!(parsed.inner.gas_used, 30_000);
        assert_eq!(parsed.inner.from, Address::repeat_byte(2));
        assert_eq!(v["depositNonce"], json!("0x7"));
        assert_eq!(v["depositReceiptVersion"], json!("0x1"));
        assert_eq!(v["logs"][0]["logIndex"], json!("0x0"));
        assert_eq!(v["logs"][0]["transactionIndex"], json!("0x0"));
        assert_eq!(v["logs"][0]["blockTimestamp"], json!("0x6553f100"));
        assert_eq!(v["logs"][0]["transactionHash"], json!(block.txs[0].hash));
        assert!(receipt_json(&block, 1).is_none());
    }

    #[test]
    fn block_and_transaction_json_are_rpc_shapes() {
        let block = block_with_one_deposit();
        let v = block_json(&block, true);
        let parsed: rpc_objects::Block = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(parsed.header.hash, B256::repeat_byte(6));
        assert_eq!(parsed.header.number, 12);
        assert_eq!(parsed.header.inner, block.header);
        assert_eq!(v["transactions"][0]["hash"], json!(block.txs[0].hash));
        // A deposit in a block shows its receipt's nonce and version, as op-reth does.
        assert_eq!(v["transactions"][0]["nonce"], json!("0x7"));
        assert_eq!(v["transactions"][0]["depositReceiptVersion"], json!("0x1"));
        let hashes = block_json(&block, false);
        assert_eq!(hashes["transactions"], json!([block.txs[0].hash]));
        let tx = transaction_json(&block, 0).unwrap();
        assert_eq!(tx["blockNumber"], json!("0xc"));
        assert_eq!(tx["transactionIndex"], json!("0x0"));
        assert_eq!(tx["from"], json!(Address::repeat_byte(2)));
    }
}
