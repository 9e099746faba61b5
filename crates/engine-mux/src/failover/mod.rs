//! Preconfirmations that survive a sequencer failover. In a high-availability set (several
//! sequencers, op-conductor electing the leader), each engine-mux follows its peers' flashblocks
//! ([`peers`]) and keeps the preconfirmed blocks not yet sealed ([`held`]). When op-node asks
//! this engine-mux to build on a parent for which a peer's preconfirmed block is held, that peer
//! died before sealing it: the new block starts with the peer's preconfirmed transactions, after
//! the attributes' own deposits, forced through the attributes sent to the local EL and the
//! builder ([`carry`]). The builder's block is then checked against those rewritten attributes
//! (forced transactions = its exact prefix), like any block.
//!
//! Never a missed slot: when the local EL refuses the rewritten attributes, the transaction it
//! names is dropped and the call retried; when it names none, op-node's own request goes through
//! unchanged. Only the first forkchoiceUpdated on a parent is counted and logged.
//!
//! Files: `cli` (the flags), `held` (the store), `peers` (the streams), `carry` (nonce filter
//! and attributes rewrite).

pub(crate) mod carry;
pub(crate) mod cli;
pub(crate) mod held;
pub(crate) mod peers;
pub(crate) mod signed;

use std::{sync::Arc, time::Duration};

use alloy_primitives::B256;
use alloy_rpc_types_engine::{ForkchoiceState, ForkchoiceUpdated, PayloadStatusEnum};
use bytes::Bytes;
use engine_api::jsonrpc;
use http::Response;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::{sync::watch, task::JoinHandle};

use self::{
    carry::{CarryPlan, DropReason},
    held::HeldPreconfirmations,
    peers::PeerStreams,
};
use crate::{local::LocalEl, metrics::Metrics};

/// Attempts with carried transactions before op-node's own request goes through unchanged.
const MAX_CARRY_ATTEMPTS: usize = 3;

/// The failover feature's configuration (`--flashblocks-peer-url` and friends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// The peers' streams.
    pub peers: PeerStreams,
    /// Deadline for reading one sender's nonce at the parent from the local EL.
    pub nonce_lookup_timeout: Duration,
    /// No attempt with carried transactions starts later than this after op-node's call came.
    pub carry_budget: Duration,
}

/// What one forkchoiceUpdated's carry-over did (logged; metrics count it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarryReport {
    /// The parent op-node asked to build on.
    pub parent: B256,
    /// The peer block the transactions came from, and how many it preconfirmed.
    pub plan: CarryPlan,
    /// Whether op-node's unchanged request had to go through (everything dropped or refused).
    pub without_carry: bool,
}

/// The failover feature of one engine-mux: the held peer blocks and the carry-over.
#[derive(Debug)]
pub struct Failover {
    held: Arc<HeldPreconfirmations>,
    local: Arc<LocalEl>,
    metrics: Arc<Metrics>,
    config: FailoverConfig,
    /// The parent of the last failover counted, so a repeated FCU is not counted twice.
    last_counted: Mutex<Option<B256>>,
    /// The last carry-over (for embedding and tests).
    last: Mutex<Option<CarryReport>>,
}

/// The attributes fields the decision needs (the rest is left to the body rewrite).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttrsView {
    #[serde(default)]
    no_tx_pool: Option<bool>,
}

