//! Versioned payload helpers: which `engine_getPayload` version pairs with which
//! `engine_newPayload`, and a typed view of a payload envelope for validation and selection.

use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::{Address, B256, Bytes, U256};
use op_alloy_rpc_types_engine::{OpExecutionPayloadEnvelopeV3, OpExecutionPayloadEnvelopeV4};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Engine API payload version, taken from the method name's suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadVersion {
    /// Ecotone: `engine_getPayloadV3` / `engine_newPayloadV3`.
    V3,
    /// Isthmus: `engine_getPayloadV4` / `engine_newPayloadV4`.
    V4,
    /// Osaka-era `engine_getPayloadV5`; its payload is validated with `engine_newPayloadV4`.
    V5,
}

impl PayloadVersion {
    /// The version of a `engine_getPayloadVn` method, if it is one we handle.
    pub fn of_get_payload(method: &str) -> Option<Self> {
        match method {
            "engine_getPayloadV3" => Some(Self::V3),
            "engine_getPayloadV4" => Some(Self::V4),
            "engine_getPayloadV5" => Some(Self::V5),
            _ => None,
        }
    }

    /// The `engine_getPayload` method of this version.
    pub fn get_payload_method(self) -> &'static str {
        match self {
            Self::V3 => "engine_getPayloadV3",
            Self::V4 => "engine_getPayloadV4",
            Self::V5 => "engine_getPayloadV5",
        }
    }

    /// The `engine_newPayload` method that validates a payload of this version.
    pub fn new_payload_method(self) -> &'static str {
        match self {
            Self::V3 => "engine_newPayloadV3",
            Self::V4 | Self::V5 => "engine_newPayloadV4",
        }
    }

    /// Short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3 => "v3",
            Self::V4 => "v4",
            Self::V5 => "v5",
        }
    }
}

/// A typed payload envelope as returned by `engine_getPayloadV3/V4/V5`.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum PayloadEnvelope {
    /// Ecotone envelope.
    V3(OpExecutionPayloadEnvelopeV3),
    /// Isthmus envelope (also used for V5, whose OP shape is the same).
    V4(OpExecutionPayloadEnvelopeV4),
}

impl PayloadEnvelope {
    /// Parses a raw `getPayload` result of `version`.
    pub fn parse(version: PayloadVersion, raw: &RawValue) -> Result<Self, serde_json::Error> {
        Ok(match version {
            PayloadVersion::V3 => Self::V3(serde_json::from_str(raw.get())?),
            PayloadVersion::V4 | PayloadVersion::V5 => Self::V4(serde_json::from_str(raw.get())?),
        })
    }

    fn inner(&self) -> &alloy_rpc_types_engine::ExecutionPayloadV1 {
        match self {
            Self::V3(e) => &e.execution_payload.payload_inner.payload_inner,
            Self::V4(e) => {
                &e.execution_payload
                    .payload_inner
                    .payload_inner
                    .payload_inner
            }
        }
    }

    /// The block hash the payload claims.
    pub fn block_hash(&self) -> B256 {
        self.inner().block_hash
    }

    /// The parent hash.
    pub fn parent_hash(&self) -> B256 {
        self.inner().parent_hash
    }

    /// The block number.
    pub fn block_number(&self) -> u64 {
        self.inner().block_number
    }

    /// The value the builder reports for the block (`blockValue`; not checked by newPayload).
    pub fn block_value(&self) -> U256 {
        match self {
            Self::V3(e) => e.block_value,
            Self::V4(e) => e.block_value,
        }
    }

    /// The block's base fee per gas.
    pub fn base_fee_per_gas(&self) -> U256 {
        self.inner().base_fee_per_gas
    }

    /// Gas used by the block.
    pub fn gas_used(&self) -> u64 {
        self.inner().gas_used
    }

    /// The state root the payload claims (zero from a builder that leaves it to the sequencer's
    /// EL: `--external-state-root`).
    pub fn state_root(&self) -> B256 {
        self.inner().state_root
    }

    /// The block's timestamp.
    pub fn timestamp(&self) -> u64 {
        self.inner().timestamp
    }

    /// The block's fee recipient.
    pub fn fee_recipient(&self) -> Address {
        self.inner().fee_recipient
    }

    /// The block's `prevRandao`.
    pub fn prev_randao(&self) -> B256 {
        self.inner().prev_randao
    }

    /// The block's gas limit.
    pub fn gas_limit(&self) -> u64 {
        self.inner().gas_limit
    }

    /// The block's extra data (Holocene EIP-1559 parameters, Jovian minimum base fee).
    pub fn extra_data(&self) -> &Bytes {
        &self.inner().extra_data
    }

    /// The block's withdrawals (always empty on OP Stack chains).
    pub fn withdrawals(&self) -> &[Withdrawal] {
        match self {
            Self::V3(e) => &e.execution_payload.payload_inner.withdrawals,
            Self::V4(e) => &e.execution_payload.payload_inner.payload_inner.withdrawals,
        }
    }

    /// Number of transactions.
    pub fn tx_count(&self) -> usize {
        self.inner().transactions.len()
    }

    /// The block's transactions, EIP-2718 encoded.
    pub fn transactions(&self) -> &[Bytes] {
        &self.inner().transactions
    }

    /// The envelope as the JSON `engine_getPayload` answers with.
    pub fn to_raw(&self) -> serde_json::Result<Box<RawValue>> {
        match self {
            Self::V3(e) => serde_json::value::to_raw_value(e),
            Self::V4(e) => serde_json::value::to_raw_value(e),
        }
    }

