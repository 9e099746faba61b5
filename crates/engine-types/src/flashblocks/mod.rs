//! Flashblocks assembly: a contiguous run of `OpFlashblockPayload`s (index 0 carries the base,
//! each diff adds transactions and withdrawals and restates the cumulative roots, gas and
//! hash) turned into the payload envelope `engine_getPayload` would have returned.
//! Spec: specs.optimism.io protocol/flashblocks.md.

use std::{borrow::Cow, io::Read};

use alloy_primitives::U256;
use alloy_rpc_types_engine::{
    BlobsBundleV1, ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3,
};
use op_alloy_rpc_types_engine::{
    OpExecutionPayloadEnvelopeV3, OpExecutionPayloadEnvelopeV4, OpExecutionPayloadV4,
    OpFlashblockPayload,
};

use crate::payload::{PayloadEnvelope, PayloadVersion};

mod sequence;

pub use sequence::{Order, OrderError, Sequence};

/// Why a run of flashblocks does not form a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// No flashblocks at all.
    #[error("no flashblocks")]
    Empty,
    /// Index 0 is missing its base, or a later index carries one.
    #[error("flashblock {index}: base must be present exactly at index 0")]
    Base {
        /// The offending index.
        index: u64,
    },
    /// Indices are not 0, 1, 2, ... or the payload id changes.
    #[error("flashblock {found} where {expected} was expected (same payload, consecutive indices)")]
    NotContiguous {
        /// Expected index.
        expected: u64,
        /// Found index.
        found: u64,
    },
}

/// Parses one flashblock frame. op-alloy's metadata type requires `receipts` and
/// `new_account_balances`, but streams such as Base's now send only `block_number`; such a
/// frame is a valid flashblock (the metadata is informational), so missing maps default to empty.
pub fn parse(frame: &[u8]) -> Result<OpFlashblockPayload, serde_json::Error> {
    serde_json::from_slice(frame).or_else(|strict| {
        // The common case parsed above in one pass; only frames that failed pay for this.
        let mut value: serde_json::Value = serde_json::from_slice(frame).map_err(|_| strict)?;
        if let Some(metadata) = value
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        {
            for key in ["receipts", "new_account_balances"] {
                metadata
                    .entry(key)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
            }
        }
        serde_json::from_value(value)
    })
}

/// Why a WebSocket frame of a flashblocks stream yields no JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A binary frame that is neither JSON nor a valid Brotli stream.
    #[error("binary frame is neither JSON nor Brotli")]
    NotBrotli,
    /// The decompressed message would exceed the limit.
    #[error("decompressed frame exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// The JSON text carried by one frame of a flashblocks stream. Streams send it three ways: a
/// text frame (op-rbuilder, engine-mux), a binary frame holding the JSON bytes, or a binary frame
/// holding Brotli-compressed JSON (websocket-proxy with `--enable-compression`, Base's public
/// stream). A binary frame whose first non-whitespace byte is `{` is JSON (a non-empty Brotli
/// stream written with the 4 MiB window those proxies use cannot start with `{`); anything else
/// is decompressed, producing at most `limit` bytes (a larger result is an error, never held
/// in memory beyond `limit + 1` bytes).
pub fn frame_json(binary: bool, data: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, FrameError> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if !binary || first == Some(&b'{') {
        return if data.len() > limit {
            Err(FrameError::TooLarge { limit })
        } else {
            Ok(Cow::Borrowed(data))
        };
    }
    brotli_decompress(data, limit).map(Cow::Owned)
}

/// Decompresses a Brotli stream into at most `limit` bytes.
pub fn brotli_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    let mut reader = brotli::Decompressor::new(data, 4096).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|_| FrameError::NotBrotli)?;
    if out.len() > limit {
        return Err(FrameError::TooLarge { limit });
    }
    Ok(out)
}

