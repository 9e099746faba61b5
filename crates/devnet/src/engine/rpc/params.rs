//! What the `eth_*` methods share: JSON-RPC errors as geth and reth answer them, block
//! references (tag, number or hash) and the state they name, quantities.

use std::sync::Arc;

use alloy_eips::BlockNumberOrTag;
use alloy_primitives::{B256, U64};
use engine_api::codes;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::Value;

use crate::{
    chain::state::StateSnapshot,
    engine::{Engine, call::CallError, store::ChainBlock},
};

/// geth's and reth's code for a call that reverted; the revert data goes in the error's `data`.
const EXECUTION_REVERTED: i32 = 3;

impl From<CallError> for ErrorObjectOwned {
    fn from(e: CallError) -> Self {
        match &e {
            CallError::Reverted(data) => {
                ErrorObjectOwned::owned(EXECUTION_REVERTED, e.to_string(), Some(data.clone()))
            }
            CallError::Halted(_) | CallError::Invalid(_) => err(SERVER_ERROR, e.to_string()),
        }
    }
}

pub(super) type RpcResult = Result<Value, ErrorObjectOwned>;

/// EIP-1474 "resource not found": the block a state query names is unknown. Not (yet) in
/// [`engine_api::codes`], which holds the JSON-RPC 2.0 and Engine API sets.
pub(super) const RESOURCE_NOT_FOUND: i32 = -32001;
/// The generic server error geth and reth answer rejected transactions and unavailable state
/// with (EIP-1474 "invalid input"). Not (yet) in [`engine_api::codes`].
pub(super) const SERVER_ERROR: i32 = -32000;

pub(super) fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

pub(super) fn hex_u64(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

/// A block reference as eth methods take it: a tag, a number or a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockRef {
    Latest,
    Pending,
    Safe,
    Finalized,
    Earliest,
    Number(u64),
    Hash(B256),
}

/// An optional block tag/number param; absent means `latest`, as in geth.
pub(super) fn block_ref_or_latest(v: Option<&Value>) -> Result<BlockRef, ErrorObjectOwned> {
    v.map(parse_block_ref)
        .transpose()
        .map(|r| r.unwrap_or(BlockRef::Latest))
}

pub(super) fn parse_block_ref(v: &Value) -> Result<BlockRef, ErrorObjectOwned> {
    let bad = || {
        err(
            codes::INVALID_PARAMS,
            format!("invalid block reference {v}"),
        )
    };
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => {
            if let Some(h) = o.get("blockHash").and_then(Value::as_str) {
                return h.parse().map(BlockRef::Hash).map_err(|_| bad());
            }
            o.get("blockNumber")
                .and_then(Value::as_str)
                .ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    Ok(match s {
        "latest" => BlockRef::Latest,
        "pending" => BlockRef::Pending,
        "safe" => BlockRef::Safe,
        "finalized" => BlockRef::Finalized,
        "earliest" => BlockRef::Earliest,
        hex if hex.len() == 66 => BlockRef::Hash(hex.parse().map_err(|_| bad())?),
        hex => BlockRef::Number(hex.parse::<U64>().map_err(|_| bad())?.to()),
    })
}

pub(super) fn resolve(engine: &Engine, r: BlockRef) -> Option<Arc<ChainBlock>> {
    engine.with_chain(|chain| match r {
        BlockRef::Latest | BlockRef::Pending => Some(chain.head()),
        BlockRef::Safe => chain.block(&chain.safe_hash()),
        BlockRef::Finalized => chain.block(&chain.finalized_hash()),
        BlockRef::Earliest => chain.canonical_block(0),
        BlockRef::Number(n) => chain.canonical_block(n),
        BlockRef::Hash(h) => chain.block(&h),
    })
}

pub(super) fn state_at(
    engine: &Engine,
    r: BlockRef,
) -> Result<Arc<StateSnapshot>, ErrorObjectOwned> {
    let block = resolve(engine, r).ok_or_else(|| err(RESOURCE_NOT_FOUND, "block not found"))?;
    engine
        .with_chain(|chain| chain.state(&block.hash))
        .ok_or_else(|| {
            err(
                SERVER_ERROR,
                format!("state for block {} not available", block.number()),
            )
        })
}

pub(super) fn to_json(v: impl serde::Serialize) -> RpcResult {
    serde_json::to_value(v).map_err(|e| err(codes::INTERNAL_ERROR, e.to_string()))
}

/// The block a call runs in and the state it runs on. `pending` is the head: this engine builds
/// pending blocks only for payload jobs, not for RPC.
pub(super) fn call_at(
    engine: &Engine,
    r: Option<&Value>,
) -> Result<(Arc<ChainBlock>, Arc<StateSnapshot>), ErrorObjectOwned> {
    let r = block_ref_or_latest(r)?;
    let block = resolve(engine, r).ok_or_else(|| err(RESOURCE_NOT_FOUND, "block not found"))?;
    Ok((block, state_at(engine, r)?))
}

/// A quantity given as a hex string or a JSON number (clients send both for `blockCount`).
pub(super) fn quantity(v: &Value) -> Result<u64, ErrorObjectOwned> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<U64>().ok().map(|n| n.to()),
        _ => None,
    }
    .ok_or_else(|| err(codes::INVALID_PARAMS, format!("invalid quantity {v}")))
}

pub(super) fn tag_ref(tag: Option<BlockNumberOrTag>, head: u64) -> Result<u64, ErrorObjectOwned> {
    Ok(match tag.unwrap_or(BlockNumberOrTag::Latest) {
        BlockNumberOrTag::Number(n) => n,
        BlockNumberOrTag::Earliest => 0,
        // The devnet's safe and finalized blocks trail the head; logs up to the head are kept.
        _ => head,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn block_refs_parse() {
        assert_eq!(parse_block_ref(&json!("latest")).unwrap(), BlockRef::Latest);
        assert_eq!(
            parse_block_ref(&json!("0x10")).unwrap(),
            BlockRef::Number(16)
        );
        let h = B256::repeat_byte(1);
        assert_eq!(parse_block_ref(&json!(h)).unwrap(), BlockRef::Hash(h));
        assert!(parse_block_ref(&json!("nope")).is_err());
        assert!(parse_block_ref(&json!(5)).is_err());
    }
}
