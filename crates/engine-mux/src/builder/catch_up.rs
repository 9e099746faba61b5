//! Builder catch-up: a builder that fell behind (restarted, was down, answers `SYNCING`) is
//! replayed the blocks it missed, in order, with `engine_newPayload` each and then a
//! forkchoice update, so it builds again within a block or two of coming back.
//!
//! Each missing block comes from the recent payloads op-node sent (`recent`), or, for blocks
//! older than that window, from the local EL: `eth_getBlockByNumber(n, true)` turned into the
//! engine payload op-node would have sent (`local_el`). A run streams block by block (one
//! block in memory at a time) and stops after its budget (`--catch-up-budget-ms`); it then moves the builder's head
//! to the last block replayed and queues the next run, so live traffic interleaves and a
//! builder thousands of blocks behind still converges.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use alloy_eips::Encodable2718;
use alloy_primitives::{B256, Bytes, U64, U256};
use alloy_rpc_types_engine::{
    ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3, ForkchoiceState, ForkchoiceUpdated,
    PayloadStatus, PayloadStatusEnum,
};
use alloy_rpc_types_eth::{Block, BlockTransactions};
use op_alloy_rpc_types::Transaction;
use op_alloy_rpc_types_engine::OpExecutionPayloadV4;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    handle::{Builder, is_unreachable},
    queue::BuilderCall,
};

/// A block as the local EL returns it with full transactions (OP transaction types).
pub(crate) type RpcBlock = Block<Transaction>;

/// Where a replayed block came from (metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplaySource {
    /// The recent payloads op-node sent.
    Recent,
    /// Fetched from the local EL and converted.
    LocalEl,
}

impl ReplaySource {
    /// Label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Recent => "recent",
            Self::LocalEl => "local_el",
        }
    }
}

/// One `engine_newPayload` call to replay.
#[derive(Debug, Clone)]
pub(crate) struct Replay {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// `engine_newPayloadV3` or `engine_newPayloadV4`.
    pub method: &'static str,
    /// The params, as op-node sends them.
    pub params: Arc<RawValue>,
}

/// Why a local EL block cannot be turned into an engine payload.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConvertError {
    /// The block came without full transaction objects.
    #[error("block {0} came without full transactions")]
    NoTransactions(u64),
    /// A header field every post-Ecotone block has is missing.
    #[error("block {number} has no {field} (not an Ecotone or later block)")]
    MissingField {
        /// Block number.
        number: u64,
        /// The header field.
        field: &'static str,
    },
    /// The params could not be serialized.
    #[error("block {number}: {reason}")]
    Encode {
        /// Block number.
        number: u64,
        /// What failed.
        reason: String,
    },
}

