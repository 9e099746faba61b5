//! The set of builders engine-mux fans out to, in priority order. Each [`Builder`] owns its
//! queue, payload ids, copies, catch-up, health and metrics, so a builder that is down or slow
//! only ever costs itself; this set asks them all, elects the one whose flashblocks are
//! re-published for a block, and gathers their offers at getPayload.

use std::{sync::Arc, time::Duration};

use alloy_rpc_types_engine::ForkchoiceState;
use bytes::Bytes;
use engine_api::{PayloadId, PayloadVersion};
use futures::StreamExt;
use http::HeaderMap;
use serde_json::value::RawValue;

use super::{
    Builder,
    gather::{Wait, gather},
    payload_ids::{BuildSlot, BuilderFcu},
    prevalidate::{
        Prevalidation,
        slot::{EarlyBlock, EarlyFetch, EarlyValidation},
    },
    recent::RecentPayloads,
};
use crate::{
    metrics::Metrics,
    select::{
        BuilderPolicy, Candidates, Offer, RankKey, Verdict, fallback::FallbackReason,
        payload_check::BuildRequest,
    },
};

/// Every configured builder, in priority order.
#[derive(Debug)]
pub struct Builders {
    list: Vec<Arc<Builder>>,
    recent: Option<Arc<RecentPayloads>>,
    metrics: Arc<Metrics>,
    policy: BuilderPolicy,
    grace: Duration,
    prevalidation: Option<Prevalidation>,
}

/// op-node's block, known before it asked: the block validated early (see
/// [`Builders::validated_early`]).
#[derive(Debug)]
pub struct ValidatedEarly {
    /// The builder whose block it is.
    pub builder: &'static str,
    /// The block, as fetched, checked and validated.
    pub block: Arc<EarlyBlock>,
    /// Every asked builder's outcome, for health and per-builder counts (as
    /// [`crate::select::Selection::verdicts`]).
    pub verdicts: Vec<(&'static str, Verdict)>,
}

/// The builds one FCU with attributes started, one per builder asked.
#[derive(Debug, Default)]
pub struct Builds(Vec<(Arc<Builder>, Arc<BuildSlot>)>);

impl Builders {
    /// The set over `list` (already in priority order), sharing op-node's `recent` payloads.
    pub fn new(
        list: Vec<Arc<Builder>>,
        recent: Option<Arc<RecentPayloads>>,
        metrics: Arc<Metrics>,
        policy: BuilderPolicy,
        grace: Duration,
    ) -> Self {
        Self {
            list,
            recent,
            metrics,
            policy,
            grace,
            prevalidation: None,
        }
    }

    /// Has each build's block validated before op-node asks for it (see [`Prevalidation`]).
    pub fn with_prevalidation(mut self, prevalidation: Prevalidation) -> Self {
        self.prevalidation = Some(prevalidation);
        self
    }

    /// How long to wait for the other builders' blocks after the first arrived.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The builders, in priority order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Builder>> {
        self.list.iter()
    }

