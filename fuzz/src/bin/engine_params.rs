//! The params of the engine methods engine-mux reads itself (engine-mux's mux: forkchoice
//! state and OP payload attributes, getPayload's payload id, newPayload V3/V4 payloads).
//! Properties: a newPayload whose payload converts to a block re-encodes to params that convert
//! to the same block hash; forkchoice attributes that parse re-encode to the same attributes;
//! checking a builder's block against them (engine-mux's payload check) never panics.

use alloy_rpc_types_engine::{
    ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3, ForkchoiceState, PayloadId,
};
use engine_api::{PayloadEnvelope, jsonrpc};
use engine_mux::fuzzing::{BuildRequest, payload_check};
use engine_mux_fuzz::{new_payload_block_hash, new_payload_reencoded};
use op_alloy_rpc_types_engine::{OpExecutionPayloadEnvelopeV3, OpPayloadAttributes};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(req) = jsonrpc::parse_request(data) else {
            return;
        };
        let Some(params) = req.params else { return };
        match req.method.as_ref() {
            "engine_forkchoiceUpdatedV3" => {
                // Exactly as the mux reads them: with attributes, else the state alone.
                let parsed =
                    serde_json::from_str::<(ForkchoiceState, Option<OpPayloadAttributes>)>(
                        params.get(),
                    )
                    .or_else(|_| {
                        serde_json::from_str::<(ForkchoiceState,)>(params.get())
                            .map(|(s,)| (s, None))
                    });
                let Ok((state, attrs)) = parsed else { return };
                let again = serde_json::to_string(&(state, &attrs)).expect("re-encodes");
                let (state2, attrs2): (ForkchoiceState, Option<OpPayloadAttributes>) =
                    serde_json::from_str(&again).expect("re-encoded params parse");
                assert_eq!(state, state2);
                assert_eq!(attrs, attrs2);
                if let Some(attributes) = attrs {
                    // A builder block built on these attributes, checked before proposing it.
                    let request = BuildRequest {
                        forkchoice: state,
                        attributes,
                    };
                    // A builder block made to match them, so the check reads every field.
                    let a = &request.attributes;
                    let payload = ExecutionPayloadV3 {
                        payload_inner: ExecutionPayloadV2 {
                            payload_inner: ExecutionPayloadV1 {
                                parent_hash: state.head_block_hash,
                                fee_recipient: a.payload_attributes.suggested_fee_recipient,
                                state_root: Default::default(),
                                receipts_root: Default::default(),
                                logs_bloom: Default::default(),
                                prev_randao: a.payload_attributes.prev_randao,
                                block_number: 1,
                                gas_limit: a.gas_limit.unwrap_or_default(),
                                gas_used: 0,
                                timestamp: a.payload_attributes.timestamp,
                                extra_data: Default::default(),
                                base_fee_per_gas: Default::default(),
                                block_hash: Default::default(),
                                transactions: a.transactions.clone().unwrap_or_default(),
                            },
                            withdrawals: a
                                .payload_attributes
                                .withdrawals
                                .clone()
                                .unwrap_or_default(),
                        },
                        blob_gas_used: 0,
                        excess_blob_gas: 0,
                    };
                    let envelope = PayloadEnvelope::V3(OpExecutionPayloadEnvelopeV3 {
                        execution_payload: payload,
                        block_value: Default::default(),
                        blobs_bundle: Default::default(),
                        should_override_builder: false,
                        parent_beacon_block_root: a
                            .payload_attributes
                            .parent_beacon_block_root
                            .unwrap_or_default(),
                    });
                    let _ = payload_check::check(&request, &envelope);
                }
            }
            m if m.starts_with("engine_getPayload") => {
                if let Ok((id,)) = serde_json::from_str::<(PayloadId,)>(params.get()) {
                    let text = serde_json::to_string(&(id,)).expect("re-encodes");
                    assert_eq!(serde_json::from_str::<(PayloadId,)>(&text).unwrap().0, id);
                }
            }
            m @ ("engine_newPayloadV3" | "engine_newPayloadV4") => {
                let v4 = m.ends_with("V4");
                let Some(hash) = new_payload_block_hash(params.get(), v4) else {
                    return;
                };
                let again =
                    new_payload_reencoded(params.get(), v4).expect("converted params parse");
                assert_eq!(
                    new_payload_block_hash(&again, v4),
                    Some(hash),
                    "re-encoded params stand for another block"
                );
            }
            _ => {}
        }
    });
}