/// Turns a full block from the local EL into the `engine_newPayload` call op-node made for it:
/// `engine_newPayloadV4` with `withdrawalsRoot` and empty execution requests after Isthmus
/// (the header carries `requestsHash`), `engine_newPayloadV3` before; the parent beacon block
/// root from the header; every transaction, deposits included, in its EIP-2718 encoding.
pub(crate) fn replay_from_block(block: RpcBlock) -> Result<Replay, ConvertError> {
    let h = &block.header.inner;
    let number = h.number;
    let missing = |field| ConvertError::MissingField { number, field };
    let transactions: Vec<Bytes> = match block.transactions {
        BlockTransactions::Full(txs) => txs
            .iter()
            .map(|tx| Bytes::from(tx.as_ref().encoded_2718()))
            .collect(),
        BlockTransactions::Hashes(ref hashes) if hashes.is_empty() => Vec::new(),
        _ => return Err(ConvertError::NoTransactions(number)),
    };
    let v3 = ExecutionPayloadV3 {
        payload_inner: ExecutionPayloadV2 {
            payload_inner: ExecutionPayloadV1 {
                parent_hash: h.parent_hash,
                fee_recipient: h.beneficiary,
                state_root: h.state_root,
                receipts_root: h.receipts_root,
                logs_bloom: h.logs_bloom,
                prev_randao: h.mix_hash,
                block_number: number,
                gas_limit: h.gas_limit,
                gas_used: h.gas_used,
                timestamp: h.timestamp,
                extra_data: h.extra_data.clone(),
                base_fee_per_gas: U256::from(
                    h.base_fee_per_gas.ok_or_else(|| missing("baseFeePerGas"))?,
                ),
                block_hash: block.header.hash,
                transactions,
            },
            withdrawals: block.withdrawals.map(|w| w.0).unwrap_or_default(),
        },
        blob_gas_used: h.blob_gas_used.ok_or_else(|| missing("blobGasUsed"))?,
        excess_blob_gas: h.excess_blob_gas.ok_or_else(|| missing("excessBlobGas"))?,
    };
    let beacon_root = h
        .parent_beacon_block_root
        .ok_or_else(|| missing("parentBeaconBlockRoot"))?;
    let no_blobs: [B256; 0] = [];
    let (method, params) = if h.requests_hash.is_some() {
        let v4 = OpExecutionPayloadV4 {
            payload_inner: v3,
            withdrawals_root: h
                .withdrawals_root
                .ok_or_else(|| missing("withdrawalsRoot"))?,
        };
        let no_requests: [Bytes; 0] = [];
        (
            "engine_newPayloadV4",
            serde_json::value::to_raw_value(&(v4, no_blobs, beacon_root, no_requests)),
        )
    } else {
        (
            "engine_newPayloadV3",
            serde_json::value::to_raw_value(&(v3, no_blobs, beacon_root)),
        )
    };
    let params = params.map_err(|e| ConvertError::Encode {
        number,
        reason: e.to_string(),
    })?;
    Ok(Replay {
        number,
        hash: block.header.hash,
        method,
        params: params.into(),
    })
}

#[derive(Deserialize)]
struct LatestBlock {
    number: U64,
}

/// How a run ended.
enum Outcome {
    /// Replayed up to the newest block op-node sent.
    Synced,
    /// Out of time; the rest is for the next run.
    BudgetExhausted,
}

