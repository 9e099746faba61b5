//! A proposed builder block next to the local EL's block for the same attributes (builder
//! accountability): what the comparison finds, and the last one kept per builder. Its own file
//! because both the builder handle (which keeps the last one) and the accountability task
//! (which computes them for a builder) use it.

use alloy_consensus::Transaction;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::B256;
use engine_api::PayloadEnvelope;
use op_alloy_consensus::OpTxEnvelope;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What one proposed builder block shows next to the local block for the same attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// The block number.
    pub block: u64,
    /// Transactions of the local block the builder's block left out although they fit its gas
    /// room and paid at least its lowest priority fee.
    pub omitted: Vec<B256>,
    /// Builder block's gas used minus the local block's.
    pub gas_over_local: i128,
    /// Builder block's transaction count minus the local block's.
    pub txs_over_local: i64,
}

/// Compares the proposed `builder` block with the `local` block for the same attributes.
/// Transactions that do not decode are skipped (the local EL built them; a decode failure here
/// says nothing about the builder).
pub(crate) fn compare(builder: &PayloadEnvelope, local: &PayloadEnvelope) -> Comparison {
    let base_fee = u64::try_from(builder.base_fee_per_gas()).unwrap_or(u64::MAX);
    let decode = |raw: &alloy_primitives::Bytes| OpTxEnvelope::decode_2718(&mut raw.as_ref()).ok();
    let mut included = std::collections::HashSet::new();
    let mut lowest_tip: Option<u128> = None;
    for tx in builder.transactions().iter().filter_map(decode) {
        included.insert(tx.tx_hash());
        if !tx.is_deposit() {
            let tip = tx.effective_tip_per_gas(base_fee).unwrap_or(0);
            lowest_tip = Some(lowest_tip.map_or(tip, |t| t.min(tip)));
        }
    }
    let room = builder.gas_limit().saturating_sub(builder.gas_used());
    let omitted = local
        .transactions()
        .iter()
        .filter_map(decode)
        .filter(|tx| !tx.is_deposit() && !included.contains(&tx.tx_hash()))
        .filter(|tx| tx.gas_limit() <= room)
        .filter(|tx| {
            // A transaction that cannot pay the builder block's base fee could not be in it.
            tx.effective_tip_per_gas(base_fee)
                .is_some_and(|tip| tip >= lowest_tip.unwrap_or(0))
        })
        .map(|tx| tx.tx_hash())
        .collect();
    Comparison {
        block: builder.block_number(),
        omitted,
        gas_over_local: i128::from(builder.gas_used()) - i128::from(local.gas_used()),
        txs_over_local: builder.tx_count() as i64 - local.tx_count() as i64,
    }
}

/// A builder's recent figures, for `debug_getBuilders`.
#[derive(Debug, Default)]
pub struct Recent(Mutex<Option<Comparison>>);

impl Recent {
    /// The last comparison, if any.
    pub fn last(&self) -> Option<Comparison> {
        self.0.lock().clone()
    }

    /// Keeps `c` as the last comparison.
    pub(crate) fn set(&self, c: Comparison) {
        *self.0.lock() = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use engine_api::PayloadVersion;

    use super::*;

    /// op-rbuilder's recorded blocks (testdata/real-peers) that carry pool transactions.
    fn recorded_blocks() -> Vec<PayloadEnvelope> {
        include_str!("../../../testdata/real-peers/op-rbuilder-builder.engine.jsonl")
            .lines()
            .filter_map(|line| {
                let row: serde_json::Value = serde_json::from_str(line).ok()?;
                (row["request"]["method"] == "engine_getPayloadV4").then_some(())?;
                let raw = serde_json::value::to_raw_value(&row["response"]["result"]).ok()?;
                PayloadEnvelope::parse(PayloadVersion::V4, &raw).ok()
            })
            .filter(|e| e.tx_count() > 1)
            .collect()
    }

    /// `block` as JSON, changed by `f`, parsed again.
    fn edited(block: &PayloadEnvelope, f: impl FnOnce(&mut serde_json::Value)) -> PayloadEnvelope {
        let mut v: serde_json::Value = serde_json::from_str(block.to_raw().unwrap().get()).unwrap();
        f(&mut v["executionPayload"]);
        let raw = serde_json::value::to_raw_value(&v).unwrap();
        PayloadEnvelope::parse(PayloadVersion::V4, &raw).unwrap()
    }

    /// `block` with its deposits only: a builder that left the whole pool out.
    fn deposits_only(block: &PayloadEnvelope) -> PayloadEnvelope {
        edited(block, |p| {
            let txs = p["transactions"].as_array_mut().unwrap();
            txs.retain(|t| t.as_str().is_some_and(|t| t.starts_with("0x7e")));
        })
    }

    fn pool_hashes(block: &PayloadEnvelope) -> Vec<B256> {
        block
            .transactions()
            .iter()
            .filter_map(|raw| OpTxEnvelope::decode_2718(&mut raw.as_ref()).ok())
            .filter(|tx| !tx.is_deposit())
            .map(|tx| tx.tx_hash())
            .collect()
    }

    #[test]
    fn pool_transactions_left_out_with_gas_room_are_omissions() {
        let blocks = recorded_blocks();
        assert!(
            !blocks.is_empty(),
            "the recording has blocks with pool transactions"
        );
        for local in &blocks {
            let builder = deposits_only(local);
            let c = compare(&builder, local);
            assert!(!c.omitted.is_empty());
            assert_eq!(
                c.omitted,
                pool_hashes(local),
                "block {}",
                local.block_number()
            );
            assert_eq!(c.txs_over_local, -(c.omitted.len() as i64));
            assert_eq!(
                compare(local, local),
                Comparison {
                    block: local.block_number(),
                    ..Default::default()
                }
            );
            // A builder block holding more than the local one omits nothing.
            let c = compare(local, &builder);
            assert!(c.omitted.is_empty());
            assert!(c.txs_over_local > 0);
        }
    }

    #[test]
    fn a_transaction_without_gas_room_is_no_omission() {
        let local = recorded_blocks().remove(0);
        let full = edited(&deposits_only(&local), |p| {
            p["gasUsed"] = p["gasLimit"].clone()
        });
        assert!(compare(&full, &local).omitted.is_empty());
    }
}
