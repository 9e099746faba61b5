//! Pending state beyond receipts, read through flashblocks-rpc in front of the devnet with
//! flashblocks, each on two instances: one on engine-mux's stream (metadata with receipts, no
//! balances: the devnet builder sends none) and one on the same stream cut to Base's metadata
//! (`{block_number}` only, so receipts come from executing the pending chain through the
//! devnet engine's `eth_simulateV1`):
//!
//! - `eth_getLogs` whose range reaches pending merges the pending blocks' logs after the
//!   upstream's, address and topic filters honoured, with the log indexes the sealed block has;
//! - `eth_getCode` / `eth_getStorageAt` at `pending` see a preconfirmed deployment and storage
//!   write (read by probe blocks);
//! - `eth_getBalance(pending)` after a preconfirmed contract call that moves value on
//!   (sender, contract, an account only the contract's code pays, the L1 and base fee vaults,
//!   the fee recipient) equals the balance the sealed block then has;
//! - `eth_getTransactionCount(pending)` counts the sender's preconfirmed transactions.
//!
//! Each read is checked against the sealed block (the pending receipts too), and each test
//! requires that at least one attempt was read while its block was still being built (the
//! head then below it). Each scenario is a function of the [`Net`] it runs on, so
//! `crate::op_reth` runs the same scenarios with a real op-reth as the upstream.

use alloy_primitives::{Address, B256, Bytes, TxKind, U256, hex};
use serde_json::{Value, json};

use e2e::{Net, Overlays, assert_covers, call, quantity};

/// Attempts a loaded machine may push past their block; one must be read while pending.
const ATTEMPTS: u64 = 4;

/// Runtime: stores its first calldata word in slot 0 (or, without calldata, returns slot 0).
const STORE_INITCODE: [u8; 35] =
    hex!("601880600b6000396000f3" "3615600c57600035600055005b60005460005260206000f3");
/// What `STORE_INITCODE` deploys.
const STORE_RUNTIME: [u8; 24] = hex!("3615600c57600035600055005b60005460005260206000f3");
/// Runtime: sends half of the call's value on to the address in its first calldata word
/// (`CALL(gas, calldata[0], callvalue / 2)`), keeping the rest.
const FORWARDER_INITCODE: [u8; 25] = hex!("600e80600b6000396000f3" "5f5f5f5f600234045f355af15000");
/// The topic the logging contract (`pending_call::initcode`) emits.
const LOG_TOPIC: B256 = B256::repeat_byte(0xab);