/// Replays the blocks the builder is missing; see the module docs. Runs on the builder queue's
/// task, so the replay is ordered with every other builder call.
pub(crate) async fn catch_up(state: &Builder) {
    let Some(recent) = state.recent.as_ref() else {
        return;
    };
    let started = Instant::now();
    let head = match state
        .call::<LatestBlock>("eth_getBlockByNumber", &("latest", false), state.timeout())
        .await
    {
        Ok(b) => b.number.to::<u64>(),
        Err(e) => {
            tracing::warn!(error = %e, "catch-up: cannot read the builder's head");
            state.note_error(&e);
            state.metrics.catch_up_run("failed");
            return;
        }
    };
    // Once given up at this head (the local EL could not supply a block), stay quiet until the
    // builder moves: no retry and log storm on every probe.
    if state.catch_up_abandoned_at.load(Ordering::Relaxed) == head {
        return;
    }
    // The newest block op-node sent; with none held yet (engine-mux just started), the local
    // EL's head.
    let mut target = match recent.newest() {
        Some(n) => n,
        None => match state
            .local
            .call::<LatestBlock>(
                "eth_getBlockByNumber",
                &("latest", false),
                state.local.timeout(),
            )
            .await
        {
            Ok(b) => b.number.to::<u64>(),
            Err(e) => {
                tracing::warn!(error = %e, "catch-up: cannot read the local EL's head");
                state.metrics.catch_up_run("failed");
                return;
            }
        },
    };
    if head >= target {
        state.metrics.catch_up_run("nothing_to_do");
        return;
    }
    let mut next = head + 1;
    let mut last: Option<(u64, B256)> = None;
    let mut counts = [0u64; 2];
    let outcome = loop {
        if next > target {
            break Outcome::Synced;
        }
        if started.elapsed() >= recent.run_budget() {
            break Outcome::BudgetExhausted;
        }
        let (source, replay) = match recent.at(next) {
            Some(p) => (
                ReplaySource::Recent,
                Replay {
                    number: p.number,
                    hash: p.hash,
                    method: p.method,
                    params: p.params,
                },
            ),
            None => match from_local_el(state, next).await {
                Ok(r) => (ReplaySource::LocalEl, r),
                Err(LocalFetch::Transient) => {
                    state.metrics.catch_up_run("failed");
                    return;
                }
                Err(LocalFetch::Permanent) => {
                    state.catch_up_abandoned_at.store(head, Ordering::Relaxed);
                    state.metrics.catch_up_run("failed");
                    return;
                }
            },
        };
        if !replay_one(state, &replay).await {
            state.metrics.catch_up_run("failed");
            return;
        }
        state.metrics.catch_up_replayed(source.as_str(), 1);
        counts[source as usize] += 1;
        last = Some((replay.number, replay.hash));
        next += 1;
        // op-node keeps producing blocks meanwhile: follow the tip.
        target = target.max(recent.newest().unwrap_or(target));
    };
    let Some((last_number, last_hash)) = last else {
        return;
    };
    let fcs = match (&outcome, recent.forkchoice()) {
        (Outcome::Synced, Some(fcs)) => fcs,
        // Mid-way: head at what was replayed; safe and finalized may be blocks the builder
        // does not have yet, so left unset.
        _ => ForkchoiceState {
            head_block_hash: last_hash,
            safe_block_hash: B256::ZERO,
            finalized_block_hash: B256::ZERO,
        },
    };
    if let Err(e) = state
        .call::<ForkchoiceUpdated>(
            "engine_forkchoiceUpdatedV3",
            &(fcs, Option::<()>::None),
            state.timeout(),
        )
        .await
    {
        tracing::warn!(error = %e, "catch-up: forkchoiceUpdated after replay failed");
        state.note_error(&e);
        state.metrics.catch_up_run("failed");
        return;
    }
    let [recent_n, local_n] = counts;
    match outcome {
        Outcome::Synced => {
            state.health.ok();
            state.health.saw_heads(crate::health::evidence::Heads {
                builder: last_number,
                local: target,
            });
            state.metrics.catch_up_run("synced");
            tracing::info!(from = head + 1, to = last_number, from_recent = recent_n, from_local_el = local_n, took = ?started.elapsed(), "catch-up: builder replayed the blocks it missed");
        }
        Outcome::BudgetExhausted => {
            state.metrics.catch_up_run("budget_exhausted");
            tracing::info!(
                from = head + 1,
                to = last_number,
                behind = target - last_number,
                from_recent = recent_n,
                from_local_el = local_n,
                "catch-up: run budget used up; continuing in the next run"
            );
            if state.queue.push(BuilderCall::CatchUp).is_err() {
                // The next probe queues it again.
                state.metrics.queue_dropped("builder", "full");
            }
        }
    }
}

enum LocalFetch {
    /// Try again later (timeout, connection).
    Transient,
    /// The local EL cannot supply this block as a payload.
    Permanent,
}

async fn from_local_el(state: &Builder, number: u64) -> Result<Replay, LocalFetch> {
    let res = state
        .local
        .call::<Option<RpcBlock>>(
            "eth_getBlockByNumber",
            &(U64::from(number), true),
            state.local.timeout(),
        )
        .await;
    match res {
        Ok(Some(block)) => replay_from_block(block).map_err(|e| {
            tracing::warn!(block = number, error = %e, "catch-up: cannot turn the local EL's block into a payload; leaving the builder to its own sync");
            LocalFetch::Permanent
        }),
        Ok(None) => {
            tracing::warn!(
                block = number,
                "catch-up: the local EL does not have the block; leaving the builder to its own sync"
            );
            Err(LocalFetch::Permanent)
        }
        // Not reachable or not in time: try again in a later run.
        Err(e) if is_unreachable(&e) => {
            tracing::warn!(block = number, error = %e, "catch-up: fetching a block from the local EL failed");
            Err(LocalFetch::Transient)
        }
        // An answer that is no block (an error, `null` for a pruned or unknown block, garbage):
        // asking again at the same builder head would get the same.
        Err(e) => {
            tracing::warn!(block = number, error = %e, "catch-up: the local EL has no usable block; leaving the builder to its own sync");
            Err(LocalFetch::Permanent)
        }
    }
}

