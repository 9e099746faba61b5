//! Building a block from OP payload attributes plus mempool transactions.

use std::sync::Arc;

use alloy_consensus::{Transaction, transaction::Recovered};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::U256;
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::OpPayloadAttributes;

use crate::{
    chain::{
        fees::{extra_data_for, next_base_fee},
        genesis::ChainSpec,
        state::StateSnapshot,
    },
    engine::{
        execute::{BlockContext, ExecuteError, assemble_header, execute_block},
        store::ChainBlock,
    },
};

/// Why attributes could not be turned into a block.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Attributes violate the spec (bad timestamp, missing gasLimit/eip1559Params, ...).
    #[error("invalid payload attributes: {0}")]
    InvalidAttributes(String),
    /// A forced (attributes) transaction failed.
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

/// A block built from attributes, ready to be served by `engine_getPayload`.
#[derive(Debug, Clone)]
pub struct BuiltBlock {
    /// The sealed block with its receipts and post-state.
    pub block: Arc<ChainBlock>,
    /// Priority fees paid to the fee recipient (the payload's `blockValue`).
    pub value: U256,
}

impl BuiltBlock {
    /// The same block without its post-state (see [`ChainBlock::without_state`]).
    pub fn without_state(&self) -> Self {
        Self {
            block: Arc::new(self.block.without_state()),
            value: self.value,
        }
    }
}

/// Builds the child of `parent` for `attrs`: attribute transactions first (all must execute),
/// then `pool` transactions unless `noTxPool`.
pub fn build_block(
    spec: &ChainSpec,
    parent: &ChainBlock,
    parent_state: &StateSnapshot,
    attrs: &OpPayloadAttributes,
    pool: Vec<Recovered<OpTxEnvelope>>,
) -> Result<BuiltBlock, BuildError> {
    build_block_on_prefix(spec, parent, parent_state, attrs, None, pool)
}