impl Failover {
    /// The feature over `local`, following nothing yet (see [`Self::spawn`]).
    pub fn new(config: FailoverConfig, local: Arc<LocalEl>, metrics: Arc<Metrics>) -> Self {
        metrics.peer_preconfirmations_held(0, 0);
        Self {
            held: Arc::new(HeldPreconfirmations::new()),
            local,
            metrics,
            config,
            last_counted: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// Starts following the peers until `shutdown`.
    pub fn spawn(
        &self,
        shutdown: &watch::Receiver<bool>,
        roots: &engine_api::tls::TrustedRoots,
    ) -> Vec<JoinHandle<()>> {
        peers::spawn(
            &self.config.peers,
            roots,
            self.held.clone(),
            self.metrics.clone(),
            shutdown,
        )
    }

    /// The peers' preconfirmed blocks held.
    pub fn held(&self) -> &Arc<HeldPreconfirmations> {
        &self.held
    }

    /// The last carry-over, if any happened.
    pub fn last_report(&self) -> Option<CarryReport> {
        self.last.lock().clone()
    }

    /// Starts the carry-over for one op-node forkchoiceUpdated: `None` when no peer block is
    /// held on its head (op-node's request goes through untouched). The caller sends each of
    /// [`Carry::next_attempt`]'s rewritten requests, tells [`Carry::answered`] the answer, and
    /// sends op-node's own request when the attempts run out ([`Carry::give_up`]).
    pub async fn begin(&self, params: Option<&RawValue>) -> Option<Carry<'_>> {
        let (parent, from) = self.candidate(params)?;
        let started = tokio::time::Instant::now();
        let first = self.last_counted.lock().replace(parent) != Some(parent);
        let plan = carry::plan(&self.local, from, parent, self.config.nonce_lookup_timeout).await;
        Some(Carry {
            failover: self,
            parent,
            first,
            plan,
            started,
            attempts: 0,
        })
    }

    /// The head op-node builds on and the peer block held on it, when this FCU may carry.
    fn candidate(&self, params: Option<&RawValue>) -> Option<(B256, held::PeerBlock)> {
        if self.held.is_empty() {
            return None;
        }
        let (state, attrs) =
            serde_json::from_str::<(ForkchoiceState, Option<AttrsView>)>(params?.get()).ok()?;
        // With noTxPool op-node derives (or is past the sequencer drift): the block must be
        // exactly its attributes, so nothing is carried into it.
        if attrs?.no_tx_pool == Some(true) {
            return None;
        }
        let parent = state.head_block_hash;
        self.held.on_parent(&parent).map(|b| (parent, b))
    }

    fn report(&self, first: bool, parent: B256, plan: CarryPlan, without_carry: bool) {
        if first {
            self.metrics.failover_seen();
            self.metrics.preconfirmed_carried(plan.carried.len() as u64);
            for (_, reason) in &plan.dropped {
                self.metrics.preconfirmed_dropped(reason.as_str(), 1);
            }
            let reasons: Vec<String> = plan
                .dropped
                .iter()
                .map(|(h, r)| format!("{h}: {}", r.as_str()))
                .collect();
            tracing::info!(
                %parent,
                peer = plan.from.peer,
                peer_payload_id = %plan.from.payload_id,
                block = plan.from.block_number,
                flashblocks = plan.from.flashblocks,
                preconfirmed = plan.from.transactions.len(),
                carried = plan.carried.len(),
                dropped = plan.dropped.len(),
                ?reasons,
                "failover: carrying a peer's preconfirmed transactions into the new block"
            );
        }
        *self.last.lock() = Some(CarryReport {
            parent,
            plan,
            without_carry,
        });
    }
}

/// One forkchoiceUpdated's carry-over in progress: the attempts with carried transactions, at
/// most [`MAX_CARRY_ATTEMPTS`] and none started after the carry budget, each dropping the
/// transaction the local EL named when it refused the last.
#[derive(Debug)]
pub struct Carry<'a> {
    failover: &'a Failover,
    parent: B256,
    first: bool,
    plan: CarryPlan,
    started: tokio::time::Instant,
    attempts: usize,
}

