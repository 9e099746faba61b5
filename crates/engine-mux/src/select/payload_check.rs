//! Whether a builder's payload is the block op-node asked for. `VALID` on the local EL only
//! says the block is a valid block; op-node also needs it on its head, at its timestamp, with
//! its attributes' forced transactions first. A VALID block that differs in any of these is
//! rejected or reorged by op-node: a lost slot. So every builder payload (and every block
//! assembled from flashblocks) is checked against the forkchoiceUpdated that started it before
//! it is validated.

use alloy_primitives::B64;
use alloy_rpc_types_engine::ForkchoiceState;
use engine_api::PayloadEnvelope;
use op_alloy_rpc_types_engine::OpPayloadAttributes;

/// A forkchoiceUpdated with attributes as op-node sent it: the block it asked to be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRequest {
    /// op-node's forkchoice state; the block builds on its `headBlockHash`.
    pub forkchoice: ForkchoiceState,
    /// op-node's payload attributes.
    pub attributes: OpPayloadAttributes,
}

/// The first field in which a payload differs from what op-node asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: op-node asked for {expected}, the block has {found}")]
pub struct Mismatch {
    /// The payload field (Engine API name).
    pub field: &'static str,
    /// What op-node's forkchoiceUpdated implies.
    pub expected: String,
    /// What the payload carries.
    pub found: String,
}

fn differs(
    field: &'static str,
    expected: impl std::fmt::Debug,
    found: impl std::fmt::Debug,
) -> Result<(), Mismatch> {
    Err(Mismatch {
        field,
        expected: format!("{expected:?}"),
        found: format!("{found:?}"),
    })
}

fn same<T: PartialEq + std::fmt::Debug>(
    field: &'static str,
    expected: T,
    found: T,
) -> Result<(), Mismatch> {
    if expected == found {
        Ok(())
    } else {
        differs(field, expected, found)
    }
}

/// Holocene extraData: version 0, then denominator and elasticity (u32 each, big-endian).
const HOLOCENE_EXTRA_DATA_LEN: usize = 1 + 8;
/// Jovian extraData: version 1, then the Holocene parameters and the minimum base fee (u64).
const JOVIAN_EXTRA_DATA_LEN: usize = 1 + 8 + 8;

/// The EIP-1559 parameters and minimum base fee the block's extraData must encode
/// (OP Stack specs, Holocene and Jovian exec-engine pages).
fn check_extra_data(attrs: &OpPayloadAttributes, extra: &[u8]) -> Result<(), Mismatch> {
    let Some(params) = attrs.eip_1559_params else {
        // Before Holocene, extraData is not derived from the attributes.
        return Ok(());
    };
    let (version, len) = match attrs.min_base_fee {
        Some(_) => (1u8, JOVIAN_EXTRA_DATA_LEN),
        None => (0u8, HOLOCENE_EXTRA_DATA_LEN),
    };
    if extra.len() != len || extra[0] != version {
        return differs(
            "extraData",
            format!("version {version}, {len} bytes"),
            alloy_primitives::hex::encode_prefixed(extra),
        );
    }
    // Zero parameters mean "the chain's configured defaults", which the attributes don't carry.
    if params != B64::ZERO {
        same("extraData (eip1559Params)", params.as_slice(), &extra[1..9])?;
    }
    if let Some(min_base_fee) = attrs.min_base_fee {
        let mut found = [0u8; 8];
        found.copy_from_slice(&extra[9..17]);
        same(
            "extraData (minBaseFee)",
            min_base_fee,
            u64::from_be_bytes(found),
        )?;
    }
    Ok(())
}

