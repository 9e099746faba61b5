//! Block selection: which of the builder's candidate blocks is proposed, if any. Candidates
//! are tried best first: each must be the block op-node asked for and VALID on the local EL
//! by its own deadline; the first that is wins, then the policy weighs it against the local
//! block (never against preconfirmations already shown to users).

use alloy_primitives::U256;
use engine_api::{PayloadEnvelope, PayloadVersion};
use serde_json::value::RawValue;

use crate::{
    fallback::FallbackReason,
    local::LocalEl,
    metrics::Metrics,
    payload_check::{self, BuildRequest},
};

/// A block a builder offers for one payload.
#[derive(Debug)]
pub struct Candidate {
    /// The builder offering it.
    pub builder: &'static str,
    /// The envelope as `engine_getPayload` answers with it.
    pub raw: Box<RawValue>,
    /// The same, typed.
    pub envelope: PayloadEnvelope,
    /// With flashblocks: how it came about.
    pub path: Option<Origin>,
    /// Its validation must be done by then (earlier than the deadline when a fallback candidate
    /// still needs time).
    pub validate_by: tokio::time::Instant,
    /// What validating the builder's block before op-node asked found about this block.
    pub early: EarlyCheck,
}

/// How a candidate block came about when the builder streams flashblocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The builder's getPayload answer, which carries every preconfirmed transaction in order.
    BuilderPayload,
    /// Assembled from the accepted flashblocks, after the builder's block failed or dropped
    /// preconfirmed transactions.
    Assembled,
    /// Assembled from the accepted flashblocks, the builder having delivered no block.
    Preserved,
}

impl Origin {
    /// The label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BuilderPayload => "builder_payload",
            Self::Assembled => "assembled",
            Self::Preserved => "preserved",
        }
    }
}

/// A builder's part in one block's selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its block was chosen.
    Chosen,
    /// Its offer failed, for this reason.
    Failed(FallbackReason),
    /// It offered, but was not tried: a better offer was chosen first, or another builder's
    /// preconfirmations decided the block.
    NotTried,
}

/// How a candidate relates to the builder's block validated before op-node asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyCheck {
    /// Nothing was validated early for it.
    None,
    /// The builder answered other bytes than the block validated early (whatever hash they
    /// claim): they are validated again.
    Changed,
    /// These very bytes were checked and validated early, with this outcome.
    Same(Result<(), FallbackReason>),
}

/// What a builder offers for one payload, best first.
#[derive(Debug)]
pub struct Candidates {
    /// The block op-node asked for.
    pub request: BuildRequest,
    /// The blocks, best first.
    pub list: Vec<Candidate>,
    /// Flashblocks of this block already shown to subscribers.
    pub preconfirmed: usize,
    /// The transactions those flashblocks carried, in order (empty without preconfirmations):
    /// when no candidate is VALID, the local EL builds a block of exactly these.
    pub preconfirmed_txs: Vec<alloy_primitives::Bytes>,
    /// When op-node's getPayload must be answered.
    pub deadline: tokio::time::Instant,
    /// Why there is nothing better, when `list` is empty.
    pub failure: FallbackReason,
    /// Whether this is the first getPayload for this block (a block with an external state
    /// root is rebuilt on the first only).
    pub first_ask: bool,
}

/// A candidate that is the block op-node asked for and VALID.
#[derive(Debug)]
pub struct Chosen {
    /// The builder whose block it is.
    pub builder: &'static str,
    /// The envelope to answer op-node with.
    pub raw: Box<RawValue>,
    /// The same, typed.
    pub envelope: PayloadEnvelope,
    /// Flashblocks it carries that were shown to subscribers.
    pub preconfirmed: usize,
    /// Set when every block the builder offered failed (for this reason) and the local EL
    /// built the preconfirmed transactions itself: the builder is still at fault.
    pub rebuilt_after: Option<FallbackReason>,
}

