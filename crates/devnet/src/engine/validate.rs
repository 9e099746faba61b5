//! Validating a block by re-executing it on its parent's state and comparing every
//! commitment in its header with what execution produced.

use std::collections::HashMap;

use alloy_consensus::{
    Block, Header,
    transaction::{Recovered, SignerRecoverable},
};
use alloy_primitives::{Address, TxHash};
use op_alloy_consensus::OpTxEnvelope;

use crate::{
    chain::{
        fees::{check_extra_data, next_base_fee},
        genesis::ChainSpec,
        state::StateSnapshot,
    },
    engine::{
        execute::{BlockContext, assemble_header, execute_block},
        store::ChainBlock,
    },
};

/// Why a block is invalid; the message names the field that did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidBlock(pub String);

fn mismatch<T: std::fmt::Debug + PartialEq>(
    field: &str,
    claimed: T,
    computed: T,
) -> Result<(), InvalidBlock> {
    if claimed == computed {
        Ok(())
    } else {
        Err(InvalidBlock(format!(
            "{field} mismatch: block has {claimed:?}, execution gives {computed:?}"
        )))
    }
}

/// Re-executes `block` (whose claimed hash is `claimed_hash`) on `parent` / `parent_state`.
/// Returns the sealed block with receipts and post-state when every commitment matches.
pub fn validate_block(
    spec: &ChainSpec,
    parent: &ChainBlock,
    parent_state: &StateSnapshot,
    block: Block<OpTxEnvelope>,
    claimed_hash: alloy_primitives::B256,
) -> Result<ChainBlock, InvalidBlock> {
    validate_block_with_senders(
        spec,
        parent,
        parent_state,
        block,
        claimed_hash,
        &HashMap::new(),
    )
}

/// [`validate_block`] reusing senders already recovered for the same transaction hashes (the
/// engine's mempool holds most of a block's transactions; recovery dominates validation time).
pub fn validate_block_with_senders(
    spec: &ChainSpec,
    parent: &ChainBlock,
    parent_state: &StateSnapshot,
    block: Block<OpTxEnvelope>,
    claimed_hash: alloy_primitives::B256,
    known_senders: &HashMap<TxHash, Address>,
) -> Result<ChainBlock, InvalidBlock> {
    let header = block.header;
    mismatch("block hash", claimed_hash, header.hash_slow())?;
    mismatch("parent hash", header.parent_hash, parent.hash)?;
    mismatch("block number", header.number, parent.header.number + 1)?;
    if header.timestamp <= parent.header.timestamp {
        return Err(InvalidBlock(format!(
            "timestamp {} not after parent timestamp {}",
            header.timestamp, parent.header.timestamp
        )));
    }
    check_extra_data(spec, &header).map_err(|e| InvalidBlock(format!("extraData: {e}")))?;
    let expected_base_fee = next_base_fee(spec, &parent.header)
        .map_err(|e| InvalidBlock(format!("parent extraData: {e}")))?;
    mismatch("base fee", header.base_fee_per_gas, Some(expected_base_fee))?;
    if header.gas_used > header.gas_limit {
        return Err(InvalidBlock(format!(
            "gas used {} above gas limit {}",
            header.gas_used, header.gas_limit
        )));
    }
    let mut txs = Vec::with_capacity(block.body.transactions.len());
    for (i, tx) in block.body.transactions.into_iter().enumerate() {
        let recovered = match known_senders.get(&TxHash::from(*tx.tx_hash())) {
            Some(sender) => Recovered::new_unchecked(tx, *sender),
            None => tx
                .try_into_recovered()
                .map_err(|e| InvalidBlock(format!("transaction {i}: bad signature: {e}")))?,
        };
        txs.push(recovered);
    }
    let ctx = BlockContext {
        parent_hash: header.parent_hash,
        parent_number: parent.header.number,
        timestamp: header.timestamp,
        beneficiary: header.beneficiary,
        prev_randao: header.mix_hash,
        gas_limit: header.gas_limit,
        base_fee: expected_base_fee,
        parent_beacon_block_root: header.parent_beacon_block_root,
        extra_data: header.extra_data.clone(),
    };
    let count = txs.len();
    let executed = execute_block(spec, parent_state, &ctx, txs, Vec::new())
        .map_err(|e| InvalidBlock(e.to_string()))?;
    mismatch("transaction count", count, executed.transactions.len())?;
    let computed = assemble_header(spec, &ctx, &executed);
    compare_headers(&header, &computed)?;
    Ok(ChainBlock::seal(
        header,
        executed.transactions,
        executed.receipts,
        executed.state,
    ))
}