/// Assembles `flashblocks` (indices 0..n of one payload, in order) into an envelope of `version`.
pub fn assemble(
    flashblocks: &[OpFlashblockPayload],
    version: PayloadVersion,
) -> Result<PayloadEnvelope, AssembleError> {
    let first = flashblocks.first().ok_or(AssembleError::Empty)?;
    let base = first
        .base
        .as_ref()
        .ok_or(AssembleError::Base { index: first.index })?;
    let mut sequence = Sequence::new(first.payload_id, u64::MAX);
    for fb in flashblocks {
        match sequence.check(fb) {
            Ok(Order::Next) => sequence.advance(),
            Err(OrderError::Base { index }) => return Err(AssembleError::Base { index }),
            Ok(Order::Seen { .. })
            | Err(
                OrderError::Payload { .. } | OrderError::Gap { .. } | OrderError::TooMany { .. },
            ) => {
                return Err(AssembleError::NotContiguous {
                    expected: sequence.next(),
                    found: fb.index,
                });
            }
        }
    }
    let last = &flashblocks[flashblocks.len() - 1].diff;
    let payload = ExecutionPayloadV3 {
        payload_inner: ExecutionPayloadV2 {
            payload_inner: ExecutionPayloadV1 {
                parent_hash: base.parent_hash,
                fee_recipient: base.fee_recipient,
                state_root: last.state_root,
                receipts_root: last.receipts_root,
                logs_bloom: last.logs_bloom,
                prev_randao: base.prev_randao,
                block_number: base.block_number,
                gas_limit: base.gas_limit,
                gas_used: last.gas_used,
                timestamp: base.timestamp,
                extra_data: base.extra_data.clone(),
                base_fee_per_gas: base.base_fee_per_gas,
                block_hash: last.block_hash,
                transactions: flashblocks
                    .iter()
                    .flat_map(|fb| fb.diff.transactions.iter().cloned())
                    .collect(),
            },
            withdrawals: flashblocks
                .iter()
                .flat_map(|fb| fb.diff.withdrawals.iter().cloned())
                .collect(),
        },
        blob_gas_used: last.blob_gas_used.unwrap_or_default(),
        // OP Stack blocks carry no blobs.
        excess_blob_gas: 0,
    };
    Ok(match version {
        PayloadVersion::V3 => PayloadEnvelope::V3(OpExecutionPayloadEnvelopeV3 {
            execution_payload: payload,
            block_value: U256::ZERO,
            blobs_bundle: BlobsBundleV1::empty(),
            should_override_builder: false,
            parent_beacon_block_root: base.parent_beacon_block_root,
        }),
        PayloadVersion::V4 | PayloadVersion::V5 => {
            PayloadEnvelope::V4(OpExecutionPayloadEnvelopeV4 {
                execution_payload: OpExecutionPayloadV4 {
                    payload_inner: payload,
                    withdrawals_root: last.withdrawals_root,
                },
                block_value: U256::ZERO,
                blobs_bundle: BlobsBundleV1::empty(),
                should_override_builder: false,
                parent_beacon_block_root: base.parent_beacon_block_root,
                execution_requests: Vec::new(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{B256, Bytes};
    use alloy_rpc_types_engine::PayloadId;
    use op_alloy_rpc_types_engine::{OpFlashblockPayloadBase, OpFlashblockPayloadDelta};

    use super::*;

    fn fb(index: u64, txs: &[u8]) -> OpFlashblockPayload {
        OpFlashblockPayload {
            payload_id: PayloadId::new([4; 8]),
            index,
            base: (index == 0).then(|| OpFlashblockPayloadBase {
                parent_hash: B256::repeat_byte(1),
                block_number: 7,
                gas_limit: 30_000_000,
                timestamp: 1_700_000_000,
                parent_beacon_block_root: B256::repeat_byte(2),
                ..Default::default()
            }),
            diff: OpFlashblockPayloadDelta {
                state_root: B256::repeat_byte(10 + index as u8),
                block_hash: B256::repeat_byte(20 + index as u8),
                gas_used: 21_000 * (index + 1),
                transactions: txs.iter().map(|t| Bytes::from(vec![*t])).collect(),
                withdrawals_root: B256::repeat_byte(30 + index as u8),
                ..Default::default()
            },
            metadata: Default::default(),
        }
    }

    #[test]
    fn base_from_index_zero_roots_from_the_last_diff_transactions_concatenated() {
        let env = assemble(
            &[fb(0, &[1]), fb(1, &[2, 3]), fb(2, &[4])],
            PayloadVersion::V4,
        )
        .unwrap();
        assert_eq!(env.block_number(), 7);
        assert_eq!(env.block_hash(), B256::repeat_byte(22));
        assert_eq!(env.gas_used(), 63_000);
        assert_eq!(env.tx_count(), 4);
        assert_eq!(env.parent_beacon_block_root(), B256::repeat_byte(2));
        let PayloadEnvelope::V4(v4) = env else {
            panic!("V4 asked")
        };
        assert_eq!(v4.execution_payload.withdrawals_root, B256::repeat_byte(32));
        let txs = &v4
            .execution_payload
            .payload_inner
            .payload_inner
            .payload_inner
            .transactions;
        assert_eq!(
            txs.iter().map(|t| t[0]).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }

    /// Every frame op-rbuilder v0.4.0 really sent (recorded in testdata/real-peers)
    /// parses, and a Base-style frame whose metadata is only `block_number` parses too.
    #[test]
    fn real_op_rbuilder_frames_and_base_metadata_only_frames_parse() {
        let recorded =
            include_str!("../../../../testdata/real-peers/op-rbuilder.flashblocks.jsonl");
        let mut n = 0;
        for line in recorded.lines().filter(|l| !l.trim().is_empty()) {
            let fb = parse(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(fb.metadata.block_number > 0);
            n += 1;
        }
        assert!(n > 10, "the recording has {n} frames");

        let mut base: serde_json::Value =
            serde_json::from_str(recorded.lines().next().unwrap()).unwrap();
        base["metadata"] = serde_json::json!({ "block_number": 8 });
        let raw = serde_json::to_vec(&base).unwrap();
        assert!(
            serde_json::from_slice::<OpFlashblockPayload>(&raw).is_err(),
            "op-alloy alone refuses it"
        );
        let fb = parse(&raw).unwrap();
        assert_eq!(fb.metadata.block_number, 8);
        assert!(fb.metadata.receipts.is_empty() && fb.metadata.new_account_balances.is_empty());
        assert!(parse(b"{\"metadata\": 1}").is_err());
        assert!(parse(b"garbage").is_err());
    }

    fn brotli(data: &[u8], quality: u32, lgwin: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, quality, lgwin);
            std::io::Write::write_all(&mut w, data).unwrap();
        }
        out
    }

    #[test]
    fn frames_decode_as_text_binary_json_or_brotli_within_the_limit() {
        let json = br#"{"payload_id":"0x0000000000000001","index":0}"#;
        assert_eq!(frame_json(false, json, 1024).unwrap(), &json[..]);
        assert_eq!(frame_json(true, json, 1024).unwrap(), &json[..]);
        let padded = [&b" \n"[..], json].concat();
        assert_eq!(frame_json(true, &padded, 1024).unwrap(), &padded[..]);
        // websocket-proxy's settings (quality 5, window 22) and others all decode.
        for (quality, lgwin) in [(5, 22), (11, 24), (1, 10), (0, 16)] {
            let c = brotli(json, quality, lgwin);
            assert_ne!(c.first(), Some(&b'{'));
            assert_eq!(
                frame_json(true, &c, 1024).unwrap(),
                &json[..],
                "{quality}/{lgwin}"
            );
        }
        // A text frame is never decompressed.
        assert_eq!(frame_json(false, b"nope", 10).unwrap(), &b"nope"[..]);
        assert_eq!(
            frame_json(true, b"\xff\x00garbage", 1024),
            Err(FrameError::NotBrotli)
        );
        assert_eq!(frame_json(true, &[], 1024), Err(FrameError::NotBrotli));
        // A small frame that inflates beyond the limit is refused without inflating it all.
        let bomb = brotli(&vec![b'a'; 64 << 20], 5, 22);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        assert_eq!(
            frame_json(true, &bomb, 1 << 20),
            Err(FrameError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(
            frame_json(false, json, 4),
            Err(FrameError::TooLarge { limit: 4 })
        );
    }

    #[test]
    fn broken_runs_are_refused() {
        assert_eq!(assemble(&[], PayloadVersion::V3), Err(AssembleError::Empty));
        assert_eq!(
            assemble(&[fb(1, &[])], PayloadVersion::V3),
            Err(AssembleError::Base { index: 1 })
        );
        assert_eq!(
            assemble(&[fb(0, &[]), fb(2, &[])], PayloadVersion::V3),
            Err(AssembleError::NotContiguous {
                expected: 1,
                found: 2
            })
        );
        let mut second_base = fb(1, &[]);
        second_base.base = fb(0, &[]).base;
        assert_eq!(
            assemble(&[fb(0, &[]), second_base], PayloadVersion::V3),
            Err(AssembleError::Base { index: 1 })
        );
    }
}
