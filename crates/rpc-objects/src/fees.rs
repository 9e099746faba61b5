//! What a transaction pays beyond gas on OP Stack (L1 data fee, operator fee), computed from
//! the L1-attributes deposit that opens every block: the L1 fields of receipts, and (in
//! flashblocks-rpc) balance changes when the stream carries no balances.

use alloy_primitives::{Address, U256, address, keccak256};
use op_alloy_consensus::OpTxEnvelope;
use op_revm::{L1BlockInfo, OpSpecId};

/// Sender of the L1-attributes deposit (specs.optimism.io `protocol/deposits.md`).
pub const L1_INFO_DEPOSITOR: Address = address!("0xDeaDDEaDDeAdDeAdDEAdDEaddeAddEAdDEAd0001");
/// The L1Block predeploy the L1-attributes deposit calls.
pub const L1_BLOCK_PREDEPLOY: Address = address!("0x4200000000000000000000000000000000000015");
/// Receives the base fee (`protocol/predeploys.md`).
pub const BASE_FEE_VAULT: Address = address!("0x4200000000000000000000000000000000000019");
/// Receives the L1 data fee.
pub const L1_FEE_VAULT: Address = address!("0x420000000000000000000000000000000000001a");
/// Receives the operator fee (Isthmus).
pub const OPERATOR_FEE_VAULT: Address = address!("0x420000000000000000000000000000000000001b");

/// Calldata lengths of the L1-attributes formats (`ecotone/l1-attributes.md`,
/// `isthmus/l1-attributes.md`, `jovian/l1-attributes.md`).
const ECOTONE_LEN: usize = 164;
const ISTHMUS_LEN: usize = 176;
const JOVIAN_LEN: usize = 178;

/// The fee parameters of one block, read from its L1-attributes deposit.
#[derive(Debug, Clone)]
pub struct BlockFees {
    info: L1BlockInfo,
    spec: OpSpecId,
}

/// What one transaction pays beyond `gas_used * effective_gas_price`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxFees {
    /// L1 data fee.
    pub l1_fee: U256,
    /// L1 gas the data fee was computed for.
    pub l1_gas_used: U256,
    /// Operator fee (zero before Isthmus).
    pub operator_fee: U256,
}

