//! The L1-attributes deposit transaction op-node puts first in every L2 block
//! (specs.optimism.io `protocol/isthmus/l1-attributes.md`, `protocol/jovian/l1-attributes.md`).

use alloy_primitives::{Address, B256, Bytes, TxKind, U256, address, keccak256};
use op_alloy_consensus::{L1InfoDepositSource, OpTxEnvelope, TxDeposit};

use crate::chain::genesis::ChainSpec;

/// Sender of the L1-info deposit (the "depositor account").
pub const L1_INFO_DEPOSITOR: Address = address!("0xDeaDDEaDDeAdDeAdDEAdDEaddeAddEAdDEAd0001");
/// The L1Block predeploy the deposit calls.
pub const L1_BLOCK_PREDEPLOY: Address = address!("0x4200000000000000000000000000000000000015");
/// Gas limit op-node gives the L1-info deposit since Regolith.
pub const L1_INFO_GAS_LIMIT: u64 = 1_000_000;

/// The values op-node reads from L1 and the system config for one L2 block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1BlockInfo {
    /// L1 origin number.
    pub number: u64,
    /// L1 origin timestamp.
    pub timestamp: u64,
    /// L1 origin base fee.
    pub base_fee: U256,
    /// L1 origin blob base fee.
    pub blob_base_fee: U256,
    /// L1 origin hash.
    pub hash: B256,
    /// Position of this L2 block within its epoch.
    pub sequence_number: u64,
    /// Batcher address, left-padded to 32 bytes.
    pub batcher_hash: B256,
    /// Ecotone base fee scalar.
    pub base_fee_scalar: u32,
    /// Ecotone blob base fee scalar.
    pub blob_base_fee_scalar: u32,
    /// Isthmus operator fee scalar.
    pub operator_fee_scalar: u32,
    /// Isthmus operator fee constant.
    pub operator_fee_constant: u64,
    /// Jovian DA footprint gas scalar.
    pub da_footprint_gas_scalar: u16,
}

impl L1BlockInfo {
    /// A plausible fake L1 origin for a devnet: L1 block `number` with a deterministic hash.
    pub fn fake_origin(number: u64, timestamp: u64, sequence_number: u64) -> Self {
        Self {
            number,
            timestamp,
            base_fee: U256::from(1_000_000_000u64),
            blob_base_fee: U256::from(1u64),
            hash: keccak256(number.to_be_bytes()),
            sequence_number,
            batcher_hash: B256::left_padding_from(
                address!("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC").as_slice(),
            ),
            base_fee_scalar: 1368,
            blob_base_fee_scalar: 810_949,
            operator_fee_scalar: 0,
            operator_fee_constant: 0,
            da_footprint_gas_scalar: 400,
        }
    }

    /// The calldata for `setL1BlockValuesIsthmus()` (176 bytes) or, when `jovian`,
    /// `setL1BlockValuesJovian()` (178 bytes: the DA footprint scalar appended).
    pub fn calldata(&self, jovian: bool) -> Bytes {
        let signature: &[u8] = if jovian {
            b"setL1BlockValuesJovian()"
        } else {
            b"setL1BlockValuesIsthmus()"
        };
        let mut out = Vec::with_capacity(178);
        out.extend_from_slice(&keccak256(signature)[..4]);
        out.extend_from_slice(&self.base_fee_scalar.to_be_bytes());
        out.extend_from_slice(&self.blob_base_fee_scalar.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.base_fee.to_be_bytes::<32>());
        out.extend_from_slice(&self.blob_base_fee.to_be_bytes::<32>());
        out.extend_from_slice(self.hash.as_slice());
        out.extend_from_slice(self.batcher_hash.as_slice());
        out.extend_from_slice(&self.operator_fee_scalar.to_be_bytes());
        out.extend_from_slice(&self.operator_fee_constant.to_be_bytes());
        if jovian {
            out.extend_from_slice(&self.da_footprint_gas_scalar.to_be_bytes());
        }
        out.into()
    }

    /// The deposit transaction carrying these values into an L2 block at `l2_timestamp`.
    pub fn deposit_tx(&self, spec: &ChainSpec, l2_timestamp: u64) -> OpTxEnvelope {
        let source_hash = L1InfoDepositSource {
            l1_block_hash: self.hash,
            seq_number: self.sequence_number,
        }
        .source_hash();
        let deposit = TxDeposit {
            source_hash,
            from: L1_INFO_DEPOSITOR,
            to: TxKind::Call(L1_BLOCK_PREDEPLOY),
            mint: 0,
            value: U256::ZERO,
            gas_limit: L1_INFO_GAS_LIMIT,
            is_system_transaction: false,
            input: self.calldata(spec.is_jovian(l2_timestamp)),
        };
        OpTxEnvelope::Deposit(alloy_primitives::Sealed::new(deposit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::genesis::{ForkOverrides, default_genesis};

    #[test]
    fn calldata_lengths_match_spec() {
        let info = L1BlockInfo::fake_origin(1, 2, 0);
        assert_eq!(info.calldata(false).len(), 176);
        assert_eq!(info.calldata(true).len(), 178);
    }

    #[test]
    fn genesis_l1block_implementation_knows_both_selectors() {
        // The predeploy is a proxy; its implementation code must dispatch on our selectors, or
        // the deposit would revert and every block would carry a failed L1-info tx.
        let g = default_genesis(0, ForkOverrides::default()).unwrap();
        let implementation = address!("0x3Ba4007f5C922FBb33C454B41ea7a1f11E83df2C");
        let code_hash = g.state.account(&implementation).unwrap().code_hash;
        assert_ne!(code_hash, revm::primitives::KECCAK_EMPTY);
        let json: serde_json::Value =
            serde_json::from_str(crate::chain::genesis::DEFAULT_GENESIS_JSON).unwrap();
        let code = json["alloc"]["3Ba4007f5C922FBb33C454B41ea7a1f11E83df2C"]["code"]
            .as_str()
            .unwrap()
            .to_lowercase();
        for sig in ["setL1BlockValuesIsthmus()", "setL1BlockValuesJovian()"] {
            let selector = hex::encode(&keccak256(sig.as_bytes())[..4]);
            assert!(
                code.contains(&format!("63{selector}")),
                "{sig} ({selector}) not in code"
            );
        }
    }
}
