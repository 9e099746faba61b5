//! A wallet-style client for the soak: fills each transfer the way viem and cast do (pending
//! nonce, `eth_estimateGas`, `eth_feeHistory`, `eth_maxPriorityFeePerGas`) through
//! flashblocks-rpc, signs it, sends it, and waits for the pending nonce to move before the next.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U64, U256};
use alloy_rpc_types_eth::FeeHistory;
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use engine_api::{Upstream, UpstreamConfig};
use op_alloy_consensus::OpTxEnvelope;
use serde_json::json;
use tokio::sync::watch;

const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the wallet waits for its transfer to show in the pending nonce.
const PRECONFIRM_WAIT: Duration = Duration::from_secs(10);
/// Transfer hashes kept for the end check (the soak sends one every few seconds).
const MAX_HASHES: usize = 10_000;

/// What the wallet did.
#[derive(Debug, Default)]
pub struct WalletStats {
    /// Transfers accepted by `eth_sendRawTransaction`.
    pub sent: AtomicU64,
    /// Fill or send failures.
    pub failed: AtomicU64,
    hashes: Mutex<Vec<B256>>,
}

impl WalletStats {
    /// Hashes of the accepted transfers.
    pub fn hashes(&self) -> Vec<B256> {
        self.hashes.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// A running wallet client.
#[derive(Debug)]
pub struct Wallet {
    /// Its counters.
    pub stats: Arc<WalletStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Wallet {
    /// Starts sending a transfer from `signer` every `every` through `rpc_url`.
    pub fn start(rpc_url: http::Uri, signer: PrivateKeySigner, every: Duration) -> Self {
        let rpc = Upstream::new(UpstreamConfig {
            name: "wallet",
            url: rpc_url,
            secret: None,
            timeout: CALL_TIMEOUT,
            max_response_bytes: 1 << 22,
        });
        let stats = Arc::new(WalletStats::default());
        let (stop, mut stop_rx) = watch::channel(false);
        let task_stats = stats.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                match transfer(&rpc, &signer).await {
                    Ok(hash) => {
                        task_stats.sent.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut h) = task_stats.hashes.lock()
                            && h.len() < MAX_HASHES
                        {
                            h.push(hash);
                        }
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "soak wallet: transfer failed");
                        task_stats.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { stats, stop, task }
    }

    /// Stops after the transfer in progress.
    pub async fn stop(self) -> Arc<WalletStats> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.stats
    }
}

async fn call<T: serde::de::DeserializeOwned>(
    rpc: &Upstream,
    method: &str,
    params: serde_json::Value,
) -> Result<T, String> {
    rpc.call(method, &params, CALL_TIMEOUT)
        .await
        .map_err(|e| format!("{method}: {e}"))
}

async fn transfer(rpc: &Upstream, signer: &PrivateKeySigner) -> Result<B256, String> {
    let from = signer.address();
    let to = Address::repeat_byte(0x5a);
    let chain_id: U64 = call(rpc, "eth_chainId", json!([])).await?;
    let nonce: U64 = call(rpc, "eth_getTransactionCount", json!([from, "pending"])).await?;
    let request = json!({"from": from, "to": to, "value": U256::from(1_000u64)});
    let gas: U64 = call(rpc, "eth_estimateGas", json!([request])).await?;
    let history: FeeHistory = call(rpc, "eth_feeHistory", json!(["0x5", "latest", [20.0]])).await?;
    let base_fee = history
        .base_fee_per_gas
        .last()
        .copied()
        .ok_or("eth_feeHistory: no next base fee")?;
    let tip: U256 = call(rpc, "eth_maxPriorityFeePerGas", json!([])).await?;
    let tip: u128 = tip.saturating_to();
    let tx = TxEip1559 {
        chain_id: chain_id.to(),
        nonce: nonce.to(),
        gas_limit: gas.to(),
        max_fee_per_gas: base_fee * 2 + tip,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value: U256::from(1_000u64),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let signature = signer
        .sign_hash_sync(&tx.signature_hash())
        .map_err(|e| format!("signing: {e}"))?;
    let raw = OpTxEnvelope::Eip1559(tx.into_signed(signature)).encoded_2718();
    let hash: B256 = call(rpc, "eth_sendRawTransaction", json!([Bytes::from(raw)])).await?;
    // Like a wallet UI: the next transfer once this one is preconfirmed (pending nonce moved).
    let deadline = tokio::time::Instant::now() + PRECONFIRM_WAIT;
    while tokio::time::Instant::now() < deadline {
        let now: Result<U64, _> =
            call(rpc, "eth_getTransactionCount", json!([from, "pending"])).await;
        if now.is_ok_and(|n| n > nonce) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(hash)
}
