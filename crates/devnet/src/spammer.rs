//! Signs EIP-1559 transfers from the dev accounts and sends them to an RPC URL at a set rate.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_primitives::{Address, B256, U64, U256};
use alloy_rpc_types_engine::JwtSecret;
use alloy_signer_local::PrivateKeySigner;
use engine_api::{Upstream, UpstreamConfig};
use serde_json::json;
use tokio::sync::watch;

use crate::chain::accounts::{raw_transaction, sign_transfer};

/// How many sent hashes are remembered for checks (oldest dropped first).
pub const MAX_TRACKED_HASHES: usize = 100_000;
/// Tick at which batches are sent; the rate is spread over ticks.
const TICK: Duration = Duration::from_millis(20);

/// How the spammer runs.
#[derive(Debug, Clone)]
pub struct SpammerConfig {
    /// Where to send (`eth_sendRawTransaction`).
    pub rpc_url: http::Uri,
    /// JWT to attach, when the URL is an authenticated port.
    pub jwt: Option<JwtSecret>,
    /// Transactions per second.
    pub rate: f64,
    /// Chain id to sign for.
    pub chain_id: u64,
    /// Max fee per gas.
    pub max_fee_per_gas: u128,
    /// Priority fee per gas.
    pub max_priority_fee_per_gas: u128,
    /// Per-call deadline.
    pub call_timeout: Duration,
}

/// Counters and the hashes the spammer got accepted.
#[derive(Debug, Default)]
pub struct SpammerStats {
    /// Accepted by the RPC.
    pub sent: AtomicU64,
    /// Refused or failed.
    pub failed: AtomicU64,
    hashes: Mutex<VecDeque<B256>>,
}

impl SpammerStats {
    /// Hashes of accepted transactions, oldest first (bounded by [`MAX_TRACKED_HASHES`]).
    pub fn sent_hashes(&self) -> Vec<B256> {
        self.hashes
            .lock()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    fn record(&self, hash: B256) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = self.hashes.lock() {
            h.push_back(hash);
            while h.len() > MAX_TRACKED_HASHES {
                h.pop_front();
            }
        }
    }
}

/// A running spammer.
#[derive(Debug)]
pub struct SpammerHandle {
    /// Counters.
    pub stats: Arc<SpammerStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SpammerHandle {
    /// Stops sending.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops sending new transactions but keeps the handle (stats stay readable).
    pub fn pause(&self) {
        let _ = self.stop.send(true);
    }
}

struct Account {
    signer: PrivateKeySigner,
    next_nonce: Option<u64>,
}

/// Starts sending transfers from `signers` round-robin.
pub fn start_spammer(config: SpammerConfig, signers: Vec<PrivateKeySigner>) -> SpammerHandle {
    let client = Upstream::new(UpstreamConfig {
        name: "spammer",
        url: config.rpc_url.clone(),
        secret: config.jwt,
        timeout: config.call_timeout,
        max_response_bytes: 1024 * 1024,
    });
    let stats = Arc::new(SpammerStats::default());
    let (stop, mut stop_rx) = watch::channel(false);
    let task_stats = stats.clone();
    let task = tokio::spawn(async move {
        let mut accounts: Vec<Account> = signers
            .into_iter()
            .map(|signer| Account {
                signer,
                next_nonce: None,
            })
            .collect();
        if accounts.is_empty() || config.rate <= 0.0 {
            return;
        }
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_tick = config.rate * TICK.as_secs_f64();
        let mut budget = 0.0f64;
        let mut cursor = 0usize;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop_rx.changed() => break,
            }
            if *stop_rx.borrow() {
                break;
            }
            budget += per_tick;
            while budget >= 1.0 {
                budget -= 1.0;
                let n = accounts.len();
                let account = &mut accounts[cursor % n];
                cursor += 1;
                send_one(&client, &config, account, &task_stats).await;
            }
        }
    });
    SpammerHandle { stats, stop, task }
}

async fn send_one(
    client: &Upstream,
    config: &SpammerConfig,
    account: &mut Account,
    stats: &SpammerStats,
) {
    let address = account.signer.address();
    let nonce = match account.next_nonce {
        Some(n) => n,
        None => match client
            .call::<U64>(
                "eth_getTransactionCount",
                &json!([address, "pending"]),
                config.call_timeout,
            )
            .await
        {
            Ok(n) => n.to(),
            Err(e) => {
                tracing::debug!(%e, "spammer: nonce lookup failed");
                stats.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
    };
    // Deterministic content per (sender, nonce): a retry after a failed send is the same tx.
    let to = Address::from_word(alloy_primitives::keccak256(address.as_slice()));
    let tx = match sign_transfer(
        &account.signer,
        config.chain_id,
        nonce,
        to,
        U256::from(nonce + 1),
        config.max_fee_per_gas,
        config.max_priority_fee_per_gas,
    ) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::warn!(%e, "spammer: signing failed");
            stats.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    match client
        .call::<B256>(
            "eth_sendRawTransaction",
            &json!([raw_transaction(&tx)]),
            config.call_timeout,
        )
        .await
    {
        Ok(hash) => {
            stats.record(hash);
            account.next_nonce = Some(nonce + 1);
        }
        Err(e) => {
            tracing::debug!(%e, %address, nonce, "spammer: send failed; re-reading nonce");
            stats.failed.fetch_add(1, Ordering::Relaxed);
            account.next_nonce = None;
        }
    }
}