fn selector(signature: &str) -> [u8; 4] {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

fn be_u256(input: &[u8], at: usize, len: usize) -> Option<U256> {
    input.get(at..at + len).map(|b| U256::from_be_slice(b))
}

impl BlockFees {
    /// Parses the calldata of the L1-attributes deposit. The calldata does not say which fork
    /// is active, only its format: the Ecotone format is taken as Fjord or later (every OP
    /// Stack chain is past Fjord), Isthmus and Jovian formats as those forks. `None` for
    /// anything else (Bedrock format, unknown selector): balances are then not derived.
    pub fn from_l1_info_calldata(input: &[u8]) -> Option<Self> {
        let sel = input.get(..4)?;
        let (spec, len) = if sel == selector("setL1BlockValuesJovian()") {
            (OpSpecId::JOVIAN, JOVIAN_LEN)
        } else if sel == selector("setL1BlockValuesIsthmus()") {
            (OpSpecId::ISTHMUS, ISTHMUS_LEN)
        } else if sel == selector("setL1BlockValuesEcotone()") {
            (OpSpecId::FJORD, ECOTONE_LEN)
        } else {
            return None;
        };
        if input.len() != len {
            return None;
        }
        let mut info = L1BlockInfo {
            l1_base_fee_scalar: be_u256(input, 4, 4)?,
            l1_blob_base_fee_scalar: Some(be_u256(input, 8, 4)?),
            l1_base_fee: be_u256(input, 36, 32)?,
            l1_blob_base_fee: Some(be_u256(input, 68, 32)?),
            operator_fee_scalar: Some(U256::ZERO),
            operator_fee_constant: Some(U256::ZERO),
            ..Default::default()
        };
        if len >= ISTHMUS_LEN {
            info.operator_fee_scalar = Some(be_u256(input, 164, 4)?);
            info.operator_fee_constant = Some(be_u256(input, 168, 8)?);
        }
        if len == JOVIAN_LEN {
            let b = input.get(176..178)?;
            info.da_footprint_gas_scalar = Some(u16::from_be_bytes([b[0], b[1]]));
        }
        Some(Self { info, spec })
    }

    /// The fee parameters a block's first transaction sets, when it is the L1-attributes deposit.
    pub fn from_l1_info_deposit(tx: &OpTxEnvelope) -> Option<Self> {
        let deposit = tx.as_deposit()?;
        (deposit.from == L1_INFO_DEPOSITOR).then_some(())?;
        Self::from_l1_info_calldata(&deposit.input)
    }

    /// Whether the Isthmus (or later) format was used.
    pub fn is_isthmus(&self) -> bool {
        self.spec.is_enabled_in(OpSpecId::ISTHMUS)
    }

    /// Fees of a non-deposit transaction with EIP-2718 encoding `enveloped` that used `gas_used`.
    pub fn tx_fees(&self, enveloped: &[u8], gas_used: u64) -> TxFees {
        // op-revm caches the last transaction's cost in the struct: work on a fresh copy.
        let mut info = self.info.clone();
        info.tx_l1_cost = None;
        let l1_fee = info.calculate_tx_l1_cost(enveloped, self.spec);
        let l1_gas_used = info.data_gas(enveloped, self.spec);
        let operator_fee = if self.is_isthmus() {
            info.operator_fee_charge(enveloped, U256::from(gas_used), self.spec)
        } else {
            U256::ZERO
        };
        TxFees {
            l1_fee,
            l1_gas_used,
            operator_fee,
        }
    }

    /// L1 base fee (for receipts' `l1GasPrice`).
    pub fn l1_base_fee(&self) -> U256 {
        self.info.l1_base_fee
    }

    /// L1 base fee scalar.
    pub fn l1_base_fee_scalar(&self) -> U256 {
        self.info.l1_base_fee_scalar
    }

    /// L1 blob base fee.
    pub fn l1_blob_base_fee(&self) -> U256 {
        self.info.l1_blob_base_fee.unwrap_or_default()
    }

    /// L1 blob base fee scalar.
    pub fn l1_blob_base_fee_scalar(&self) -> U256 {
        self.info.l1_blob_base_fee_scalar.unwrap_or_default()
    }

    /// Jovian DA footprint gas scalar (`None` before the Jovian format).
    pub fn da_footprint_gas_scalar(&self) -> Option<u16> {
        self.info.da_footprint_gas_scalar
    }

    /// A transaction's Jovian DA footprint, which op-reth's receipts carry as `blobGasUsed`
    /// (deposits too): its estimated compressed size (FastLZ, as the L1 fee estimates it,
    /// 100 bytes at least) times the DA footprint gas scalar. `None` before the Jovian format.
    pub fn da_footprint(&self, enveloped: &[u8]) -> Option<u64> {
        let scalar = self.da_footprint_gas_scalar()?;
        Some(
            op_revm::transaction::estimate_tx_compressed_size(enveloped)
                .saturating_div(1_000_000)
                .saturating_mul(u64::from(scalar)),
        )
    }

    /// Operator fee scalar and constant, from Isthmus on.
    pub fn operator_fee_params(&self) -> Option<(U256, U256)> {
        self.is_isthmus().then(|| {
            (
                self.info.operator_fee_scalar.unwrap_or_default(),
                self.info.operator_fee_constant.unwrap_or_default(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isthmus_calldata(base_fee_scalar: u32, op_scalar: u32, op_constant: u64) -> Vec<u8> {
        let mut out = selector("setL1BlockValuesIsthmus()").to_vec();
        out.extend_from_slice(&base_fee_scalar.to_be_bytes());
        out.extend_from_slice(&810_949u32.to_be_bytes());
        out.extend_from_slice(&3u64.to_be_bytes());
        out.extend_from_slice(&1_000u64.to_be_bytes());
        out.extend_from_slice(&7u64.to_be_bytes());
        out.extend_from_slice(&U256::from(1_000_000_000u64).to_be_bytes::<32>());
        out.extend_from_slice(&U256::from(1u64).to_be_bytes::<32>());
        out.extend_from_slice(&[9u8; 32]);
        out.extend_from_slice(&[8u8; 32]);
        out.extend_from_slice(&op_scalar.to_be_bytes());
        out.extend_from_slice(&op_constant.to_be_bytes());
        out
    }

    #[test]
    fn isthmus_calldata_parses_and_charges_l1_and_operator_fees() {
        let fees = BlockFees::from_l1_info_calldata(&isthmus_calldata(1368, 0, 5)).unwrap();
        assert!(fees.is_isthmus());
        assert_eq!(fees.l1_base_fee(), U256::from(1_000_000_000u64));
        let tx = [0x02u8; 120];
        let f = fees.tx_fees(&tx, 21_000);
        assert!(f.l1_fee > U256::ZERO);
        assert_eq!(f.operator_fee, U256::from(5));
        assert_eq!(
            BlockFees::from_l1_info_calldata(&tx[..50]).map(|_| ()),
            None
        );
    }

    #[test]
    fn truncated_or_unknown_calldata_is_refused() {
        let mut data = isthmus_calldata(1, 0, 0);
        data.pop();
        assert!(BlockFees::from_l1_info_calldata(&data).is_none());
        assert!(BlockFees::from_l1_info_calldata(&[1, 2, 3, 4]).is_none());
        assert!(BlockFees::from_l1_info_calldata(&[]).is_none());
    }
}