    /// The builder named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Builder>> {
        self.list.iter().find(|b| b.name() == name)
    }

    /// The most preferred builder (for single-builder accessors and tests).
    pub fn first(&self) -> &Arc<Builder> {
        &self.list[0]
    }

    /// How builders' blocks are ranked.
    pub fn policy(&self) -> BuilderPolicy {
        self.policy
    }

    /// Remembers op-node's forkchoice for catch-up (once for every builder).
    pub fn record_forkchoice(&self, state: ForkchoiceState) {
        if let Some(recent) = &self.recent {
            recent.record_forkchoice(state);
        }
    }

    /// Remembers a payload op-node sent, for catch-up (once for every builder).
    pub fn record_payload(&self, method: &'static str, params: &RawValue) {
        if let Some(recent) = &self.recent {
            let n = recent.record(method, params);
            self.metrics.recent_payloads(n);
        }
    }

    /// Asks every enabled builder to build the block `request` describes. The first usable
    /// builder (in priority order) that streams flashblocks is elected to preconfirm it. A
    /// builder skipped as unreachable or out of sync is probed again right away (off this
    /// path), so it rejoins as soon as it is back.
    pub fn build(&self, params: &RawValue, request: &BuildRequest) -> Builds {
        for b in self.list.iter().filter(|b| b.enabled() && !b.usable()) {
            b.health().skipped();
        }
        let elected = self
            .list
            .iter()
            .position(|b| b.enabled() && b.usable() && b.flashblocks().is_some());
        Builds(
            self.list
                .iter()
                .enumerate()
                .filter(|(_, b)| b.enabled())
                .map(|(i, b)| {
                    (
                        b.clone(),
                        b.build(params, request.clone(), Some(i) == elected),
                    )
                })
                .collect(),
        )
    }

    /// Maps op-node's payload id to every build it started, and schedules validating the
    /// best block before op-node asks for it.
    pub fn map_payload_id(&self, local: PayloadId, builds: Builds) {
        if let Some(p) = &self.prevalidation {
            p.schedule(&builds.0);
        }
        for (builder, slot) in builds.0 {
            builder.map_payload_id(local, slot);
        }
    }

    /// Mirrors a call whose answer op-node does not wait for to every builder (disabled ones
    /// too: they stay in sync, ready to build when enabled again).
    pub fn mirror(&self, method: &'static str, params: &RawValue) {
        for b in &self.list {
            b.mirror(method, params);
        }
    }

    /// Copies a transaction or miner request to every enabled builder.
    pub fn copy(&self, headers: &HeaderMap, body: Bytes) {
        for b in self.list.iter().filter(|b| b.enabled()) {
            b.copy(headers, body.clone());
        }
    }

    /// Publishes the gauges sampled at scrape time.
    pub fn report_gauges(&self) {
        for b in &self.list {
            b.report_gauges();
        }
    }

    /// The block op-node gets for `local_id` when it is already decided: every asked builder's
    /// early work has settled, and the block the policy ranks first among those fetched early
    /// was checked against op-node's attributes and validated VALID. Asking the builders again
    /// would change nothing (a builder's build ends when its block is fetched: op-geth stops
    /// improving a resolved payload, reth-based builders forget it), so getPayload answers with
    /// it at once. Never with flashblocks (what was preconfirmed after the early fetch must be in
    /// the block; the usual path checks it). Closes every build's early work; `None` means the
    /// usual path.
    pub fn validated_early(
        &self,
        version: PayloadVersion,
        local_id: PayloadId,
    ) -> Option<ValidatedEarly> {
        self.prevalidation.as_ref()?;
        let asked: Vec<(&Arc<Builder>, Arc<BuildSlot>)> = self
            .list
            .iter()
            .filter_map(|b| b.slot(&local_id).map(|slot| (b, slot)))
            .collect();
        if asked.is_empty() || asked.iter().any(|(_, s)| s.elected) {
            return None;
        }
        let mut fetched: Vec<(usize, Arc<EarlyBlock>)> = Vec::new();
        let mut verdicts = Vec::with_capacity(asked.len());
        let mut validated = None;
        for (i, (b, slot)) in asked.iter().enumerate() {
            let state = slot.early.close_now();
            if state.validation == EarlyValidation::Running {
                return None;
            }
            let verdict = match (&state.fetch, slot.outcome()) {
                (EarlyFetch::Fetched(block), _) if block.version == version => {
                    fetched.push((i, block.clone()));
                    Verdict::NotTried
                }
                (EarlyFetch::Failed, _) => Verdict::Failed(FallbackReason::Error),
                (EarlyFetch::NotStarted, Some(BuilderFcu::Unavailable(reason))) => {
                    Verdict::Failed(reason)
                }
                // Still fetching, not fetched yet, or fetched for another version.
                _ => return None,
            };
            if state.outcome() == Some(Ok(())) {
                validated = Some(i);
            }
            verdicts.push((b.name(), verdict));
        }
        let validated = validated?;
        let keys: Vec<_> = fetched
            .iter()
            .map(|(i, block)| RankKey {
                priority: asked[*i].0.priority(),
                block: Some(&block.envelope),
                preconfirmed: false,
            })
            .collect();
        let (first, block) = &fetched[*self.policy.order(&keys).first()?];
        if *first != validated {
            return None;
        }
        verdicts[*first].1 = Verdict::Chosen;
        for (_, slot) in &asked {
            slot.first_get_payload();
        }
        Some(ValidatedEarly {
            builder: asked[*first].0.name(),
            block: block.clone(),
            verdicts,
        })
    }

    /// Every asked builder's offer for op-node's payload `local_id`, in priority order. Waits
    /// until every builder has answered, or `grace` after the first block came in, never past
    /// `deadline`; the elected builder is always waited for. Even under `priority` the others
    /// are collected: the primary's block may still fail validation. Builders not waited for
    /// are reported as `outpaced` (cut off by the grace) or `timeout` (by the deadline).
    pub async fn offers(
        &self,
        version: PayloadVersion,
        local_id: PayloadId,
        deadline: tokio::time::Instant,
    ) -> Vec<Offer> {
        if let Some(p) = &self.prevalidation {
            p.saw_version(version);
        }
        let asked: Vec<(usize, &Arc<Builder>, Arc<BuildSlot>)> = self
            .list
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.slot(&local_id).map(|slot| (i, b, slot)))
            .collect();
        if let [(_, b, slot)] = asked.as_slice() {
            // One builder: nothing to wait for but itself.
            let result = b.candidates(version, local_id, slot, deadline).await;
            return vec![offer(b, result)];
        }
        let elected = asked.iter().find(|(_, _, s)| s.elected).map(|(i, ..)| *i);
        // Each builder's fetch and parse is a task of its own, so they run on every core; the
        // set aborts whichever is still running when it is dropped.
        let mut pending = tokio::task::JoinSet::new();
        for (i, b, slot) in &asked {
            let (i, b, slot) = (*i, Arc::clone(b), slot.clone());
            pending
                .spawn(async move { (i, b.candidates(version, local_id, &slot, deadline).await) });
        }
        // A fetch task that panicked: that builder simply has no offer.
        let mut joined = futures::stream::poll_fn(|cx| pending.poll_join_next(cx))
            .filter_map(|joined| std::future::ready(joined.ok()));
        let wait = Wait {
            elected,
            grace: self.grace,
            deadline,
        };
        let mut answered = gather(&mut joined, wait, |result: &Result<Candidates, _>| {
            result.as_ref().is_ok_and(|c| !c.list.is_empty())
        })
        .await;
        drop(joined);
        drop(pending);
        // Cut off by the grace, not the deadline: slower than another builder, not failing.
        let unanswered = if tokio::time::Instant::now() < deadline {
            FallbackReason::Outpaced
        } else {
            FallbackReason::Timeout
        };
        let mut offers: Vec<Offer> = asked
            .iter()
            .map(|(i, b, _)| {
                let result = answered
                    .iter()
                    .position(|(j, _)| j == i)
                    .map(|pos| answered.swap_remove(pos).1)
                    .unwrap_or(Err(unanswered));
                offer(b, result)
            })
            .collect();
        offers.sort_by_key(|o| o.priority);
        offers
    }
}

fn offer(b: &Builder, result: Result<Candidates, FallbackReason>) -> Offer {
    Offer {
        builder: b.name(),
        priority: b.priority(),
        result,
    }
}