    /// The parent beacon block root from the envelope.
    pub fn parent_beacon_block_root(&self) -> B256 {
        match self {
            Self::V3(e) => e.parent_beacon_block_root,
            Self::V4(e) => e.parent_beacon_block_root,
        }
    }

    /// The `engine_newPayload` params that submit this payload for validation.
    /// OP Stack blocks carry no blobs, so the versioned hashes are always empty.
    pub fn new_payload_params(&self) -> serde_json::Result<Box<RawValue>> {
        let no_blobs: [B256; 0] = [];
        match self {
            Self::V3(e) => serde_json::value::to_raw_value(&(
                &e.execution_payload,
                no_blobs,
                e.parent_beacon_block_root,
            )),
            Self::V4(e) => {
                let requests: &[Bytes] = &e.execution_requests;
                serde_json::value::to_raw_value(&(
                    &e.execution_payload,
                    no_blobs,
                    e.parent_beacon_block_root,
                    requests,
                ))
            }
        }
    }
}

/// The parts of a raw `getPayload` envelope that `engine_newPayload` carries, borrowed from it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPayloadParts<'a> {
    #[serde(borrow)]
    execution_payload: &'a RawValue,
    parent_beacon_block_root: B256,
    #[serde(borrow, default)]
    execution_requests: Option<&'a RawValue>,
}

/// The `engine_newPayload` params that submit the payload of the raw `getPayload` envelope
/// `raw` (of `version`) for validation, built from the envelope's own JSON: its
/// `executionPayload` is carried byte for byte, so the block validated is exactly the block in
/// `raw` (what op-node is answered with), and nothing is decoded or re-encoded. OP Stack blocks
/// carry no blobs, so the versioned hashes are always empty. V4/V5 envelopes must carry
/// `executionRequests`, as their typed form does.
pub fn new_payload_params_raw(
    version: PayloadVersion,
    raw: &RawValue,
) -> serde_json::Result<Box<RawValue>> {
    let parts: NewPayloadParts<'_> = serde_json::from_str(raw.get())?;
    let no_blobs: [B256; 0] = [];
    match version {
        PayloadVersion::V3 => serde_json::value::to_raw_value(&(
            parts.execution_payload,
            no_blobs,
            parts.parent_beacon_block_root,
        )),
        PayloadVersion::V4 | PayloadVersion::V5 => {
            let requests = parts.execution_requests.ok_or_else(|| {
                <serde_json::Error as serde::de::Error>::missing_field("executionRequests")
            })?;
            serde_json::value::to_raw_value(&(
                parts.execution_payload,
                no_blobs,
                parts.parent_beacon_block_root,
                requests,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every `getPayload` answer recorded from op-reth and op-rbuilder (testdata/real-peers).
    fn recorded_envelopes() -> Vec<(PayloadVersion, Box<RawValue>)> {
        let mut out = Vec::new();
        for file in [
            include_str!("../../../testdata/real-peers/op-rbuilder-builder.engine.jsonl"),
            include_str!("../../../testdata/real-peers/op-reth-local-el.engine.jsonl"),
        ] {
            for line in file.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                let Some(version) = v["request"]["method"]
                    .as_str()
                    .and_then(PayloadVersion::of_get_payload)
                else {
                    continue;
                };
                let result = &v["response"]["result"];
                if result.is_object() {
                    out.push((version, serde_json::value::to_raw_value(result).unwrap()));
                }
            }
        }
        assert!(out.len() >= 30, "{} recorded envelopes", out.len());
        out
    }

    #[test]
    fn raw_new_payload_params_agree_with_the_typed_ones_on_recorded_payloads() {
        for (version, raw) in recorded_envelopes() {
            let envelope = PayloadEnvelope::parse(version, &raw).unwrap();
            let typed = envelope.new_payload_params().unwrap();
            let from_raw = new_payload_params_raw(version, &raw).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(from_raw.get()).unwrap(),
                serde_json::from_str::<Value>(typed.get()).unwrap(),
                "block {}",
                envelope.block_number()
            );
            // The payload validated is the builder's JSON byte for byte.
            let sent: Vec<&RawValue> = serde_json::from_str(from_raw.get()).unwrap();
            let parts: NewPayloadParts<'_> = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(sent[0].get(), parts.execution_payload.get());
        }
    }

    #[test]
    fn raw_new_payload_params_refuse_malformed_envelopes() {
        let (_, raw) = recorded_envelopes().remove(0);
        let mut v: Value = serde_json::from_str(raw.get()).unwrap();
        v.as_object_mut().unwrap().remove("executionRequests");
        let without_requests = serde_json::value::to_raw_value(&v).unwrap();
        assert!(new_payload_params_raw(PayloadVersion::V4, &without_requests).is_err());
        assert!(new_payload_params_raw(PayloadVersion::V3, &without_requests).is_ok());
        for garbage in [
            "null",
            "[]",
            "\"0x\"",
            r#"{"executionPayload":{}}"#,
            r#"{"executionPayload":{},"parentBeaconBlockRoot":"0x12"}"#,
        ] {
            let raw = RawValue::from_string(garbage.to_owned()).unwrap();
            for version in [PayloadVersion::V3, PayloadVersion::V4, PayloadVersion::V5] {
                assert!(new_payload_params_raw(version, &raw).is_err(), "{garbage}");
            }
        }
    }
}
