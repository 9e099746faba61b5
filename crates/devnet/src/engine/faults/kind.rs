//! The faults a builder can be switched into, as flags and `devnet_setFault` name them.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One fault a builder can be switched into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fault", content = "ms")]
pub enum Fault {
    /// Delay every engine answer by this many milliseconds.
    Slow(u64),
    /// Close the listener: connections are refused.
    Down,
    /// Accept engine calls and never answer them.
    Hang,
    /// Serve payloads whose state root is wrong (hash recomputed so only re-execution catches it).
    Invalid,
    /// Build blocks with only the attribute (deposit) transactions.
    Empty,
    /// Stop following the chain: FCU and newPayload answer SYNCING and change nothing.
    Stale,
    /// Close the flashblocks WebSocket listener and disconnect every subscriber; the engine API
    /// keeps working and flashblocks keep being built. Re-opened on the same port when cleared.
    FlashblocksDown,
    /// getPayload serves a valid block without the pool transactions its flashblocks
    /// preconfirmed (attribute transactions only): a builder breaking its preconfirmations.
    DropPreconfirmed,
    /// Serve payloads and flashblocks whose state root is zero (hash recomputed), as a builder
    /// that leaves the state root to the sequencer's EL (rollup-boost's external state root).
    ZeroStateRoot,
    /// Armed: the builder dies (`down`, and it publishes no more flashblocks) right after it
    /// built flashblock N of a payload. Listed as active while armed and while the `down` it
    /// caused lasts; clearing it disarms and lifts that `down`.
    DownAfterFlashblock(u64),
    /// Serve payloads whose prevRandao is not the one the attributes asked for (hash
    /// recomputed): a block that re-executes VALID (nothing reads PREVRANDAO) but is not the
    /// block op-node asked for, so only a check against the FCU's attributes catches it.
    WrongAttributes,
    /// Asked again for a payload it already served, answer other contents (its last
    /// transaction dropped) under the block hash served first: a hostile builder counting on
    /// a claimed hash being trusted. op-geth and reth recompute the hash and refuse it.
    SameHashOtherTxs,
    /// Answer engine_* calls with garbage, in turn: an HTTP 200 whose body is not JSON, a
    /// JSON-RPC response whose `result` has the wrong shape, and the real answer truncated.
    Garbage,
    /// Interleave the real flashblocks with frames a consumer must refuse: unparseable text, a
    /// valid-looking frame of another payload, an index that goes backwards, and a binary frame
    /// that is not Brotli. The real frames still flow.
    FlashblocksHostile,
    /// Hold every flashblock back this many milliseconds before sending it (order kept), so
    /// the last ones of a block arrive after getPayload.
    FlashblocksLate(u64),
}

/// Why a fault name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown fault {0:?} (expected slow=MS, down, hang, invalid, wrong_attributes, same_hash_other_txs, zero_state_root, empty, stale, flashblocks_down, drop_preconfirmed, down_after_flashblock=N, garbage, flashblocks_hostile, flashblocks_late=MS)"
)]
pub struct ParseFaultError(pub String);

impl FromStr for Fault {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFaultError(s.to_string());
        match s {
            "down" => Ok(Self::Down),
            "hang" => Ok(Self::Hang),
            "invalid" => Ok(Self::Invalid),
            "wrong_attributes" => Ok(Self::WrongAttributes),
            "same_hash_other_txs" => Ok(Self::SameHashOtherTxs),
            "zero_state_root" => Ok(Self::ZeroStateRoot),
            "empty" => Ok(Self::Empty),
            "stale" => Ok(Self::Stale),
            "flashblocks_down" => Ok(Self::FlashblocksDown),
            "drop_preconfirmed" => Ok(Self::DropPreconfirmed),
            "garbage" => Ok(Self::Garbage),
            "flashblocks_hostile" => Ok(Self::FlashblocksHostile),
            other if other.starts_with("flashblocks_late") => other
                .strip_prefix("flashblocks_late=")
                .or_else(|| other.strip_prefix("flashblocks_late:"))
                .and_then(|n| n.parse().ok())
                .map(Self::FlashblocksLate)
                .ok_or_else(err),
            other if other.starts_with("down_after_flashblock") => other
                .strip_prefix("down_after_flashblock=")
                .or_else(|| other.strip_prefix("down_after_flashblock:"))
                .and_then(|n| n.parse().ok())
                .map(Self::DownAfterFlashblock)
                .ok_or_else(err),
            other => {
                let ms = other
                    .strip_prefix("slow=")
                    .or_else(|| other.strip_prefix("slow:"))
                    .ok_or_else(err)?;
                ms.parse().map(Self::Slow).map_err(|_| err())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_shape_is_stable() {
        assert_eq!(
            serde_json::to_string(&Fault::Slow(5)).unwrap(),
            r#"{"fault":"slow","ms":5}"#
        );
        assert_eq!(
            serde_json::to_string(&Fault::Down).unwrap(),
            r#"{"fault":"down"}"#
        );
    }
}
