//! Blocks for the selection tests: real ones, recorded from op-rbuilder.

use engine_api::{PayloadEnvelope, PayloadVersion};

/// The envelope of a recorded op-rbuilder block that pays tips (so a block value has room under
/// its cap), with `gasUsed` and `blockValue` set as the case needs.
pub(crate) fn raw_block(gas_used: u64, value: u64) -> Box<serde_json::value::RawValue> {
    let mut result =
        include_str!("../../../../testdata/real-peers/op-rbuilder-builder.engine.jsonl")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|row| row["request"]["method"] == "engine_getPayloadV4")
            .map(|row| row["response"]["result"].clone())
            .find(|result| result["blockValue"] != "0x0")
            .unwrap();
    result["executionPayload"]["gasUsed"] = serde_json::json!(format!("{gas_used:#x}"));
    result["blockValue"] = serde_json::json!(format!("{value:#x}"));
    serde_json::value::to_raw_value(&result).unwrap()
}

/// The same, typed.
pub(crate) fn block(gas_used: u64, value: u64) -> PayloadEnvelope {
    PayloadEnvelope::parse(PayloadVersion::V4, &raw_block(gas_used, value)).unwrap()
}
