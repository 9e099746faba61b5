//! A [`Net`] with two flashblocks-rpc instances in front of its local EL: one on engine-mux's
//! stream (metadata with receipts) and one on the same stream cut to Base's metadata
//! (`{block_number}` only, so receipts come from executing the pending chain through the
//! upstream's `eth_simulateV1`). With op-reth as the local EL a [`Tap`] sits between the
//! instances and op-reth and keeps every `eth_simulateV1` op-reth refused.

use alloy_primitives::B256;
use engine_api::Upstream;
use flashblocks_rpc::Running;
use serde_json::{Value, json};

use crate::{BLOCK_TIME, LocalEl, Net, Relay, Tap, call, client, quantity, start_rpc};
use test_utils::{eventually_some, metric};

/// The two instances' labels, in [`Overlays::rpcs`] order.
pub const STREAMS: [&str; 2] = ["metadata", "no metadata"];

/// The devnet (or op-reth) with flashblocks and two flashblocks-rpc instances.
pub struct Overlays {
    /// The chain.
    pub net: Net,
    _relay: Relay,
    /// In front of op-reth (when it is the local EL): the refused simulations.
    pub tap: Option<Tap>,
    /// `(label, instance, client of it)`, on the stream with metadata first.
    pub rpcs: Vec<(&'static str, Running, Upstream)>,
}

impl Overlays {
    /// Starts both instances on `net`.
    pub async fn start(net: Net) -> Self {
        let relay = Relay::stripping_metadata(net.flashblocks_url()).await;
        let tap = match &net.local_el {
            LocalEl::OpReth(r) => Some(Tap::start(&r.http_url).await),
            LocalEl::Devnet(_) => None,
        };
        let upstream = tap.as_ref().map_or_else(|| net.upstream_url(), Tap::url);
        let mut rpcs = Vec::new();
        for (label, url) in STREAMS
            .into_iter()
            .zip([net.flashblocks_url(), relay.url()])
        {
            let rpc = start_rpc(&url, &upstream, &[]).await;
            let c = client(&rpc.http_url(), None);
            rpcs.push((label, rpc, c));
        }
        Self {
            net,
            _relay: relay,
            tap,
            rpcs,
        }
    }

    /// Waits until every instance serves `hash`'s receipt (from a pending block or, once
    /// sealed, the upstream); returns its block number and each instance's receipt.
    pub async fn preconfirmed(&self, hash: B256) -> (u64, Vec<Value>) {
        let mut block = 0;
        let mut receipts = Vec::new();
        for (label, _, ours) in &self.rpcs {
            let r = eventually_some(
                8 * BLOCK_TIME,
                &format!("{label}: the pending receipt{}", self.log_hint()),
                || async {
                    let r: Value = call(ours, "eth_getTransactionReceipt", json!([hash])).await;
                    (!r.is_null()).then_some(r)
                },
            )
            .await;
            block = quantity(&r["blockNumber"]);
            receipts.push(r);
        }
        (block, receipts)
    }

    /// The local EL's head.
    pub async fn head(&self) -> u64 {
        quantity(&call(&self.net.local, "eth_blockNumber", json!([])).await)
    }

    /// `(log …)` naming op-reth's log, when op-reth is the local EL.
    pub fn log_hint(&self) -> String {
        self.net
            .op_reth_log()
            .map(|p| format!(" (op-reth log {})", p.display()))
            .unwrap_or_default()
    }

    /// Each served receipt covers what the local EL serves for `hash` once sealed: every field
    /// it has, with its value (L1 fee fields, log positions, cumulative gas included).
    pub async fn assert_receipts_sealed_as_served(&self, what: &str, hash: B256, served: &[Value]) {
        let sealed = call(&self.net.local, "eth_getTransactionReceipt", json!([hash])).await;
        for ((label, ..), ours) in self.rpcs.iter().zip(served) {
            if &sealed != ours {
                // Extra fields are allowed; printed so a failing comparison shows both whole.
                eprintln!("{label} {what}: sealed receipt {sealed}\n  served {ours}");
            }
            crate::assert_covers(&format!("{label} {what}: receipt of {hash}"), &sealed, ours);
        }
    }

    /// No simulation diverged from the stream's gas, the upstream refused none, and the
    /// stripped instance ran some.
    pub fn assert_simulations_matched(&self) {
        if let Some(tap) = &self.tap {
            assert!(tap.simulations() > 0, "no eth_simulateV1 reached op-reth");
            let refused = tap.refusals();
            assert!(
                refused.is_empty(),
                "op-reth refused {} of {} eth_simulateV1 requests{}; first: request {} answer {}",
                refused.len(),
                tap.simulations(),
                self.log_hint(),
                refused[0].request,
                refused[0].response
            );
        }
        // Failed runs (timeouts included) are held against op-reth only: the devnet tests
        // never required them to be zero.
        let outcomes: &[&str] = match self.tap {
            Some(_) => &["divergent", "failed"],
            None => &["divergent"],
        };
        for (label, rpc, _) in &self.rpcs {
            for outcome in outcomes {
                assert_eq!(
                    metric(
                        &rpc.metrics_text(),
                        &format!("flashblocks_rpc_simulations_total{{outcome=\"{outcome}\"}}")
                    ),
                    0.0,
                    "{label}: {outcome} simulations of the pending blocks{}",
                    self.log_hint()
                );
            }
        }
        let (_, stripped, _) = &self.rpcs[1];
        assert!(
            metric(
                &stripped.metrics_text(),
                r#"flashblocks_rpc_simulations_total{outcome="ok"}"#
            ) > 0.0
        );
    }

    /// Stops everything.
    pub async fn stop(self) {
        for (_, rpc, _) in self.rpcs {
            rpc.shutdown().await;
        }
        self.net.stop().await;
    }
}
