//! Blocks, transactions and receipts of the chain as the `eth_*` methods answer them, rendered
//! by rpc-objects (op-reth's field sets, with the L1 fee fields).

use alloy_consensus::{TxReceipt, transaction::Recovered};
use alloy_rpc_types_eth::BlockTransactions;
use op_alloy_consensus::{OpReceipt, OpTxEnvelope};
use rpc_objects::{
    BlockContext, BlockShape, Included, OpTransactionReceipt, Transaction, fees::BlockFees,
};

use super::params::{RpcResult, to_json};
use crate::engine::store::ChainBlock;

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

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, U256};
    use serde_json::{Value, json};

    use super::*;

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