/// Tries `candidates` best first: the first that matches op-node's attributes and that the
/// local EL validates VALID is chosen; otherwise the reason of the last failure. With
/// `external_state_root`, a candidate whose state root is zero is not validated but rebuilt by
/// the local EL from its transactions, and the rebuilt block is chosen in its place.
pub async fn choose(
    local: &LocalEl,
    metrics: &Metrics,
    version: PayloadVersion,
    candidates: Candidates,
    external_state_root: bool,
) -> Result<Chosen, FallbackReason> {
    let Candidates {
        request,
        list,
        preconfirmed,
        preconfirmed_txs,
        deadline,
        failure,
        first_ask,
    } = candidates;
    let mut reason = failure;
    for mut c in list {
        let outcome = if external_state_root && c.envelope.state_root().is_zero() {
            rebuild(local, version, &request, &c, first_ask).await
        } else {
            check_and_validate(local, metrics, version, &request, &c)
                .await
                .map(|()| None)
        };
        match outcome {
            Ok(rebuilt) => {
                if let Some((raw, envelope)) = rebuilt {
                    c.raw = raw;
                    c.envelope = envelope;
                }
                if let Some(path) = c.path {
                    if path != Origin::BuilderPayload {
                        tracing::info!(
                            block = c.envelope.block_number(),
                            flashblocks = preconfirmed,
                            path = path.as_str(),
                            "proposing the block assembled from flashblocks"
                        );
                    }
                    metrics.flashblocks_block(path.as_str());
                }
                return Ok(Chosen {
                    builder: c.builder,
                    raw: c.raw,
                    envelope: c.envelope,
                    preconfirmed,
                    rebuilt_after: None,
                });
            }
            Err(r) => reason = r,
        }
    }
    // With an external state root every zero-root candidate was already rebuilt from these
    // same transactions: a second rebuild would only fail the same way.
    if preconfirmed > 0 && !external_state_root {
        match keep_preconfirmed(local, version, &request, &preconfirmed_txs, deadline).await {
            Ok((raw, envelope)) => {
                tracing::warn!(
                    block = envelope.block_number(),
                    hash = %envelope.block_hash(),
                    flashblocks = preconfirmed,
                    txs = preconfirmed_txs.len(),
                    reason = reason.as_str(),
                    "no block the builder offered is valid; proposing its preconfirmed transactions as the local EL built them"
                );
                metrics.flashblocks_block("rebuilt");
                return Ok(Chosen {
                    // Named by `select`, which knows whose offer this was.
                    builder: "",
                    raw,
                    envelope,
                    preconfirmed,
                    rebuilt_after: Some(reason),
                });
            }
            Err(r) => {
                tracing::warn!(
                    reason = r.as_str(),
                    "the local EL could not build the preconfirmed transactions"
                );
            }
        }
    }
    if preconfirmed > 0 {
        // Nothing valid carries them: the local block is proposed and users who were shown
        // these flashblocks will not find them in the chain.
        tracing::error!(
            flashblocks = preconfirmed,
            reason = reason.as_str(),
            "preconfirmed flashblocks form no valid block; they are lost from this block"
        );
        metrics.flashblocks_block("lost");
    }
    Err(reason)
}

