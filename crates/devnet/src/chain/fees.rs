//! EIP-1559 base fee and extraData rules across Canyon, Holocene and Jovian.

use alloy_consensus::Header;
use alloy_eips::eip1559::BaseFeeParams;
use alloy_primitives::Bytes;
use op_alloy_consensus::{EIP1559ParamError, decode_holocene_extra_data, decode_jovian_extra_data};
use op_alloy_rpc_types_engine::OpPayloadAttributes;

use crate::chain::genesis::ChainSpec;

/// The base fee of the child of `parent`: Holocene reads the 1559 parameters from the parent's
/// extraData; Jovian also takes the larger of gas used and DA footprint, and a minimum base fee.
pub fn next_base_fee(spec: &ChainSpec, parent: &Header) -> Result<u64, EIP1559ParamError> {
    let parent_base_fee = parent.base_fee_per_gas.unwrap_or_default();
    let ts = parent.timestamp;
    if !spec.is_holocene(ts) {
        return Ok(spec.base_fee_params.next_block_base_fee(
            parent.gas_used,
            parent.gas_limit,
            parent_base_fee,
        ));
    }
    let (elasticity, denominator, min_base_fee, gas_used) = if spec.is_jovian(ts) {
        let (e, d, min) = decode_jovian_extra_data(&parent.extra_data)?;
        (
            e,
            d,
            min,
            parent
                .gas_used
                .max(parent.blob_gas_used.unwrap_or_default()),
        )
    } else {
        let (e, d) = decode_holocene_extra_data(&parent.extra_data)?;
        (e, d, 0, parent.gas_used)
    };
    let params = if elasticity == 0 && denominator == 0 {
        spec.base_fee_params
    } else {
        BaseFeeParams::new(u128::from(denominator), u128::from(elasticity))
    };
    let next = params.next_block_base_fee(gas_used, parent.gas_limit, parent_base_fee);
    Ok(next.max(min_base_fee))
}

/// The extraData a block built from `attrs` at `timestamp` must carry.
pub fn extra_data_for(
    spec: &ChainSpec,
    attrs: &OpPayloadAttributes,
    timestamp: u64,
) -> Result<Bytes, EIP1559ParamError> {
    if spec.is_jovian(timestamp) {
        attrs.get_jovian_extra_data(spec.base_fee_params)
    } else if spec.is_holocene(timestamp) {
        attrs.get_holocene_extra_data(spec.base_fee_params)
    } else {
        Ok(Bytes::new())
    }
}

/// Checks a block's extraData has the format its fork requires.
pub fn check_extra_data(spec: &ChainSpec, header: &Header) -> Result<(), EIP1559ParamError> {
    if spec.is_jovian(header.timestamp) {
        decode_jovian_extra_data(&header.extra_data).map(|_| ())
    } else if spec.is_holocene(header.timestamp) {
        decode_holocene_extra_data(&header.extra_data).map(|_| ())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::genesis::{ForkOverrides, default_genesis};

    #[test]
    fn jovian_min_base_fee_is_a_floor() {
        let g = default_genesis(10, ForkOverrides::default()).unwrap();
        let mut parent = g.header.clone();
        parent.base_fee_per_gas = Some(7);
        parent.gas_used = 0;
        // version 1, denominator 50, elasticity 2, min base fee 1000
        let mut extra = vec![1u8];
        extra.extend_from_slice(&50u32.to_be_bytes());
        extra.extend_from_slice(&2u32.to_be_bytes());
        extra.extend_from_slice(&1000u64.to_be_bytes());
        parent.extra_data = extra.into();
        assert_eq!(next_base_fee(&g.spec, &parent).unwrap(), 1000);
    }

    #[test]
    fn jovian_da_footprint_drives_base_fee_up() {
        let g = default_genesis(10, ForkOverrides::default()).unwrap();
        let mut parent = g.header.clone();
        parent.base_fee_per_gas = Some(1_000_000);
        parent.gas_used = 0;
        let empty = next_base_fee(&g.spec, &parent).unwrap();
        parent.blob_gas_used = Some(parent.gas_limit);
        let full = next_base_fee(&g.spec, &parent).unwrap();
        assert!(empty < 1_000_000, "empty block lowers base fee: {empty}");
        assert!(
            full > 1_000_000,
            "full DA footprint raises base fee: {full}"
        );
    }
}
