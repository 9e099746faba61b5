//! `eth_call` at `pending` runs after the pending transactions: flashblocks-rpc has the devnet
//! engine (or op-reth: `crate::op_reth`) simulate the pending blocks' transactions and then the
//! call (`eth_simulateV1`), so a contract's state written by a preconfirmed transaction is read
//! before its block seals, and `eth_estimateGas` at `pending` prices a call on that state; on
//! engine-mux's stream and on it stripped of metadata.

use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, hex};
use alloy_signer::SignerSync;
use devnet::chain::accounts::raw_transaction;
use engine_api::Upstream;
use op_alloy_consensus::OpTxEnvelope;
use serde_json::json;

use e2e::{Net, Overlays, call, quantity};

/// Transfers a loaded machine may push past a block; one of these must be seen pending.
const ATTEMPTS: u64 = 4;

/// Runtime: with calldata `v`, stores `v` in slot 0 (and logs and returns it); without
/// calldata, reverts with slot 0 as revert data — so a read is an `eth_call` answered with
/// code 3 and the stored word as `data`.
pub(crate) fn initcode() -> Bytes {
    let mut code = hex!("604680600b6000396000f3").to_vec();
    code.extend_from_slice(&hex!("3615603a57600035806000556000527f"));
    code.extend_from_slice(&[0xab; 32]);
    code.extend_from_slice(&hex!("60206000a160206000f35b60005460005260206000fd"));
    code.into()
}

pub(crate) fn word(v: u64) -> Bytes {
    B256::from(U256::from(v)).to_vec().into()
}

/// Signs a call (or a creation) from the test's account and sends it through engine-mux.
pub(crate) async fn send(net: &Net, nonce: u64, to: TxKind, input: Bytes) -> B256 {
    let tx = TxEip1559 {
        chain_id: net.chain_id,
        nonce,
        gas_limit: 300_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000,
        to,
        value: U256::ZERO,
        access_list: Default::default(),
        input,
    };
    let signature = net.sender.sign_hash_sync(&tx.signature_hash()).unwrap();
    let raw = raw_transaction(&OpTxEnvelope::Eip1559(tx.into_signed(signature)));
    let hash = call(&net.mux, "eth_sendRawTransaction", json!([raw])).await;
    serde_json::from_value(hash).unwrap()
}

/// The word the contract holds at `tag`, read through `rpc` (its revert data).
pub(crate) async fn stored(rpc: &Upstream, contract: Address, tag: &str) -> Bytes {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call",
        "params": [{"to": contract}, tag]});
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let res = rpc
        .forward(&headers, body.to_string().into(), Duration::from_secs(2))
        .await
        .unwrap();
    match flashblocks_rpc::rpc::parse_response(res.body()) {
        Err(flashblocks_rpc::rpc::RpcError::Upstream(e)) => {
            assert_eq!(e.code(), 3, "{e:?}");
            serde_json::from_str(e.data().expect("revert data").get()).unwrap()
        }
        other => panic!("eth_call at {tag}: expected a revert, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_eth_call_sees_a_preconfirmed_storage_write_before_its_block_seals() {
    scenario(Net::start(0.0).await).await;
}

/// The scenario on `net` (the devnet's own engine, or op-reth: `crate::op_reth`), through both
/// instances: on engine-mux's stream and on it stripped of metadata.
pub(crate) async fn scenario(net: Net) {
    let o = Overlays::start(net).await;
    let net = &o.net;
    let contract = net.sender.address().create(0);
    let deploy = send(net, 0, TxKind::Create, initcode()).await;
    net.sealed_in(deploy).await;
    for (label, _, ours) in &o.rpcs {
        assert_eq!(
            stored(ours, contract, "pending").await,
            word(0),
            "{label}: before any write{}",
            o.log_hint()
        );
    }

    let estimate = |ours: &Upstream, tag: &'static str| {
        let request = json!({"from": net.sender.address(), "to": contract, "data": word(7)});
        let ours = ours.clone();
        async move { quantity(&call(&ours, "eth_estimateGas", json!([request, tag])).await) }
    };
    let mut seen_ahead = [0; 2];
    let mut nonce = 1;
    for attempt in 1..=ATTEMPTS {
        let hash = send(net, nonce, TxKind::Call(contract), word(attempt)).await;
        nonce += 1;
        let (block, receipts) = o.preconfirmed(hash).await;
        let mut served = Vec::new();
        for (label, _, ours) in &o.rpcs {
            let pending = stored(ours, contract, "pending").await;
            let latest = stored(ours, contract, "latest").await;
            // Storing into the slot the pending write made non-zero costs ~17k gas less than
            // storing into the zero slot latest still has.
            let gas = (
                estimate(ours, "pending").await,
                estimate(ours, "latest").await,
            );
            served.push((*label, pending, latest, gas));
        }
        let head_after = o.head().await;
        for (i, (label, pending, latest, (gas_pending, gas_latest))) in
            served.into_iter().enumerate()
        {
            // Pending always includes the write; while its block is not sealed, latest does
            // not.
            assert_eq!(
                pending,
                word(attempt),
                "{label} attempt {attempt}: pending misses the write"
            );
            if head_after < block {
                assert_eq!(latest, word(0), "{label} attempt {attempt}: latest");
                assert!(
                    gas_pending + 15_000 < gas_latest,
                    "{label} attempt {attempt}: pending estimate {gas_pending}, latest {gas_latest}"
                );
                seen_ahead[i] += 1;
            }
        }
        assert_eq!(net.sealed_in(hash).await, block);
        o.assert_receipts_sealed_as_served(&format!("attempt {attempt}"), hash, &receipts)
            .await;
        // Clear the slot again for the next attempt.
        let clear = send(net, nonce, TxKind::Call(contract), word(0)).await;
        nonce += 1;
        net.sealed_in(clear).await;
    }
    for (i, (label, ..)) in o.rpcs.iter().enumerate() {
        assert!(
            seen_ahead[i] > 0,
            "{label}: no store was read while still pending"
        );
    }
    o.assert_simulations_matched();
    o.stop().await;
}