/// Checks a candidate against the block op-node asked for, then validates it on the local EL.
async fn check_and_validate(
    local: &LocalEl,
    metrics: &Metrics,
    version: PayloadVersion,
    request: &BuildRequest,
    c: &Candidate,
) -> Result<(), FallbackReason> {
    if let Err(mismatch) = payload_check::check(request, &c.envelope) {
        tracing::warn!(
            block = c.envelope.block_number(),
            hash = %c.envelope.block_hash(),
            field = mismatch.field,
            %mismatch,
            "builder's block is not the block op-node asked for"
        );
        return Err(FallbackReason::AttributesMismatch);
    }
    match c.early {
        // The very bytes validated early: the local EL's verdict on them stands.
        EarlyCheck::Same(Ok(())) => {
            metrics.prevalidated_get_payload("served");
            return Ok(());
        }
        EarlyCheck::Same(Err(FallbackReason::Invalid)) => {
            tracing::warn!(hash = %c.envelope.block_hash(), "builder's block was INVALID when validated before op-node asked");
            metrics.prevalidated_get_payload("rejected");
            return Err(FallbackReason::Invalid);
        }
        // Timed out, syncing, ...: that says nothing about the block; validate it now.
        EarlyCheck::Same(Err(_)) | EarlyCheck::None => {}
        EarlyCheck::Changed => {
            tracing::info!(hash = %c.envelope.block_hash(), "builder's block changed after it was validated early; validating it again");
            metrics.prevalidated_get_payload("changed");
        }
    }
    local
        .validate(version, &c.raw, &c.envelope, c.validate_by)
        .await
}

/// `--external-state-root`: a candidate carrying no state root is checked against op-node's
/// attributes, then the local EL builds the same block (op-node's attributes with the
/// candidate's transactions, no pool); that block, which the local EL computed itself, replaces
/// the candidate. Only on the first getPayload for the block.
async fn rebuild(
    local: &LocalEl,
    version: PayloadVersion,
    request: &BuildRequest,
    c: &Candidate,
    first_ask: bool,
) -> Result<Option<(Box<RawValue>, PayloadEnvelope)>, FallbackReason> {
    if !first_ask {
        tracing::warn!(
            block = c.envelope.block_number(),
            "getPayload retried for a block with an external state root; not rebuilding it again"
        );
        return Err(FallbackReason::StateRootRetry);
    }
    if let Err(mismatch) = payload_check::check(request, &c.envelope) {
        tracing::warn!(
            block = c.envelope.block_number(),
            field = mismatch.field,
            %mismatch,
            "builder's block is not the block op-node asked for"
        );
        return Err(FallbackReason::AttributesMismatch);
    }
    let rebuilt = local
        .rebuild(version, request, c.envelope.transactions(), c.validate_by)
        .await?;
    tracing::info!(
        block = rebuilt.1.block_number(),
        hash = %rebuilt.1.block_hash(),
        state_root = %rebuilt.1.state_root(),
        "local EL rebuilt the builder's block with its state root"
    );
    Ok(Some(rebuilt))
}

/// The last resort for preconfirmations: when neither the builder's block nor the block its
/// flashblocks assemble to is VALID (a zero or wrong state root, a corrupt header), the
/// transactions users were shown are still good. The local EL builds op-node's block from
/// exactly those transactions (the same rebuild as `--external-state-root`), so they land in
/// this block, in order. They must start with op-node's forced transactions, as every
/// flashblocks stream does.
async fn keep_preconfirmed(
    local: &LocalEl,
    version: PayloadVersion,
    request: &BuildRequest,
    transactions: &[alloy_primitives::Bytes],
    deadline: tokio::time::Instant,
) -> Result<(Box<RawValue>, PayloadEnvelope), FallbackReason> {
    let forced = request
        .attributes
        .transactions
        .as_deref()
        .unwrap_or_default();
    if transactions.is_empty() || !transactions.starts_with(forced) {
        return Err(FallbackReason::AttributesMismatch);
    }
    local
        .rebuild(version, request, transactions, deadline)
        .await
}

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

/// One builder's offer for a block.
#[derive(Debug)]
pub struct Offer {
    /// The builder's name.
    pub builder: &'static str,
    /// Its priority (lower is preferred).
    pub priority: u32,
    /// Its candidates, or why it has none.
    pub result: Result<Candidates, FallbackReason>,
}

