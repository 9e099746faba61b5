//! How offers are ranked (`--builder-policy`) and how a valid builder block is weighed against
//! the local block (`--block-selection-policy`).

use alloy_primitives::U256;
use engine_api::{PayloadEnvelope, PayloadVersion};
use serde_json::value::RawValue;

use super::offers::Chosen;

/// How several builders' blocks are ranked: the best is checked and validated first, the next
/// only if it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuilderPolicy {
    /// Most gas used first (trusts nothing but the block: gas used is checked by newPayload).
    GasUsed,
    /// The first usable builder in priority order first (trusts the operator's order).
    Priority,
    /// Highest reported `blockValue` first, capped at the most the block's own transactions
    /// can pay in tips (the cap is computed here; the value under it is the builder's word).
    BlockValue,
}

/// What the ranking reads of one builder's offer.
#[derive(Clone, Copy, Debug)]
pub struct RankKey<'a> {
    /// The builder's priority (lower is preferred; ties in every policy go to it).
    pub priority: u32,
    /// Its best block, if it offered one.
    pub block: Option<&'a PayloadEnvelope>,
    /// Whether flashblocks of this block were already shown to subscribers from it.
    pub preconfirmed: bool,
}

impl BuilderPolicy {
    /// The one ranking of builders' offers, best first, as indexes into `keys`: used by
    /// getPayload and by validation before op-node asks alike, so the block validated early is
    /// the one getPayload would try first. With preconfirmations shown, only the builder that
    /// showed them is ranked: no other block carries them. A builder whose last block failed
    /// keeps its place (under `priority` it is still tried first: only its next good block can
    /// clear that, and a bad one costs one validation before the next builder's).
    pub fn order(self, keys: &[RankKey<'_>]) -> Vec<usize> {
        if let Some(i) = keys.iter().position(|k| k.preconfirmed) {
            return vec![i];
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        // Stable sorts on (key, priority): ties go to the preferred builder.
        match self {
            Self::Priority => order.sort_by_key(|&i| keys[i].priority),
            Self::GasUsed => order.sort_by_key(|&i| {
                let gas = keys[i].block.map(PayloadEnvelope::gas_used).unwrap_or(0);
                (std::cmp::Reverse(gas), keys[i].priority)
            }),
            Self::BlockValue => order.sort_by_key(|&i| {
                let value = keys[i].block.map(capped_block_value).unwrap_or_default();
                (std::cmp::Reverse(value), keys[i].priority)
            }),
        }
        order
    }
}

/// The builder's `blockValue`, capped at the most the block's transactions can pay in tips:
/// the highest effective tip per gas among them times the block's gas used (deposits pay none).
/// A transaction that does not decode caps the value at zero.
pub(crate) fn capped_block_value(e: &PayloadEnvelope) -> U256 {
    use alloy_consensus::Transaction;
    use alloy_eips::eip2718::Decodable2718;
    let base_fee = u64::try_from(e.base_fee_per_gas()).unwrap_or(u64::MAX);
    let mut max_tip = 0u128;
    for raw in e.transactions() {
        let Ok(tx) = op_alloy_consensus::OpTxEnvelope::decode_2718(&mut raw.as_ref()) else {
            return U256::ZERO;
        };
        if tx.is_deposit() {
            continue;
        }
        max_tip = max_tip.max(tx.effective_tip_per_gas(base_fee).unwrap_or(0));
    }
    e.block_value()
        .min(U256::from(max_tip) * U256::from(e.gas_used()))
}

/// How a valid builder payload is weighed against the local payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionPolicy {
    /// A valid builder payload always wins.
    AlwaysBuilder,
    /// The builder payload loses when its gas used is below `min_percent`% of the local one's
    /// (a builder that drops the mempool should not beat a full local block).
    GasUsed {
        /// Percentage of local gas used the builder must reach.
        min_percent: u64,
    },
}

impl SelectionPolicy {
    /// Whether `chosen` beats the local block (`local`: its raw envelope, if the local EL
    /// delivered one). Preconfirmed flashblocks were promised to users: their block is never
    /// traded for a local block that drops them.
    pub fn prefers_builder(
        self,
        version: PayloadVersion,
        chosen: &Chosen,
        local: Option<&RawValue>,
    ) -> bool {
        if chosen.preconfirmed > 0 {
            return true;
        }
        match (self, local) {
            (Self::AlwaysBuilder, _) => true,
            // Only a gas policy needs the local payload typed; parse it only then.
            (policy, Some(raw)) => match PayloadEnvelope::parse(version, raw) {
                Ok(local) => policy.builder_wins(chosen.envelope.gas_used(), local.gas_used()),
                Err(_) => true,
            },
            // The local EL failed getPayload: a builder block it validated is better than none.
            (_, None) => true,
        }
    }