fn compare_headers(claimed: &Header, computed: &Header) -> Result<(), InvalidBlock> {
    mismatch("gas used", claimed.gas_used, computed.gas_used)?;
    mismatch(
        "transactions root",
        claimed.transactions_root,
        computed.transactions_root,
    )?;
    mismatch(
        "receipts root",
        claimed.receipts_root,
        computed.receipts_root,
    )?;
    mismatch("logs bloom", claimed.logs_bloom, computed.logs_bloom)?;
    mismatch("state root", claimed.state_root, computed.state_root)?;
    mismatch(
        "withdrawals root",
        claimed.withdrawals_root,
        computed.withdrawals_root,
    )?;
    mismatch(
        "blob gas used",
        claimed.blob_gas_used,
        computed.blob_gas_used,
    )?;
    mismatch(
        "excess blob gas",
        claimed.excess_blob_gas,
        computed.excess_blob_gas,
    )?;
    mismatch(
        "requests hash",
        claimed.requests_hash,
        computed.requests_hash,
    )?;
    mismatch("ommers hash", claimed.ommers_hash, computed.ommers_hash)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy_consensus::transaction::SignerRecoverable;
    use alloy_primitives::{Address, U256};

    use super::*;
    use crate::{
        chain::{
            accounts::{funded_dev_signers, sign_transfer},
            attributes::{SequencerParams, sequencer_attributes},
            genesis::{ForkOverrides, default_genesis},
        },
        engine::build::build_block,
    };

    fn genesis_block() -> (ChainSpec, ChainBlock) {
        let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
        (
            g.spec.clone(),
            ChainBlock::seal(g.header, Vec::new(), Vec::new(), g.state),
        )
    }

    fn transfers(
        state: &StateSnapshot,
        chain_id: u64,
        n: u64,
    ) -> Vec<alloy_consensus::transaction::Recovered<OpTxEnvelope>> {
        let signers = funded_dev_signers(state).unwrap();
        (0..n)
            .map(|i| {
                let s = &signers[(i as usize) % signers.len()];
                let nonce = i / signers.len() as u64;
                let tx = sign_transfer(
                    s,
                    chain_id,
                    nonce,
                    Address::repeat_byte(0xaa),
                    U256::from(1 + i),
                    1_000_000_000,
                    1_000,
                )
                .unwrap();
                tx.try_into_recovered().unwrap()
            })
            .collect()
    }

    #[test]
    fn built_block_revalidates_and_tampering_is_named() {
        let (spec, genesis) = genesis_block();
        let state = (**genesis.state().unwrap()).clone();
        let attrs = sequencer_attributes(&spec, &SequencerParams::default(), 1, 1_001);
        let built = build_block(
            &spec,
            &genesis,
            &state,
            &attrs,
            transfers(&state, spec.chain_id, 5),
        )
        .unwrap();
        let block = built.block;
        assert_eq!(block.transactions.len(), 6, "deposit + 5 transfers");
        assert!(block.header.gas_used >= 5 * 21_000);
        assert!(
            block.receipts.iter().all(|r| r.is_success()),
            "L1-info deposit and transfers succeed"
        );
        assert!(
            block.header.blob_gas_used.unwrap() > 0,
            "Jovian DA footprint recorded"
        );
        assert_eq!(block.header.extra_data.len(), 17);

        let valid = validate_block(
            &spec,
            &genesis,
            &state,
            block.to_consensus_block(),
            block.hash,
        )
        .unwrap();
        assert_eq!(valid.hash, block.hash);
        assert_eq!(valid.state().unwrap().state_root(), block.header.state_root);

        let mut tampered = block.to_consensus_block();
        tampered.header.state_root = alloy_primitives::B256::repeat_byte(1);
        let hash = tampered.header.hash_slow();
        let err = validate_block(&spec, &genesis, &state, tampered.clone(), hash).unwrap_err();
        assert!(err.0.starts_with("state root mismatch"), "{err}");

        let err = validate_block(&spec, &genesis, &state, tampered, block.hash).unwrap_err();
        assert!(err.0.starts_with("block hash mismatch"), "{err}");

        let mut tampered = block.to_consensus_block();
        tampered.header.gas_used += 1;
        let hash = tampered.header.hash_slow();
        let err = validate_block(&spec, &genesis, &state, tampered, hash).unwrap_err();
        assert!(err.0.starts_with("gas used mismatch"), "{err}");

        let mut tampered = block.to_consensus_block();
        tampered.header.receipts_root = alloy_primitives::B256::repeat_byte(2);
        let hash = tampered.header.hash_slow();
        let err = validate_block(&spec, &genesis, &state, tampered, hash).unwrap_err();
        assert!(err.0.starts_with("receipts root mismatch"), "{err}");
    }

    #[test]
    fn no_tx_pool_builds_deposit_only_block() {
        let (spec, genesis) = genesis_block();
        let state = (**genesis.state().unwrap()).clone();
        let mut attrs = sequencer_attributes(&spec, &SequencerParams::default(), 1, 1_001);
        attrs.no_tx_pool = Some(true);
        let built = build_block(
            &spec,
            &genesis,
            &state,
            &attrs,
            transfers(&state, spec.chain_id, 3),
        )
        .unwrap();
        assert_eq!(built.block.transactions.len(), 1);
    }

    #[test]
    fn pool_tx_with_bad_nonce_is_skipped_not_fatal() {
        let (spec, genesis) = genesis_block();
        let state = (**genesis.state().unwrap()).clone();
        let mut txs = transfers(&state, spec.chain_id, 2);
        let signers = funded_dev_signers(&state).unwrap();
        let bad = sign_transfer(
            &signers[0],
            spec.chain_id,
            99,
            Address::ZERO,
            U256::from(1),
            1_000_000_000,
            1,
        )
        .unwrap();
        txs.insert(0, bad.try_into_recovered().unwrap());
        let attrs = sequencer_attributes(&spec, &SequencerParams::default(), 1, 1_001);
        let built = build_block(&spec, &genesis, &state, &attrs, txs).unwrap();
        // signer 0's later tx is skipped with it; signer 1's goes in.
        assert_eq!(built.block.transactions.len(), 2);
    }
}
