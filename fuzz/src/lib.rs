//! Helpers the fuzz targets share: the block hash a payload stands for, computed the way an
//! execution client computes it, and small input-splitting utilities.

use alloy_primitives::{B256, Bytes};
use alloy_rpc_types_engine::{CancunPayloadFields, ExecutionPayloadV3, PraguePayloadFields};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::{
    OpExecutionPayload, OpExecutionPayloadSidecar, OpExecutionPayloadV4,
};

/// Payload fields an `engine_newPayload` call carries besides the payload itself.
pub struct Sidecar<'a> {
    /// The parent beacon block root (third param).
    pub parent_beacon_block_root: B256,
    /// Execution requests (fourth param of V4), `None` for V3.
    pub requests: Option<&'a [Bytes]>,
}

fn sidecar(s: &Sidecar<'_>) -> OpExecutionPayloadSidecar {
    let cancun = CancunPayloadFields::new(s.parent_beacon_block_root, Vec::new());
    match s.requests {
        None => OpExecutionPayloadSidecar::v3(cancun),
        Some(r) => OpExecutionPayloadSidecar::v4(
            cancun,
            PraguePayloadFields::new(alloy_eips::eip7685::Requests::new(r.to_vec())),
        ),
    }
}

/// The hash of the block a V3 payload converts to (op-alloy's payload-to-block conversion, as
/// op-reth does before comparing with the claimed hash), or `None` when it does not convert.
pub fn block_hash_v3(payload: &ExecutionPayloadV3, s: &Sidecar<'_>) -> Option<B256> {
    OpExecutionPayload::V3(payload.clone())
        .try_into_block_with_sidecar::<OpTxEnvelope>(&sidecar(s))
        .ok()
        .map(|b| b.header.hash_slow())
}

/// As [`block_hash_v3`] for an Isthmus payload.
pub fn block_hash_v4(payload: &OpExecutionPayloadV4, s: &Sidecar<'_>) -> Option<B256> {
    OpExecutionPayload::V4(payload.clone())
        .try_into_block_with_sidecar::<OpTxEnvelope>(&sidecar(s))
        .ok()
        .map(|b| b.header.hash_slow())
}

/// The hash of the block `engine_newPayloadV3/V4` params stand for, when they parse and
/// convert; `v4` picks the four-param form.
pub fn new_payload_block_hash(params: &str, v4: bool) -> Option<B256> {
    if v4 {
        let (p, _hashes, root, requests): (OpExecutionPayloadV4, Vec<B256>, B256, Vec<Bytes>) =
            serde_json::from_str(params).ok()?;
        block_hash_v4(
            &p,
            &Sidecar {
                parent_beacon_block_root: root,
                requests: Some(&requests),
            },
        )
    } else {
        let (p, _hashes, root): (ExecutionPayloadV3, Vec<B256>, B256) =
            serde_json::from_str(params).ok()?;
        block_hash_v3(
            &p,
            &Sidecar {
                parent_beacon_block_root: root,
                requests: None,
            },
        )
    }
}

/// The params parsed into their typed form and serialized again, when they parse.
pub fn new_payload_reencoded(params: &str, v4: bool) -> Option<String> {
    if v4 {
        let p: (OpExecutionPayloadV4, Vec<B256>, B256, Vec<Bytes>) =
            serde_json::from_str(params).ok()?;
        serde_json::to_string(&p).ok()
    } else {
        let p: (ExecutionPayloadV3, Vec<B256>, B256) = serde_json::from_str(params).ok()?;
        serde_json::to_string(&p).ok()
    }
}

/// Splits `data` into a selector byte and the rest (`0` and empty input when `data` is empty).
pub fn split_first(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, &[]),
    }
}

/// The properties of a `getPayload` envelope of `version` as engine-mux reads it: one that
/// parses re-encodes to the same envelope and the same block hash; the newPayload params built
/// from its typed form and from its raw JSON stand for the same block.
pub fn check_envelope(version: engine_api::PayloadVersion, raw: &serde_json::value::RawValue) {
    use engine_api::{PayloadEnvelope, PayloadVersion, payload::new_payload_params_raw};
    let Ok(envelope) = PayloadEnvelope::parse(version, raw) else {
        return;
    };
    let _ = (
        envelope.block_value(),
        envelope.tx_count(),
        envelope.base_fee_per_gas(),
    );
    let again = envelope.to_raw().expect("a parsed envelope serializes");
    let reparsed = PayloadEnvelope::parse(version, &again).expect("re-encoded envelope parses");
    assert_eq!(reparsed, envelope, "envelope changed through re-encoding");
    let v4 = version != PayloadVersion::V3;
    let typed = envelope
        .new_payload_params()
        .expect("params of a parsed envelope serialize");
    let hash = new_payload_block_hash(typed.get(), v4);
    let reparsed_params = reparsed.new_payload_params().expect("serialize");
    assert_eq!(
        new_payload_block_hash(reparsed_params.get(), v4),
        hash,
        "re-encoded envelope converts to another block"
    );
    if let Ok(from_raw) = new_payload_params_raw(version, raw) {
        assert_eq!(
            new_payload_block_hash(from_raw.get(), v4),
            hash,
            "raw and typed newPayload params stand for different blocks"
        );
    }
}