    /// Whether the builder payload should be proposed.
    pub fn builder_wins(self, builder_gas_used: u64, local_gas_used: u64) -> bool {
        match self {
            Self::AlwaysBuilder => true,
            Self::GasUsed { min_percent } => {
                // u128 so a 30M-gas block times 100 cannot overflow.
                u128::from(builder_gas_used) * 100
                    >= u128::from(local_gas_used) * u128::from(min_percent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::testing::block;

    /// Every block op-rbuilder built in the recording (testdata/real-peers): the value it
    /// reports is what its transactions paid, so the cap never cuts an honest value; the same
    /// block claiming a thousand times more is cut to what its transactions can pay at most.
    #[test]
    fn block_value_cap_keeps_op_rbuilders_honest_values_and_cuts_inflated_ones() {
        let mut with_tips = 0;
        for line in
            include_str!("../../../../testdata/real-peers/op-rbuilder-builder.engine.jsonl").lines()
        {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            if row["request"]["method"] != "engine_getPayloadV4" {
                continue;
            }
            let mut result = row["response"]["result"].clone();
            let raw = serde_json::value::to_raw_value(&result).unwrap();
            let e = PayloadEnvelope::parse(PayloadVersion::V4, &raw).unwrap();
            assert_eq!(capped_block_value(&e), e.block_value(), "honest value kept");
            if e.block_value().is_zero() {
                continue;
            }
            with_tips += 1;
            let inflated = e.block_value() * U256::from(1000);
            result["blockValue"] = serde_json::json!(inflated);
            let raw = serde_json::value::to_raw_value(&result).unwrap();
            let lying = PayloadEnvelope::parse(PayloadVersion::V4, &raw).unwrap();
            let capped = capped_block_value(&lying);
            assert!(
                capped >= e.block_value() && capped < inflated,
                "{capped} not within [{}, {inflated})",
                e.block_value()
            );
        }
        assert!(with_tips > 0, "the recording has blocks with tips");
    }

    fn key(priority: u32, block: Option<&PayloadEnvelope>) -> RankKey<'_> {
        RankKey {
            priority,
            block,
            preconfirmed: false,
        }
    }

    #[test]
    fn one_ranking_for_every_policy_ties_to_priority() {
        let (small, big) = (block(100_000, 0), block(200_000, 0));
        // Offers listed out of priority order, a tie on gas between priorities 0 and 2.
        let keys = [
            key(2, Some(&big)),
            key(1, Some(&small)),
            key(0, Some(&big)),
            key(3, None),
        ];
        assert_eq!(BuilderPolicy::Priority.order(&keys), vec![2, 1, 0, 3]);
        assert_eq!(BuilderPolicy::GasUsed.order(&keys), vec![2, 0, 1, 3]);
        // No value claimed anywhere: priority decides, a missing block ranks with none.
        assert_eq!(BuilderPolicy::BlockValue.order(&keys), vec![2, 1, 0, 3]);
    }

    #[test]
    fn preconfirmations_rank_only_the_builder_that_showed_them() {
        let (small, big) = (block(100_000, 0), block(200_000, 0));
        let mut keys = vec![key(0, Some(&big)), key(1, Some(&small))];
        keys[1].preconfirmed = true;
        for policy in [
            BuilderPolicy::Priority,
            BuilderPolicy::GasUsed,
            BuilderPolicy::BlockValue,
        ] {
            assert_eq!(policy.order(&keys), vec![1], "{policy:?}");
        }
    }

    #[test]
    fn gas_used_threshold() {
        let p = SelectionPolicy::GasUsed { min_percent: 10 };
        assert!(p.builder_wins(100_000, 1_000_000));
        assert!(!p.builder_wins(99_999, 1_000_000));
        assert!(p.builder_wins(0, 0));
        assert!(p.builder_wins(u64::MAX, u64::MAX));
        assert!(SelectionPolicy::AlwaysBuilder.builder_wins(0, 30_000_000));
    }
}