/// Checks `payload` against the block `request` asked for; the first differing field is named.
pub fn check(request: &BuildRequest, payload: &PayloadEnvelope) -> Result<(), Mismatch> {
    let attrs = &request.attributes;
    let base = &attrs.payload_attributes;
    same(
        "parentHash",
        request.forkchoice.head_block_hash,
        payload.parent_hash(),
    )?;
    same("timestamp", base.timestamp, payload.timestamp())?;
    same("prevRandao", base.prev_randao, payload.prev_randao())?;
    same(
        "feeRecipient",
        base.suggested_fee_recipient,
        payload.fee_recipient(),
    )?;
    if let Some(gas_limit) = attrs.gas_limit {
        same("gasLimit", gas_limit, payload.gas_limit())?;
    }
    if let Some(withdrawals) = &base.withdrawals {
        same("withdrawals", withdrawals.as_slice(), payload.withdrawals())?;
    }
    if let Some(root) = base.parent_beacon_block_root {
        same(
            "parentBeaconBlockRoot",
            root,
            payload.parent_beacon_block_root(),
        )?;
    }
    check_extra_data(attrs, payload.extra_data())?;
    let forced = attrs.transactions.as_deref().unwrap_or_default();
    let txs = payload.transactions();
    if txs.len() < forced.len() {
        return differs(
            "transactions",
            format!("at least the {} forced transactions", forced.len()),
            format!("{} transactions", txs.len()),
        );
    }
    if let Some(i) = forced.iter().zip(txs).position(|(a, b)| a != b) {
        return differs(
            "transactions",
            format!("forced transaction {i} = {}", forced[i]),
            format!("{}", txs[i]),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy_eips::eip4895::Withdrawal;
    use alloy_primitives::{Address, B256, Bytes};
    use alloy_rpc_types_engine::{
        BlobsBundleV1, ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3,
        PayloadAttributes,
    };
    use op_alloy_rpc_types_engine::{OpExecutionPayloadEnvelopeV4, OpExecutionPayloadV4};

    use super::*;

    fn jovian_extra(params: [u8; 8], min_base_fee: u64) -> Bytes {
        let mut extra = vec![1u8];
        extra.extend_from_slice(&params);
        extra.extend_from_slice(&min_base_fee.to_be_bytes());
        extra.into()
    }

    const PARAMS: [u8; 8] = [0, 0, 0, 50, 0, 0, 0, 6];

    fn request() -> BuildRequest {
        BuildRequest {
            forkchoice: ForkchoiceState {
                head_block_hash: B256::repeat_byte(1),
                ..Default::default()
            },
            attributes: OpPayloadAttributes {
                payload_attributes: PayloadAttributes {
                    timestamp: 1_800_000_000,
                    prev_randao: B256::repeat_byte(2),
                    suggested_fee_recipient: Address::repeat_byte(3),
                    withdrawals: Some(vec![]),
                    parent_beacon_block_root: Some(B256::repeat_byte(4)),
                    slot_number: None,
                    target_gas_limit: None,
                },
                transactions: Some(vec![Bytes::from_static(b"\x7e-l1-info")]),
                no_tx_pool: None,
                gas_limit: Some(30_000_000),
                eip_1559_params: Some(B64::from(PARAMS)),
                min_base_fee: Some(7),
            },
        }
    }

    /// The block a correct builder returns for [`request`], with one mempool transaction.
    fn matching() -> OpExecutionPayloadEnvelopeV4 {
        OpExecutionPayloadEnvelopeV4 {
            execution_payload: OpExecutionPayloadV4 {
                payload_inner: ExecutionPayloadV3 {
                    payload_inner: ExecutionPayloadV2 {
                        payload_inner: ExecutionPayloadV1 {
                            parent_hash: B256::repeat_byte(1),
                            fee_recipient: Address::repeat_byte(3),
                            state_root: B256::repeat_byte(9),
                            receipts_root: B256::ZERO,
                            logs_bloom: Default::default(),
                            prev_randao: B256::repeat_byte(2),
                            block_number: 10,
                            gas_limit: 30_000_000,
                            gas_used: 50_000,
                            timestamp: 1_800_000_000,
                            extra_data: jovian_extra(PARAMS, 7),
                            base_fee_per_gas: alloy_primitives::U256::from(7),
                            block_hash: B256::repeat_byte(5),
                            transactions: vec![
                                Bytes::from_static(b"\x7e-l1-info"),
                                Bytes::from_static(b"\x02-user"),
                            ],
                        },
                        withdrawals: vec![],
                    },
                    blob_gas_used: 0,
                    excess_blob_gas: 0,
                },
                withdrawals_root: B256::ZERO,
            },
            block_value: Default::default(),
            blobs_bundle: BlobsBundleV1::empty(),
            should_override_builder: false,
            parent_beacon_block_root: B256::repeat_byte(4),
            execution_requests: vec![],
        }
    }

    fn v1(e: &mut OpExecutionPayloadEnvelopeV4) -> &mut ExecutionPayloadV1 {
        &mut e
            .execution_payload
            .payload_inner
            .payload_inner
            .payload_inner
    }

    /// Applies `edit` to a matching payload and returns the field the check names.
    fn field_refused(edit: impl FnOnce(&mut OpExecutionPayloadEnvelopeV4)) -> &'static str {
        let mut e = matching();
        edit(&mut e);
        check(&request(), &PayloadEnvelope::V4(e))
            .expect_err("the edited payload must be refused")
            .field
    }

    /// Every block op-rbuilder (builder) and op-reth (local EL) really built in the recording
    /// (testdata/real-peers) passes the check against the FCU that started it: the check must
    /// never refuse a correct block of a real peer.
    #[test]
    fn every_recorded_op_rbuilder_and_op_reth_block_is_what_its_fcu_asked_for() {
        use std::collections::HashMap;

        use serde_json::Value;
        for (peer, recording) in [
            (
                "op-rbuilder",
                include_str!("../../../../testdata/real-peers/op-rbuilder-builder.engine.jsonl"),
            ),
            (
                "op-reth",
                include_str!("../../../../testdata/real-peers/op-reth-local-el.engine.jsonl"),
            ),
        ] {
            let mut requests: HashMap<String, BuildRequest> = HashMap::new();
            let mut checked = 0;
            for line in recording.lines() {
                let row: Value = serde_json::from_str(line).unwrap();
                let (req, res) = (&row["request"], &row["response"]["result"]);
                match req["method"].as_str().unwrap() {
                    "engine_forkchoiceUpdatedV3" if !req["params"][1].is_null() => {
                        let (state, attributes): (ForkchoiceState, OpPayloadAttributes) =
                            serde_json::from_value(req["params"].clone()).unwrap();
                        let id = res["payloadId"].as_str().unwrap().to_string();
                        requests.insert(
                            id,
                            BuildRequest {
                                forkchoice: state,
                                attributes,
                            },
                        );
                    }
                    "engine_getPayloadV4" => {
                        let id = req["params"][0].as_str().unwrap();
                        let raw = serde_json::value::to_raw_value(res).unwrap();
                        let payload =
                            PayloadEnvelope::parse(engine_api::PayloadVersion::V4, &raw).unwrap();
                        assert_eq!(
                            check(&requests[id], &payload),
                            Ok(()),
                            "{peer} block {}",
                            payload.block_number()
                        );
                        checked += 1;
                    }
                    _ => {}
                }
            }
            assert_eq!(checked, 18, "{peer}: every recorded getPayload was checked");
        }
    }

    #[test]
    fn the_block_op_node_asked_for_passes() {
        assert_eq!(check(&request(), &PayloadEnvelope::V4(matching())), Ok(()));
    }

    #[test]
    fn parent_hash() {
        assert_eq!(
            field_refused(|e| v1(e).parent_hash = B256::repeat_byte(0xaa)),
            "parentHash"
        );
    }

    #[test]
    fn timestamp() {
        assert_eq!(field_refused(|e| v1(e).timestamp += 1), "timestamp");
    }

    #[test]
    fn prev_randao() {
        assert_eq!(
            field_refused(|e| v1(e).prev_randao = B256::ZERO),
            "prevRandao"
        );
    }

    #[test]
    fn fee_recipient() {
        assert_eq!(
            field_refused(|e| v1(e).fee_recipient = Address::ZERO),
            "feeRecipient"
        );
    }

    #[test]
    fn gas_limit() {
        assert_eq!(field_refused(|e| v1(e).gas_limit = 60_000_000), "gasLimit");
    }

    #[test]
    fn withdrawals() {
        assert_eq!(
            field_refused(|e| e
                .execution_payload
                .payload_inner
                .payload_inner
                .withdrawals
                .push(Withdrawal::default())),
            "withdrawals"
        );
    }

    #[test]
    fn parent_beacon_block_root() {
        assert_eq!(
            field_refused(|e| e.parent_beacon_block_root = B256::ZERO),
            "parentBeaconBlockRoot"
        );
    }

    #[test]
    fn holocene_eip1559_params() {
        assert_eq!(
            field_refused(|e| v1(e).extra_data = jovian_extra([0, 0, 0, 250, 0, 0, 0, 6], 7)),
            "extraData (eip1559Params)"
        );
    }

    #[test]
    fn jovian_min_base_fee() {
        assert_eq!(
            field_refused(|e| v1(e).extra_data = jovian_extra(PARAMS, 8)),
            "extraData (minBaseFee)"
        );
        assert_eq!(
            field_refused(|e| v1(e).extra_data = jovian_extra(PARAMS, 7)[..9].to_vec().into()),
            "extraData",
            "a Holocene-shaped extraData where Jovian's was asked for"
        );
    }

    #[test]
    fn zero_eip1559_params_accept_the_chain_defaults() {
        let mut req = request();
        req.attributes.eip_1559_params = Some(B64::ZERO);
        assert_eq!(check(&req, &PayloadEnvelope::V4(matching())), Ok(()));
    }

    #[test]
    fn forced_transactions_are_the_exact_prefix() {
        assert_eq!(
            field_refused(|e| v1(e).transactions.swap(0, 1)),
            "transactions"
        );
        assert_eq!(
            field_refused(|e| v1(e).transactions.clear()),
            "transactions"
        );
    }
}
