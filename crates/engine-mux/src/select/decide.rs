//! The one decision path: offers in, the proposed block out. Candidates are tried best first;
//! each must be the block op-node asked for and VALID on the local EL by its own deadline (or,
//! with an external state root or as preconfirmations' last resort, rebuilt by the local EL).

use engine_api::{PayloadEnvelope, PayloadVersion};
use serde_json::value::RawValue;

use super::{
    fallback::FallbackReason,
    offers::{Candidate, Candidates, Chosen, EarlyCheck, Offer, Origin, Selection, Verdict},
    payload_check::{self, BuildRequest},
    rank::{BuilderPolicy, RankKey},
};
use crate::{local::LocalEl, metrics::Metrics};

/// Tries `candidates` best first: the first that matches op-node's attributes and that the
/// local EL validates VALID is chosen; otherwise the reason of the last failure. With
/// `external_state_root`, a candidate whose state root is zero is not validated but rebuilt by
/// the local EL from its transactions, and the rebuilt block is chosen in its place.
pub(crate) async fn choose(
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

/// Whether `envelope` (from `builder`) is the block op-node asked for in `request`; a mismatch
/// is logged naming the field and refused as `attributes_mismatch`. Every path that may propose
/// a builder's block (getPayload, validation before op-node asks, rebuilds) checks here first.
pub(crate) fn check_attributes(
    builder: &str,
    request: &BuildRequest,
    envelope: &PayloadEnvelope,
) -> Result<(), FallbackReason> {
    payload_check::check(request, envelope).map_err(|mismatch| {
        tracing::warn!(
            builder,
            block = envelope.block_number(),
            hash = %envelope.block_hash(),
            field = mismatch.field,
            %mismatch,
            "builder's block is not the block op-node asked for"
        );
        FallbackReason::AttributesMismatch
    })
}

/// Checks a candidate against the block op-node asked for, then validates it on the local EL.
async fn check_and_validate(
    local: &LocalEl,
    metrics: &Metrics,
    version: PayloadVersion,
    request: &BuildRequest,
    c: &Candidate,
) -> Result<(), FallbackReason> {
    check_attributes(c.builder, request, &c.envelope)?;
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
    check_attributes(c.builder, request, &c.envelope)?;
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

/// Chooses among every builder's offer: ranked by `policy`, the first candidate that matches
/// op-node's attributes and is VALID on the local EL wins. Offers arrive in priority order (an
/// unreachable or out-of-sync builder made none: it was skipped at the FCU). A builder whose
/// last block failed is still tried first under `priority`: only its next good block can clear
/// that, and a bad one costs one validation before the next builder's. Without a winner, the
/// reason is the most preferred builder's.
pub(crate) async fn select(
    local: &LocalEl,
    metrics: &Metrics,
    version: PayloadVersion,
    policy: BuilderPolicy,
    offers: Vec<Offer>,
    external_state_root: bool,
) -> Selection {
    decide(policy, offers, |candidates| {
        choose(local, metrics, version, candidates, external_state_root)
    })
    .await
}

/// The decision itself, without the local EL: offers in, the chosen block and every builder's
/// verdict out. `try_offer` checks one builder's candidates ([`choose`] in production: the
/// attributes check, then validation or a rebuild) and is called best first, in the policy's
/// order, until one yields a block.
pub(crate) async fn decide<F, Fut>(
    policy: BuilderPolicy,
    offers: Vec<Offer>,
    mut try_offer: F,
) -> Selection
where
    F: FnMut(Candidates) -> Fut,
    Fut: Future<Output = Result<Chosen, FallbackReason>>,
{
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
        match try_offer(candidates).await {
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

#[cfg(test)]
mod tests {
    //! The block-selection rows of docs/behaviour.md (`--builder-policy`: gas-used, priority,
    //! block-value) and the rules around them, on offers of recorded op-rbuilder blocks; the
    //! local EL's verdict on each block is scripted.

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::select::{
        rank::capped_block_value,
        testing::{block, raw_block},
    };

    /// An offer of one block from `builder` (priority `priority`), with `preconfirmed`
    /// flashblocks already shown.
    fn offer(
        builder: &'static str,
        priority: u32,
        gas: u64,
        value: u64,
        preconfirmed: usize,
    ) -> Offer {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        Offer {
            builder,
            priority,
            result: Ok(Candidates {
                request: BuildRequest {
                    forkchoice: Default::default(),
                    attributes: Default::default(),
                },
                list: vec![Candidate {
                    builder,
                    raw: raw_block(gas, value),
                    envelope: block(gas, value),
                    path: None,
                    validate_by: deadline,
                    early: EarlyCheck::None,
                }],
                preconfirmed,
                preconfirmed_txs: Vec::new(),
                deadline,
                failure: FallbackReason::NoBuilderPayload,
                first_ask: true,
            }),
        }
    }

    fn failed(builder: &'static str, priority: u32, reason: FallbackReason) -> Offer {
        Offer {
            builder,
            priority,
            result: Err(reason),
        }
    }

    /// Runs the decision with the local EL's verdict per builder scripted (VALID unless
    /// listed); returns it with the builders in the order they were tried.
    async fn run(
        policy: BuilderPolicy,
        offers: Vec<Offer>,
        refused: &[(&'static str, FallbackReason)],
    ) -> (Selection, Vec<&'static str>) {
        let tried = Arc::new(Mutex::new(Vec::new()));
        let selection = decide(policy, offers, |c: Candidates| {
            let tried = tried.clone();
            let refused = refused.to_vec();
            async move {
                let first = c.list.into_iter().next().expect("one candidate");
                tried.lock().unwrap().push(first.builder);
                if let Some((_, reason)) = refused.iter().find(|(b, _)| *b == first.builder) {
                    return Err(*reason);
                }
                Ok(Chosen {
                    builder: first.builder,
                    raw: first.raw,
                    envelope: first.envelope,
                    preconfirmed: c.preconfirmed,
                    rebuilt_after: None,
                })
            }
        })
        .await;
        let tried = tried.lock().unwrap().clone();
        (selection, tried)
    }

    fn chosen(s: &Selection) -> Option<&'static str> {
        s.chosen.as_ref().ok().map(|c| c.builder)
    }

    #[tokio::test]
    async fn gas_used_proposes_the_block_with_most_gas_and_tries_the_next_when_it_fails() {
        let offers = || vec![offer("a", 0, 100_000, 0, 0), offer("b", 1, 200_000, 0, 0)];
        let (s, tried) = run(BuilderPolicy::GasUsed, offers(), &[]).await;
        assert_eq!((chosen(&s), tried), (Some("b"), vec!["b"]));
        assert_eq!(
            s.verdicts,
            [("a", Verdict::NotTried), ("b", Verdict::Chosen)]
        );

        let (s, tried) = run(
            BuilderPolicy::GasUsed,
            offers(),
            &[("b", FallbackReason::Invalid)],
        )
        .await;
        assert_eq!((chosen(&s), tried), (Some("a"), vec!["b", "a"]));
        assert_eq!(
            s.verdicts,
            [
                ("a", Verdict::Chosen),
                ("b", Verdict::Failed(FallbackReason::Invalid))
            ]
        );
    }

    #[tokio::test]
    async fn priority_proposes_the_first_builder_moves_on_when_it_fails_and_back_when_it_returns() {
        // The primary offers less gas: under priority that does not matter.
        let offers = || {
            vec![
                offer("primary", 0, 100_000, 0, 0),
                offer("backup", 1, 200_000, 0, 0),
            ]
        };
        let (s, _) = run(BuilderPolicy::Priority, offers(), &[]).await;
        assert_eq!(chosen(&s), Some("primary"));
        let (s, tried) = run(
            BuilderPolicy::Priority,
            offers(),
            &[("primary", FallbackReason::Invalid)],
        )
        .await;
        assert_eq!(
            (chosen(&s), tried),
            (Some("backup"), vec!["primary", "backup"])
        );
        // The primary down (its offer failed before selection): the backup's block.
        let down = vec![
            failed("primary", 0, FallbackReason::Timeout),
            offer("backup", 1, 200_000, 0, 0),
        ];
        let (s, _) = run(BuilderPolicy::Priority, down, &[]).await;
        assert_eq!(chosen(&s), Some("backup"));
        // Back: the next block is the primary's again.
        let (s, _) = run(BuilderPolicy::Priority, offers(), &[]).await;
        assert_eq!(chosen(&s), Some("primary"));
    }

    #[tokio::test]
    async fn block_value_proposes_the_highest_capped_value() {
        let (low, high) = (block(100_000, 1_000), block(100_000, 2_000));
        assert!(
            capped_block_value(&low) < capped_block_value(&high),
            "both values are under what the recorded block's transactions can pay"
        );
        let offers = || {
            vec![
                offer("low", 0, 100_000, 1_000, 0),
                offer("high", 1, 100_000, 2_000, 0),
            ]
        };
        let (s, _) = run(BuilderPolicy::BlockValue, offers(), &[]).await;
        assert_eq!(chosen(&s), Some("high"));
        // A value claimed past what the transactions can pay is cut to that cap: the honest
        // builder's block wins over the inflated one.
        let max_tip = u64::try_from(capped_block_value(&block(1, u64::MAX))).unwrap();
        let honest_value = max_tip * 1_000;
        let inflated = vec![
            offer("honest", 0, 100_000, honest_value, 0),
            offer("inflated", 1, 10, u64::MAX, 0),
        ];
        assert_eq!(
            capped_block_value(&block(10, u64::MAX)),
            alloy_primitives::U256::from(max_tip * 10),
            "the inflated claim is cut to 10 gas times the highest tip"
        );
        let (s, _) = run(BuilderPolicy::BlockValue, inflated, &[]).await;
        assert_eq!(chosen(&s), Some("honest"));
    }

    #[tokio::test]
    async fn preconfirmations_leave_only_the_builder_that_showed_them() {
        for policy in [
            BuilderPolicy::GasUsed,
            BuilderPolicy::Priority,
            BuilderPolicy::BlockValue,
        ] {
            let offers = vec![
                offer("other", 0, 200_000, 9_000, 0),
                offer("elected", 1, 100_000, 0, 3),
            ];
            let (s, tried) = run(policy, offers, &[("elected", FallbackReason::Invalid)]).await;
            assert_eq!(
                tried,
                ["elected"],
                "{policy:?}: no other block carries them"
            );
            assert_eq!(s.chosen.unwrap_err(), FallbackReason::Invalid);
            assert_eq!(s.verdicts[0], ("other", Verdict::NotTried));
        }
    }

    #[tokio::test]
    async fn without_a_winner_the_reason_is_the_most_preferred_builders() {
        let offers = vec![
            failed("a", 0, FallbackReason::Timeout),
            offer("b", 1, 100_000, 0, 0),
        ];
        let (s, _) = run(
            BuilderPolicy::GasUsed,
            offers,
            &[("b", FallbackReason::Invalid)],
        )
        .await;
        assert_eq!(s.chosen.unwrap_err(), FallbackReason::Timeout);
        let (s, tried) = run(BuilderPolicy::GasUsed, Vec::new(), &[]).await;
        assert!(tried.is_empty());
        assert_eq!(s.chosen.unwrap_err(), FallbackReason::NoBuilderPayload);
    }

    #[tokio::test]
    async fn a_rebuild_of_the_preconfirmed_transactions_still_fails_the_builder() {
        // Preconfirmations' last resort: the local EL built them, the block is proposed, but
        // the builder's own blocks failed and its verdict says so.
        let offers = vec![offer("elected", 0, 100_000, 0, 2)];
        let s = decide(BuilderPolicy::GasUsed, offers, |c: Candidates| async move {
            let first = c.list.into_iter().next().unwrap();
            Ok(Chosen {
                builder: "",
                raw: first.raw,
                envelope: first.envelope,
                preconfirmed: c.preconfirmed,
                rebuilt_after: Some(FallbackReason::Invalid),
            })
        })
        .await;
        assert_eq!(chosen(&s), Some("elected"));
        assert_eq!(
            s.verdicts,
            [("elected", Verdict::Failed(FallbackReason::Invalid))]
        );
    }
}
