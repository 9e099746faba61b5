//! Payload attributes as op-node's sequencer builds them for the next L2 block.

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B64, B256, keccak256};
use alloy_rpc_types_engine::PayloadAttributes;
use op_alloy_rpc_types_engine::OpPayloadAttributes;

use crate::chain::{genesis::ChainSpec, l1_info::L1BlockInfo};

/// The sequencer's fee recipient on OP chains (the SequencerFeeVault predeploy).
pub const SEQUENCER_FEE_VAULT: Address =
    alloy_primitives::address!("0x4200000000000000000000000000000000000011");

/// Knobs the sequencer sets per block from the system config.
#[derive(Debug, Clone, Copy)]
pub struct SequencerParams {
    /// Block gas limit.
    pub gas_limit: u64,
    /// Holocene `eip1559Params`: denominator (high 4 bytes) ++ elasticity (low 4 bytes).
    pub eip1559_denominator: u32,
    /// Holocene elasticity.
    pub eip1559_elasticity: u32,
    /// Jovian minimum base fee.
    pub min_base_fee: u64,
    /// How many L2 blocks share one fake L1 origin.
    pub blocks_per_epoch: u64,
}

impl Default for SequencerParams {
    fn default() -> Self {
        Self {
            gas_limit: 30_000_000,
            eip1559_denominator: 50,
            eip1559_elasticity: 2,
            min_base_fee: 0,
            blocks_per_epoch: 6,
        }
    }
}

/// Attributes for L2 block `number` at `timestamp`, with an L1-info deposit for a fake L1
/// origin and `noTxPool = false`.
pub fn sequencer_attributes(
    spec: &ChainSpec,
    params: &SequencerParams,
    number: u64,
    timestamp: u64,
) -> OpPayloadAttributes {
    let epoch = number / params.blocks_per_epoch.max(1);
    let seq = number % params.blocks_per_epoch.max(1);
    let l1 = L1BlockInfo::fake_origin(epoch, timestamp.saturating_sub(seq), seq);
    let deposit = l1.deposit_tx(spec, timestamp);
    let holocene = spec.is_holocene(timestamp);
    let mut eip1559 = [0u8; 8];
    eip1559[..4].copy_from_slice(&params.eip1559_denominator.to_be_bytes());
    eip1559[4..].copy_from_slice(&params.eip1559_elasticity.to_be_bytes());
    OpPayloadAttributes {
        payload_attributes: PayloadAttributes {
            timestamp,
            prev_randao: keccak256(number.to_be_bytes()),
            suggested_fee_recipient: SEQUENCER_FEE_VAULT,
            withdrawals: Some(Vec::new()),
            parent_beacon_block_root: Some(B256::from(keccak256(l1.hash))),
            slot_number: None,
            target_gas_limit: None,
        },
        transactions: Some(vec![deposit.encoded_2718().into()]),
        no_tx_pool: Some(false),
        gas_limit: Some(params.gas_limit),
        eip_1559_params: holocene.then_some(B64::from(eip1559)),
        min_base_fee: spec.is_jovian(timestamp).then_some(params.min_base_fee),
    }
}