/// Like [`build_block`], but the block starts with `prefix` (the transactions of an earlier
/// flashblock of the same payload, attribute transactions included) instead of the attribute
/// transactions, so every flashblock extends the previous one.
pub fn build_block_on_prefix(
    spec: &ChainSpec,
    parent: &ChainBlock,
    parent_state: &StateSnapshot,
    attrs: &OpPayloadAttributes,
    prefix: Option<Vec<Recovered<OpTxEnvelope>>>,
    pool: Vec<Recovered<OpTxEnvelope>>,
) -> Result<BuiltBlock, BuildError> {
    let invalid = |msg: String| BuildError::InvalidAttributes(msg);
    let timestamp = attrs.payload_attributes.timestamp;
    if timestamp <= parent.header.timestamp {
        return Err(invalid(format!(
            "timestamp {timestamp} not after parent timestamp {}",
            parent.header.timestamp
        )));
    }
    let gas_limit = attrs
        .gas_limit
        .ok_or_else(|| invalid("gasLimit is required".into()))?;
    let extra_data = extra_data_for(spec, attrs, timestamp)
        .map_err(|e| invalid(format!("eip1559Params: {e}")))?;
    let base_fee = next_base_fee(spec, &parent.header)
        .map_err(|e| invalid(format!("parent extraData: {e}")))?;
    let forced = match prefix {
        Some(prefix) => prefix,
        None => {
            let mut forced = Vec::new();
            for (i, raw) in attrs.transactions.iter().flatten().enumerate() {
                let tx = OpTxEnvelope::decode_2718_exact(raw.as_ref())
                    .map_err(|e| invalid(format!("attributes transaction {i}: {e}")))?;
                let tx = alloy_consensus::transaction::SignerRecoverable::try_into_recovered(tx)
                    .map_err(|e| invalid(format!("attributes transaction {i} signature: {e}")))?;
                forced.push(tx);
            }
            forced
        }
    };
    let ctx = BlockContext {
        parent_hash: parent.hash,
        parent_number: parent.header.number,
        timestamp,
        beneficiary: attrs.payload_attributes.suggested_fee_recipient,
        prev_randao: attrs.payload_attributes.prev_randao,
        gas_limit,
        base_fee,
        parent_beacon_block_root: attrs.payload_attributes.parent_beacon_block_root,
        extra_data,
    };
    let pool = if attrs.no_tx_pool.unwrap_or_default() {
        Vec::new()
    } else {
        pool
    };
    let executed = execute_block(spec, parent_state, &ctx, forced, pool)?;
    let header = assemble_header(spec, &ctx, &executed);
    let mut value = U256::ZERO;
    let mut previous_cumulative = 0;
    for (tx, receipt) in executed.transactions.iter().zip(&executed.receipts) {
        let cumulative = alloy_consensus::TxReceipt::cumulative_gas_used(receipt);
        let used = cumulative - previous_cumulative;
        previous_cumulative = cumulative;
        let tip = tx.effective_tip_per_gas(base_fee).unwrap_or_default();
        value += U256::from(tip) * U256::from(used);
    }
    let block = ChainBlock::seal(
        header,
        executed.transactions,
        executed.receipts,
        executed.state,
    );
    Ok(BuiltBlock {
        block: Arc::new(block),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{
        attributes::{SequencerParams, sequencer_attributes},
        genesis::{ForkOverrides, default_genesis},
        l1_info::{L1_BLOCK_PREDEPLOY, L1BlockInfo},
    };

    #[test]
    fn deposit_writes_the_values_op_revm_reads_for_fees() {
        // The layout is checked against the slots op-revm (consensus code) reads the L1 fee and
        // DA-footprint parameters from, not against our own encoder.
        use op_revm::constants::{
            BASE_FEE_SCALAR_OFFSET, BLOB_BASE_FEE_SCALAR_OFFSET, DA_FOOTPRINT_GAS_SCALAR_OFFSET,
            DA_FOOTPRINT_GAS_SCALAR_SLOT, ECOTONE_L1_BLOB_BASE_FEE_SLOT,
            ECOTONE_L1_FEE_SCALARS_SLOT, L1_BASE_FEE_SLOT,
        };

        let g = default_genesis(1_000, ForkOverrides::default()).unwrap();
        let spec = g.spec.clone();
        let state = g.state.clone();
        let genesis = ChainBlock::seal(g.header, Vec::new(), Vec::new(), g.state);
        let attrs = sequencer_attributes(&spec, &SequencerParams::default(), 1, 1_001);
        let built = build_block(&spec, &genesis, &state, &attrs, Vec::new()).unwrap();
        let post = built.block.state().unwrap();
        let expected = L1BlockInfo::fake_origin(0, 1_000, 1);
        let slot = |s| post.storage(&L1_BLOCK_PREDEPLOY, s);
        assert_eq!(slot(L1_BASE_FEE_SLOT), expected.base_fee);
        assert_eq!(slot(ECOTONE_L1_BLOB_BASE_FEE_SLOT), expected.blob_base_fee);
        let scalars = slot(ECOTONE_L1_FEE_SCALARS_SLOT).to_be_bytes::<32>();
        let word = |at: usize| u32::from_be_bytes(scalars[at..at + 4].try_into().unwrap());
        assert_eq!(word(BASE_FEE_SCALAR_OFFSET), expected.base_fee_scalar);
        assert_eq!(
            word(BLOB_BASE_FEE_SCALAR_OFFSET),
            expected.blob_base_fee_scalar
        );
        let da = slot(DA_FOOTPRINT_GAS_SCALAR_SLOT).to_be_bytes::<32>();
        let da = u16::from_be_bytes([
            da[DA_FOOTPRINT_GAS_SCALAR_OFFSET],
            da[DA_FOOTPRINT_GAS_SCALAR_OFFSET + 1],
        ]);
        assert_eq!(da, expected.da_footprint_gas_scalar);
    }
}