fn word(v: u64) -> Bytes {
    B256::from(U256::from(v)).to_vec().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_logs_reaching_pending_merges_pending_logs_with_filters_and_block_indexes() {
    logs_scenario(Net::start(0.0).await).await;
}

/// The scenario on `net` (the devnet's own engine, or op-reth: `crate::op_reth`).
pub(crate) async fn logs_scenario(net: Net) {
    let o = Overlays::start(net).await;
    let net = &o.net;
    let (a, b) = (
        net.sender.address().create(0),
        net.sender.address().create(1),
    );
    net.send_call(
        0,
        TxKind::Create,
        U256::ZERO,
        crate::pending_call::initcode(),
    )
    .await;
    let deployed = net
        .send_call(
            1,
            TxKind::Create,
            U256::ZERO,
            crate::pending_call::initcode(),
        )
        .await;
    net.sealed_in(deployed).await;
    let mut nonce = 2;
    let mut seen_ahead = [0; 2];
    for attempt in 1..=ATTEMPTS {
        // The first block not sealed yet: the range starts with this attempt's blocks.
        let from = o.head().await + 1;
        // Two logs from A around one from B: B's sits between A's in the block-wide log
        // indexes, and the address filter must leave it out.
        let mut sent = Vec::new();
        for (to, v) in [
            (a, 10 * attempt),
            (b, 10 * attempt + 1),
            (a, 10 * attempt + 2),
        ] {
            sent.push(
                net.send_call(nonce, TxKind::Call(to), U256::ZERO, word(v))
                    .await,
            );
            nonce += 1;
        }
        let (block, receipts) = o.preconfirmed(sent[2]).await;
        let filter_a = json!({"fromBlock": format!("{from:#x}"), "toBlock": "pending",
            "address": a, "topics": [[LOG_TOPIC]]});
        let filter_b = json!({"fromBlock": format!("{from:#x}"), "toBlock": "pending",
            "address": [b]});
        let other_topic = json!({"fromBlock": format!("{from:#x}"), "toBlock": "pending",
            "topics": [[B256::repeat_byte(0xcd)]]});
        let mut served = Vec::new();
        for (label, _, ours) in &o.rpcs {
            let logs_a = call(ours, "eth_getLogs", json!([filter_a])).await;
            let logs_b = call(ours, "eth_getLogs", json!([filter_b])).await;
            let none = call(ours, "eth_getLogs", json!([other_topic])).await;
            served.push((*label, logs_a, logs_b, none));
        }
        let pending_at_read = o.head().await < block;
        let sealed = net.sealed_in(sent[2]).await;
        assert_eq!(sealed, block, "sealed in another block than preconfirmed");
        o.assert_receipts_sealed_as_served(&format!("attempt {attempt}"), sent[2], &receipts)
            .await;
        let upto = |f: &Value| {
            let mut f = f.clone();
            f["toBlock"] = json!(format!("{sealed:#x}"));
            f
        };
        let sealed_a = call(&net.local, "eth_getLogs", json!([upto(&filter_a)])).await;
        let sealed_b = call(&net.local, "eth_getLogs", json!([upto(&filter_b)])).await;
        let hashes = |logs: &Value| -> Vec<Value> {
            logs.as_array()
                .unwrap()
                .iter()
                .map(|l| l["transactionHash"].clone())
                .collect()
        };
        assert_eq!(
            hashes(&sealed_a),
            [json!(sent[0]), json!(sent[2])],
            "upstream's own logs of A"
        );
        for (i, (label, logs_a, logs_b, none)) in served.iter().enumerate() {
            // Exactly what the upstream serves for the same range once sealed: the same logs,
            // block-wide log indexes, transaction indexes, block number and data.
            assert_covers(&format!("{label} attempt {attempt}: A"), &sealed_a, logs_a);
            assert_covers(&format!("{label} attempt {attempt}: B"), &sealed_b, logs_b);
            assert_eq!(none, &json!([]), "{label}: topic filter");
            if pending_at_read {
                seen_ahead[i] += 1;
            }
        }
    }
    for (i, (label, ..)) in o.rpcs.iter().enumerate() {
        assert!(
            seen_ahead[i] > 0,
            "{label}: no logs were read while pending"
        );
    }
    o.assert_simulations_matched();
    o.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_and_storage_at_pending_see_a_preconfirmed_deployment_and_write() {
    code_and_storage_scenario(Net::start(0.0).await).await;
}

/// The scenario on `net` (the devnet's own engine, or op-reth: `crate::op_reth`).
pub(crate) async fn code_and_storage_scenario(net: Net) {
    let o = Overlays::start(net).await;
    let net = &o.net;
    let mut nonce = 0;
    let (mut code_ahead, mut storage_ahead) = ([0; 2], [0; 2]);
    for attempt in 1..=ATTEMPTS {
        let contract = net.sender.address().create(nonce);
        net.send_call(
            nonce,
            TxKind::Create,
            U256::ZERO,
            Bytes::from_static(&STORE_INITCODE),
        )
        .await;
        let value = word(1_000 + attempt);
        let store = net
            .send_call(nonce + 1, TxKind::Call(contract), U256::ZERO, value.clone())
            .await;
        nonce += 2;
        let (block, receipts) = o.preconfirmed(store).await;
        let mut served = Vec::new();
        for (label, _, ours) in &o.rpcs {
            let code = call(ours, "eth_getCode", json!([contract, "pending"])).await;
            let slot = call(
                ours,
                "eth_getStorageAt",
                json!([contract, "0x0", "pending"]),
            )
            .await;
            let code_latest = call(ours, "eth_getCode", json!([contract, "latest"])).await;
            let slot_latest =
                call(ours, "eth_getStorageAt", json!([contract, "0x0", "latest"])).await;
            served.push((*label, code, slot, code_latest, slot_latest));
        }
        let pending_at_read = o.head().await < block;
        assert_eq!(net.sealed_in(store).await, block);
        o.assert_receipts_sealed_as_served(&format!("attempt {attempt}"), store, &receipts)
            .await;
        let at = format!("{block:#x}");
        let sealed_code = call(&net.local, "eth_getCode", json!([contract, at])).await;
        let sealed_slot = call(&net.local, "eth_getStorageAt", json!([contract, "0x0", at])).await;
        assert_eq!(sealed_code, json!(Bytes::from_static(&STORE_RUNTIME)));
        assert_eq!(sealed_slot, json!(value));
        for (i, (label, code, slot, code_latest, slot_latest)) in served.into_iter().enumerate() {
            assert_eq!(code, sealed_code, "{label} attempt {attempt}: pending code");
            assert_eq!(slot, sealed_slot, "{label} attempt {attempt}: pending slot");
            if pending_at_read {
                // The write's block is not sealed: latest has not stored it yet.
                assert_eq!(slot_latest, json!(B256::ZERO), "{label}: latest slot");
                storage_ahead[i] += 1;
                if code_latest == json!("0x") {
                    code_ahead[i] += 1;
                }
            }
        }
    }
    for (i, (label, ..)) in o.rpcs.iter().enumerate() {
        assert!(storage_ahead[i] > 0, "{label}: no write read while pending");
        assert!(
            code_ahead[i] > 0,
            "{label}: no deployment read while pending"
        );
    }
    o.assert_simulations_matched();
    o.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_balances_after_a_contract_call_equal_the_sealed_ones() {
    balances_scenario(Net::start(0.0).await).await;
}

/// The scenario on `net` (the devnet's own engine, or op-reth: `crate::op_reth`).
pub(crate) async fn balances_scenario(net: Net) {
    let o = Overlays::start(net).await;
    let net = &o.net;
    let forwarder = net.sender.address().create(0);
    let deployed = net
        .send_call(
            0,
            TxKind::Create,
            U256::ZERO,
            Bytes::from_static(&FORWARDER_INITCODE),
        )
        .await;
    net.sealed_in(deployed).await;
    let mut seen_ahead = [0; 2];
    for attempt in 1..=ATTEMPTS {
        let target = Address::from(rand::random::<[u8; 20]>());
        let value = U256::from(1_000_000_000_000_000u64 + attempt);
        let hash = net
            .send_call(
                attempt,
                TxKind::Call(forwarder),
                value,
                B256::left_padding_from(target.as_slice()).to_vec().into(),
            )
            .await;
        let (block, receipts) = o.preconfirmed(hash).await;
        let (_, _, first) = &o.rpcs[0];
        let pending = call(first, "eth_getBlockByNumber", json!(["pending", false])).await;
        // Sender, contract, the account only the contract's code pays, the fee vaults the
        // pending transaction pays (the L1 data fee the simulation does not charge), and the
        // fee recipient.
        let accounts: Vec<Address> = vec![
            net.sender.address(),
            forwarder,
            target,
            fee_vault(0x1a),
            fee_vault(0x19),
            serde_json::from_value(pending["miner"].clone()).unwrap(),
        ];
        let mut served = Vec::new();
        for (label, _, ours) in &o.rpcs {
            let mut balances = Vec::new();
            for a in &accounts {
                balances.push(call(ours, "eth_getBalance", json!([a, "pending"])).await);
            }
            served.push((*label, balances));
        }
        let pending_at_read = o.head().await < block;
        assert_eq!(net.sealed_in(hash).await, block);
        o.assert_receipts_sealed_as_served(&format!("attempt {attempt}"), hash, &receipts)
            .await;
        let mut sealed = Vec::new();
        for a in &accounts {
            sealed.push(
                call(
                    &net.local,
                    "eth_getBalance",
                    json!([a, format!("{block:#x}")]),
                )
                .await,
            );
        }
        assert_eq!(
            sealed[2],
            json!(value / U256::from(2)),
            "the contract forwarded half"
        );
        for (i, (label, balances)) in served.into_iter().enumerate() {
            for ((a, ours), sealed) in accounts.iter().zip(&balances).zip(&sealed) {
                assert_eq!(
                    ours, sealed,
                    "{label} attempt {attempt}: pending balance of {a}"
                );
            }
            if pending_at_read {
                seen_ahead[i] += 1;
            }
        }
    }
    for (i, (label, ..)) in o.rpcs.iter().enumerate() {
        assert!(seen_ahead[i] > 0, "{label}: no balance read while pending");
    }
    o.assert_simulations_matched();
    o.stop().await;
}

/// The OP Stack fee vault predeploy `0x4200…00{last}`.
fn fee_vault(last: u8) -> Address {
    let mut a = [0u8; 20];
    a[0] = 0x42;
    a[19] = last;
    Address::from(a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_nonce_counts_preconfirmed_transactions_with_and_without_metadata() {
    nonce_scenario(Net::start(0.0).await).await;
}

/// The scenario on `net` (the devnet's own engine, or op-reth: `crate::op_reth`).
pub(crate) async fn nonce_scenario(net: Net) {
    let o = Overlays::start(net).await;
    let net = &o.net;
    let sender = net.sender.address();
    let mut nonce = 0;
    let mut seen_ahead = [0; 2];
    for attempt in 1..=ATTEMPTS {
        // A contract deployment and a call: neither is a plain transfer.
        net.send_call(
            nonce,
            TxKind::Create,
            U256::ZERO,
            Bytes::from_static(&STORE_INITCODE),
        )
        .await;
        let second = net
            .send_call(
                nonce + 1,
                TxKind::Call(sender.create(nonce)),
                U256::ZERO,
                word(attempt),
            )
            .await;
        nonce += 2;
        let (block, receipts) = o.preconfirmed(second).await;
        let mut served = Vec::new();
        for (label, _, ours) in &o.rpcs {
            let pending = call(ours, "eth_getTransactionCount", json!([sender, "pending"])).await;
            let latest = call(ours, "eth_getTransactionCount", json!([sender, "latest"])).await;
            served.push((*label, quantity(&pending), quantity(&latest)));
        }
        let pending_at_read = o.head().await < block;
        assert_eq!(net.sealed_in(second).await, block);
        o.assert_receipts_sealed_as_served(&format!("attempt {attempt}"), second, &receipts)
            .await;
        let sealed = quantity(
            &call(
                &net.local,
                "eth_getTransactionCount",
                json!([sender, format!("{block:#x}")]),
            )
            .await,
        );
        assert_eq!(sealed, nonce);
        for (i, (label, pending, latest)) in served.into_iter().enumerate() {
            assert_eq!(pending, nonce, "{label} attempt {attempt}: pending nonce");
            if pending_at_read {
                assert!(latest < nonce, "{label}: latest already counts them");
                seen_ahead[i] += 1;
            }
        }
    }
    for (i, (label, ..)) in o.rpcs.iter().enumerate() {
        assert!(seen_ahead[i] > 0, "{label}: no nonce read while pending");
    }
    o.assert_simulations_matched();
    o.stop().await;
}
