//! The blocks and payloads a mock serves, shaped as op-geth, op-reth and op-rbuilder build them:
//! block hashes that carry the mock's tag, getPayload envelopes built as the FCU's attributes
//! asked, op-rbuilder's derived payload ids, full blocks for catch-up.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, Bloom, Bytes as EthBytes, U256};
use alloy_rpc_types_engine::{
    BlobsBundleV1, ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3,
};
use op_alloy_rpc_types_engine::{
    OpExecutionPayloadEnvelopeV3, OpExecutionPayloadEnvelopeV4, OpExecutionPayloadV4,
};
use serde_json::{Value, json};

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Block `number`'s hash on a chain whose hashes carry `tag`.
pub(crate) fn block_hash(tag: u8, number: u64) -> B256 {
    let mut h = [tag; 32];
    h[24..].copy_from_slice(&number.to_be_bytes());
    B256::from(h)
}

/// The getPayloadV3/V4 result for the build `fcu` started: block `number`, 100 pool transactions
/// unless `noTxPool`, built as the attributes asked.
pub(crate) fn get_payload_result(
    tag: u8,
    method: &str,
    number: u64,
    no_pool: bool,
    gas_used: u64,
    fcu: &Value,
    tamper: Option<fn(&mut ExecutionPayloadV3)>,
) -> Value {
    let mut hash = block_hash(tag, number);
    if no_pool {
        hash.0[0] = 0xee;
    }
    let pool_txs = if no_pool { 0 } else { 100 };
    let mut payload = payload_v3(hash, number, gas_used, pool_txs);
    built_as_asked(&mut payload, fcu);
    if let Some(tamper) = tamper {
        tamper(&mut payload);
    }
    let beacon_root: B256 =
        serde_json::from_value(fcu[1]["parentBeaconBlockRoot"].clone()).unwrap_or_default();
    let result = if method == "engine_getPayloadV3" {
        serde_json::to_value(OpExecutionPayloadEnvelopeV3 {
            execution_payload: payload,
            block_value: U256::from(1u64),
            blobs_bundle: BlobsBundleV1::empty(),
            should_override_builder: false,
            parent_beacon_block_root: beacon_root,
        })
    } else {
        serde_json::to_value(OpExecutionPayloadEnvelopeV4 {
            execution_payload: OpExecutionPayloadV4 {
                payload_inner: payload,
                withdrawals_root: B256::repeat_byte(0x66),
            },
            block_value: U256::from(1u64),
            blobs_bundle: BlobsBundleV1::empty(),
            should_override_builder: false,
            parent_beacon_block_root: beacon_root,
            execution_requests: vec![],
        })
    };
    result.unwrap_or(Value::Null)
}

/// The payload id a builder derives for an FCU's head and attributes, with `version` as its
/// first byte; `None` when the params do not parse.
pub(crate) fn derived_payload_id(params: &Value, version: u8) -> Option<String> {
    let head: B256 = serde_json::from_value(params[0]["headBlockHash"].clone()).ok()?;
    let attributes: op_alloy_rpc_types_engine::OpPayloadAttributes =
        serde_json::from_value(params[1].clone()).ok()?;
    Some(attributes.payload_id(&head, version).to_string())
}

/// A payload with `txs` dummy transactions; the 100-transaction shape the benchmark uses too.
pub fn payload_v3(hash: B256, number: u64, gas_used: u64, txs: usize) -> ExecutionPayloadV3 {
    ExecutionPayloadV3 {
        payload_inner: ExecutionPayloadV2 {
            payload_inner: ExecutionPayloadV1 {
                parent_hash: B256::repeat_byte(0x11),
                fee_recipient: Address::repeat_byte(0x22),
                state_root: B256::repeat_byte(0x33),
                receipts_root: B256::repeat_byte(0x44),
                logs_bloom: Bloom::default(),
                prev_randao: B256::ZERO,
                block_number: number,
                gas_limit: 30_000_000,
                gas_used,
                timestamp: now(),
                extra_data: EthBytes::new(),
                base_fee_per_gas: U256::from(1_000_000u64),
                block_hash: hash,
                transactions: (0..txs)
                    .map(|i| EthBytes::from(vec![0x02; 120 + i % 7]))
                    .collect(),
            },
            withdrawals: vec![],
        },
        blob_gas_used: 0,
        excess_blob_gas: 0,
    }
}

/// Shapes `payload` as op-geth, op-reth and op-rbuilder build it from an FCU's attributes:
/// on the FCU's head, with its timestamp, prevRandao, fee recipient and gas limit, the
/// Holocene extraData (version 0 + eip1559Params; Jovian adds minBaseFee), and the
/// attributes' transactions first.
pub(crate) fn built_as_asked(payload: &mut ExecutionPayloadV3, fcu: &Value) {
    let attrs = &fcu[1];
    let v1 = &mut payload.payload_inner.payload_inner;
    let field = |name: &str| attrs[name].clone();
    v1.parent_hash = serde_json::from_value(fcu[0]["headBlockHash"].clone()).unwrap_or_default();
    v1.timestamp = serde_json::from_value::<alloy_primitives::U64>(field("timestamp"))
        .map(|t| t.to())
        .unwrap_or_default();
    v1.prev_randao = serde_json::from_value(field("prevRandao")).unwrap_or_default();
    v1.fee_recipient = serde_json::from_value(field("suggestedFeeRecipient")).unwrap_or_default();
    if let Ok(gas) = serde_json::from_value::<alloy_primitives::U64>(field("gasLimit")) {
        v1.gas_limit = gas.to();
    }
    if let Ok(params) = serde_json::from_value::<alloy_primitives::B64>(field("eip1559Params")) {
        let min_base_fee =
            serde_json::from_value::<alloy_primitives::U64>(field("minBaseFee")).ok();
        let mut extra = vec![u8::from(min_base_fee.is_some())];
        extra.extend_from_slice(params.as_slice());
        if let Some(m) = min_base_fee {
            extra.extend_from_slice(&m.to::<u64>().to_be_bytes());
        }
        v1.extra_data = extra.into();
    }
    let forced: Vec<EthBytes> = serde_json::from_value(field("transactions")).unwrap_or_default();
    v1.transactions.splice(0..0, forced);
}

/// Block `n` of this engine's chain as `eth_getBlockByNumber(n, true)` returns it (pre-Isthmus,
/// no transactions), its hash and parent hash following [`block_hash`].
pub fn full_block(tag: u8, n: u64) -> Value {
    let zero = format!("0x{}", "00".repeat(32));
    json!({
        "hash": block_hash(tag, n),
        "parentHash": block_hash(tag, n.saturating_sub(1)),
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "miner": "0x4200000000000000000000000000000000000011",
        "stateRoot": format!("0x{}", "33".repeat(32)),
        "transactionsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        "receiptsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        "logsBloom": format!("0x{}", "00".repeat(256)),
        "difficulty": "0x0",
        "number": format!("{n:#x}"),
        "gasLimit": "0x1c9c380",
        "gasUsed": "0x0",
        "timestamp": format!("{:#x}", 1_700_000_000 + n),
        "extraData": "0x",
        "mixHash": zero,
        "nonce": "0x0000000000000000",
        "baseFeePerGas": "0x1",
        "withdrawalsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        "blobGasUsed": "0x0",
        "excessBlobGas": "0x0",
        "parentBeaconBlockRoot": format!("0x{}", "55".repeat(32)),
        "uncles": [],
        "transactions": [],
        "withdrawals": []
    })
}