/// Sends one replayed block; true when the builder took it.
async fn replay_one(state: &Builder, r: &Replay) -> bool {
    match state
        .call::<PayloadStatus>(r.method, &*r.params, state.timeout())
        .await
    {
        Ok(s)
            if matches!(
                s.status,
                PayloadStatusEnum::Valid | PayloadStatusEnum::Accepted
            ) =>
        {
            true
        }
        Ok(s) => {
            tracing::warn!(block = r.number, hash = %r.hash, status = %s.status, "catch-up: builder did not accept a replayed block");
            false
        }
        Err(e) => {
            tracing::warn!(block = r.number, error = %e, "catch-up: replaying a block failed");
            state.note_error(&e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDING: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/op-reth-blocks-and-new-payloads.jsonl"
    );

    /// op-reth's own answers (recorded, see `tests/data/README.md`): each full block it
    /// returned for `eth_getBlockByNumber(…, true)` converts into exactly the
    /// `engine_newPayloadV4` params op-node sent it for that block.
    #[test]
    fn recorded_op_reth_blocks_convert_to_the_recorded_new_payloads() {
        let text = std::fs::read_to_string(RECORDING).unwrap();
        let mut blocks = Vec::new();
        let mut payloads = std::collections::HashMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["request"]["method"].as_str() {
                Some("eth_getBlockByNumber") => blocks.push(v["response"]["result"].clone()),
                Some("engine_newPayloadV4") => {
                    let p = v["request"]["params"].clone();
                    payloads.insert(p[0]["blockHash"].as_str().unwrap().to_string(), p);
                }
                _ => {}
            }
        }
        assert!(blocks.len() >= 3, "the recording holds full blocks");
        let mut deposits = 0;
        for block_json in blocks {
            let hash = block_json["hash"].as_str().unwrap().to_string();
            deposits += block_json["transactions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["type"] == "0x7e")
                .count();
            let block: RpcBlock = serde_json::from_value(block_json).unwrap();
            let replay = replay_from_block(block).unwrap();
            assert_eq!(replay.method, "engine_newPayloadV4");
            assert_eq!(replay.hash.to_string(), hash);
            let ours: serde_json::Value = serde_json::from_str(replay.params.get()).unwrap();
            let recorded = payloads
                .get(&hash)
                .expect("op-node's newPayload for the block");
            assert_eq!(&ours, recorded, "block {hash}");
        }
        assert!(deposits >= 3, "deposit transactions are covered");
    }

    #[test]
    fn blocks_before_isthmus_replay_as_v3_and_hash_only_blocks_are_refused() {
        let text = std::fs::read_to_string(RECORDING).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("eth_getBlockByNumber"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut block = v["response"]["result"].clone();
        block.as_object_mut().unwrap().remove("requestsHash");
        let replay = replay_from_block(serde_json::from_value(block.clone()).unwrap()).unwrap();
        assert_eq!(replay.method, "engine_newPayloadV3");
        let params: serde_json::Value = serde_json::from_str(replay.params.get()).unwrap();
        assert_eq!(params.as_array().unwrap().len(), 3);
        assert!(params[0].get("withdrawalsRoot").is_none());

        let hashes: Vec<_> = block["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["hash"].clone())
            .collect();
        block["transactions"] = serde_json::Value::Array(hashes);
        assert!(matches!(
            replay_from_block(serde_json::from_value(block.clone()).unwrap()),
            Err(ConvertError::NoTransactions(_))
        ));
        block
            .as_object_mut()
            .unwrap()
            .remove("parentBeaconBlockRoot");
        block["transactions"] = serde_json::json!([]);
        assert!(matches!(
            replay_from_block(serde_json::from_value(block).unwrap()),
            Err(ConvertError::MissingField {
                field: "parentBeaconBlockRoot",
                ..
            })
        ));
    }
}