/// What selection made of every builder's offer.
#[derive(Debug)]
pub struct Selection {
    /// The block chosen, or why there is none.
    pub chosen: Result<Chosen, FallbackReason>,
    /// Per builder that offered, its part in the block.
    pub verdicts: Vec<(&'static str, Verdict)>,
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
pub fn capped_block_value(e: &PayloadEnvelope) -> U256 {
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

/// Chooses among every builder's offer: ranked by `policy`, the first candidate that matches
/// op-node's attributes and is VALID on the local EL wins. Offers arrive in priority order (an
/// unreachable or out-of-sync builder made none: it was skipped at the FCU). A builder whose
/// last block failed is still tried first under `priority`: only its next good block can clear
/// that, and a bad one costs one validation before the next builder's. Without a winner, the
/// reason is the most preferred builder's.
pub async fn select(
    local: &LocalEl,
    metrics: &Metrics,
    version: PayloadVersion,
    policy: BuilderPolicy,
    offers: Vec<Offer>,
    external_state_root: bool,
) -> Selection {
    let names: Vec<&'static str> = offers.iter().map(|o| o.builder).collect();
    let mut verdict: Vec<Verdict> = offers
        .iter()
        .map(|o| match &o.result {
            Ok(_) => Verdict::NotTried,
            Err(r) => Verdict::Failed(*r),
        })
        .collect();
    let order: Vec<usize> = {
        let offered: Vec<(usize, RankKey<'_>)> = offers
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let c = o.result.as_ref().ok()?;
                Some((
                    i,
                    RankKey {
                        priority: o.priority,
                        block: c.list.first().map(|first| &first.envelope),
                        preconfirmed: c.preconfirmed > 0,
                    },
                ))
            })
            .collect();
        let keys: Vec<RankKey<'_>> = offered.iter().map(|(_, k)| *k).collect();
        policy
            .order(&keys)
            .into_iter()
            .map(|j| offered[j].0)
            .collect()
    };
    let mut slots: Vec<Option<Candidates>> = offers.into_iter().map(|o| o.result.ok()).collect();
    let mut chosen = None;
    for i in order {
        let Some(candidates) = slots[i].take() else {
            continue;
        };
        match choose(local, metrics, version, candidates, external_state_root).await {
            Ok(mut c) => {
                c.builder = names[i];
                verdict[i] = c.rebuilt_after.map_or(Verdict::Chosen, Verdict::Failed);
                chosen = Some(c);
                break;
            }
            Err(reason) => verdict[i] = Verdict::Failed(reason),
        }
    }
    let chosen = chosen.ok_or_else(|| {
        verdict
            .iter()
            .find_map(|v| match v {
                Verdict::Failed(r) => Some(*r),
                _ => None,
            })
            .unwrap_or(FallbackReason::NoBuilderPayload)
    });
    Selection {
        chosen,
        verdicts: names.into_iter().zip(verdict).collect(),
    }
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

    /// Every block op-rbuilder built in the recording (testdata/real-peers): the value it
    /// reports is what its transactions paid, so the cap never cuts an honest value; the same
    /// block claiming a thousand times more is cut to what its transactions can pay at most.
    #[test]
    fn block_value_cap_keeps_op_rbuilders_honest_values_and_cuts_inflated_ones() {
        let mut with_tips = 0;
        for line in
            include_str!("../../../testdata/real-peers/op-rbuilder-builder.engine.jsonl").lines()
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

    /// Recorded op-rbuilder blocks with `gasUsed` and `blockValue` set as the case needs.
    fn block(gas_used: u64, value: u64) -> PayloadEnvelope {
        let line = include_str!("../../../testdata/real-peers/op-rbuilder-builder.engine.jsonl")
            .lines()
            .find(|l| l.contains("engine_getPayloadV4"))
            .unwrap();
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut result = row["response"]["result"].clone();
        result["executionPayload"]["gasUsed"] = serde_json::json!(format!("{gas_used:#x}"));
        result["blockValue"] = serde_json::json!(format!("{value:#x}"));
        let raw = serde_json::value::to_raw_value(&result).unwrap();
        PayloadEnvelope::parse(PayloadVersion::V4, &raw).unwrap()
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