impl Carry<'_> {
    /// The next request to send (params, body): op-node's with the carried transactions forced
    /// after its deposits; `None` when there is nothing (left) to carry, the attempts or the
    /// budget are spent.
    pub fn next_attempt(&mut self, body: &Bytes) -> Option<(Box<RawValue>, Bytes)> {
        if self.plan.carried.is_empty() || self.attempts >= MAX_CARRY_ATTEMPTS {
            return None;
        }
        let budget = self.failover.config.carry_budget;
        if self.started.elapsed() >= budget {
            // Each attempt is a build on every upstream: op-node waits for none beyond the
            // budget (its own request goes through next).
            tracing::warn!(parent = %self.parent, ?budget, carried = self.plan.carried.len(), "failover: carry budget spent; op-node's own request goes through");
            self.failover.metrics.carry_budget_spent();
            return None;
        }
        self.attempts += 1;
        let raws: Vec<_> = self.plan.carried.iter().map(|t| t.raw.clone()).collect();
        carry::rewrite(body, &raws)
    }

    /// The answer to the last attempt: `true` when the local EL accepted the carried
    /// transactions (`res` is op-node's answer; the carry-over is recorded), `false` when it
    /// refused (the transaction it named is dropped for the next attempt, or, none named, no
    /// attempt is left).
    pub fn accepted(&mut self, res: &Response<Bytes>) -> bool {
        match refusal(res) {
            None => {
                let f = self.failover;
                f.metrics
                    .carry_duration(self.started.elapsed().as_secs_f64());
                f.report(self.first, self.parent, self.plan.clone(), false);
                true
            }
            Some(message) => {
                tracing::warn!(parent = %self.parent, %message, carried = self.plan.carried.len(), "failover: the local EL refused the attributes with carried transactions");
                if !carry::drop_named(&mut self.plan, &message) {
                    self.attempts = MAX_CARRY_ATTEMPTS;
                }
                false
            }
        }
    }

    /// No attempt was accepted: whatever is left could not be carried, and op-node's own
    /// request goes through (never a missed slot). Call after sending it, for the duration.
    pub fn give_up(mut self) {
        let rest: Vec<_> = self.plan.carried.drain(..).map(|t| t.hash).collect();
        self.plan
            .dropped
            .extend(rest.into_iter().map(|h| (h, DropReason::RefusedByEl)));
        let f = self.failover;
        f.report(self.first, self.parent, self.plan, true);
        f.metrics
            .carry_duration(self.started.elapsed().as_secs_f64());
    }
}

/// Why the local EL refused a forkchoiceUpdated with attributes, or `None` when it gave a payload.
fn refusal(res: &Response<Bytes>) -> Option<String> {
    if res.status() != http::StatusCode::OK {
        return Some(format!("HTTP {}", res.status()));
    }
    let Ok(envelope) = serde_json::from_slice::<jsonrpc::ResponseEnvelope>(res.body()) else {
        return Some("unparseable answer".into());
    };
    if let Some(e) = envelope.error {
        // op-geth names the transaction in `data` (`{"err": "failed to force-include tx: …"}`).
        let data = e.data().map(|d| d.get().to_string()).unwrap_or_default();
        return Some(format!("{} ({}) {data}", e.message(), e.code()));
    }
    match envelope
        .result
        .and_then(|r| serde_json::from_str::<ForkchoiceUpdated>(r.get()).ok())
    {
        Some(fcu) if fcu.payload_id.is_some() => None,
        Some(fcu) => match fcu.payload_status.status {
            PayloadStatusEnum::Invalid { validation_error } => Some(validation_error),
            status => Some(format!("status {status} without a payload id")),
        },
        None => Some("no forkchoiceUpdated result".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(body: &str) -> Response<Bytes> {
        Response::new(Bytes::from(body.to_string()))
    }

    #[test]
    fn refusals_are_told_from_payloads() {
        assert_eq!(
            refusal(&res(
                r#"{"jsonrpc":"2.0","id":1,"result":{"payloadStatus":{"status":"VALID","latestValidHash":null},"payloadId":"0x0300000000000001"}}"#
            )),
            None
        );
        let geth = refusal(&res(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-38003,"message":"Invalid payload attributes","data":{"err":"failed to force-include tx: 0xabc"}}}"#,
        ))
        .unwrap();
        assert!(geth.contains("-38003"), "{geth}");
        assert!(
            geth.contains("force-include tx: 0xabc"),
            "the data names the tx: {geth}"
        );
        assert!(
            refusal(&res(
                r#"{"jsonrpc":"2.0","id":1,"result":{"payloadStatus":{"status":"SYNCING","latestValidHash":null},"payloadId":null}}"#
            ))
            .is_some()
        );
    }
}
