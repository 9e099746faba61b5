//! A real client, Foundry's `cast`, against flashblocks-rpc in front of the devnet with
//! flashblocks, once on engine-mux's stream (metadata with receipts) and once on the same
//! stream cut to Base's metadata (`{block_number}` only, so receipts come from the execution of
//! the pending chain through the devnet engine's `eth_simulateV1`): `cast receipt` finds a
//! transaction before its block is sealed, `cast call --block pending` sees its storage write,
//! and `cast balance --block pending` is the balance the sealed block then has.
//!
//! The binary: `$CAST`, else `cast` on `PATH`, else the one `scripts/test.sh` installs
//! (`npm install --prefix target/foundry @foundry-rs/cast`, whose platform package
//! `@foundry-rs/cast-linux-amd64` ships `bin/cast`). Without any, the test prints a `SKIPPED`
//! line, or fails under `ENGINE_MUX_REQUIRE_ALL_TESTS=1` (as `scripts/test.sh` runs it).

use std::{path::PathBuf, process::Command};

use alloy_primitives::{Address, B256, Bytes, TxKind, U256, hex};
use serde_json::{Value, json};

use e2e::{BLOCK_TIME, Net, Relay, call, eventually_some, quantity, start_rpc};

/// Transactions a loaded machine may push past their block; one must be seen pending.
const ATTEMPTS: u64 = 4;

/// Runtime: with calldata, stores its first word in slot 0; without, returns slot 0.
const INITCODE: [u8; 35] =
    hex!("601880600b6000396000f3" "3615600c57600035600055005b60005460005260206000f3");

fn cast_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CAST") {
        return Some(p.into());
    }
    if Command::new("cast")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("cast".into());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
    let modules = target.join("foundry/node_modules/@foundry-rs");
    std::fs::read_dir(modules)
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin/cast"))
        .find(|p| p.is_file())
}

/// Runs `cast args...`; its trimmed stdout, or `None` when it failed.
fn cast(bin: &PathBuf, args: &[&str]) -> Option<String> {
    let out = Command::new(bin).args(args).output().expect("run cast");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn sealed(net: &Net, hash: B256) -> u64 {
    eventually_some(8 * BLOCK_TIME, "the block sealed", || async {
        let r: Value = call(&net.local, "eth_getTransactionReceipt", json!([hash])).await;
        (!r.is_null()).then(|| quantity(&r["blockNumber"]))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_sees_receipts_calls_and_balances_before_the_block_seals() {
    let Some(bin) = cast_binary() else {
        test_utils::skip(
            "cast_sees_receipts_calls_and_balances_before_the_block_seals",
            "no cast binary (set CAST, put cast on PATH, or run scripts/test.sh, which installs @foundry-rs/cast into target/foundry)",
        );
        return;
    };
    let net = Net::start(0.0).await;
    let stripped = Relay::stripping_metadata(net.flashblocks_url()).await;
    let with_metadata = start_rpc(&net.flashblocks_url(), &net.upstream_url(), &[]).await;
    let without_metadata = start_rpc(&stripped.url(), &net.upstream_url(), &[]).await;

    let contract = net.sender.address().create(0);
    let deploy = net
        .send_call(0, TxKind::Create, U256::ZERO, Bytes::from_static(&INITCODE))
        .await;
    sealed(&net, deploy).await;
    let mut nonce = 1;
    for (label, rpc) in [
        ("metadata", &with_metadata),
        ("no metadata", &without_metadata),
    ] {
        let url = rpc.http_url();
        let mut seen_ahead = 0;
        for attempt in 1..=ATTEMPTS {
            let value = 1_000 + attempt;
            let word = B256::from(U256::from(value));
            let store = net
                .send_call(
                    nonce,
                    TxKind::Call(contract),
                    U256::ZERO,
                    word.to_vec().into(),
                )
                .await;
            let to = Address::from(rand::random::<[u8; 20]>());
            let transfer = net
                .send_call(nonce + 1, TxKind::Call(to), U256::from(value), Bytes::new())
                .await;
            nonce += 2;
            let hash = transfer.to_string();
            let receipt: Value =
                eventually_some(8 * BLOCK_TIME, "cast receipt of the transfer", || async {
                    let out = cast(&bin, &["receipt", "--async", "--json", &hash, "-r", &url])?;
                    serde_json::from_str::<Value>(&out)
                        .ok()
                        .filter(|r| !r.is_null())
                })
                .await;
            let block = quantity(&receipt["blockNumber"]);
            let store_receipt = cast(
                &bin,
                &[
                    "receipt",
                    "--async",
                    "--json",
                    &store.to_string(),
                    "-r",
                    &url,
                ],
            );
            let stored = cast(
                &bin,
                &[
                    "call",
                    &contract.to_string(),
                    "--block",
                    "pending",
                    "-r",
                    &url,
                ],
            );
            let balance = cast(
                &bin,
                &["balance", &to.to_string(), "--block", "pending", "-r", &url],
            );
            let head = quantity(&call(&net.local, "eth_blockNumber", json!([])).await);
            if head < block {
                // Everything above was read while the block was still being built.
                seen_ahead += 1;
                let store_receipt: Value =
                    serde_json::from_str(&store_receipt.expect("store receipt")).unwrap();
                assert_eq!(
                    store_receipt["status"],
                    json!("0x1"),
                    "{label}: {store_receipt}"
                );
                assert_eq!(
                    stored.as_deref(),
                    Some(word.to_string().as_str()),
                    "{label} attempt {attempt}: cast call --block pending misses the write"
                );
                assert_eq!(
                    balance.as_deref(),
                    Some(value.to_string().as_str()),
                    "{label}: pending balance"
                );
            }
            let sealed_in = sealed(&net, transfer).await;
            assert_eq!(
                sealed_in, block,
                "{label}: sealed in another block than preconfirmed"
            );
            let after = cast(
                &bin,
                &[
                    "balance",
                    &to.to_string(),
                    "--block",
                    &sealed_in.to_string(),
                    "-r",
                    &net.upstream_url(),
                ],
            );
            assert_eq!(
                after.as_deref(),
                Some(value.to_string().as_str()),
                "{label}: sealed balance"
            );
            if let Some(b) = &balance {
                assert_eq!(
                    b,
                    &value.to_string(),
                    "{label}: pending balance differs from the sealed one"
                );
            }
        }
        assert!(
            seen_ahead > 0,
            "{label}: nothing was read while still pending"
        );
    }
    assert_eq!(
        e2e::metric(
            &without_metadata.metrics_text(),
            r#"flashblocks_rpc_simulations_total{outcome="divergent"}"#
        ),
        0.0,
        "the simulation of the devnet's blocks must match the stream's gas"
    );
    assert!(
        e2e::metric(
            &without_metadata.metrics_text(),
            r#"flashblocks_rpc_simulations_total{outcome="ok"}"#
        ) > 0.0
    );
    with_metadata.shutdown().await;
    without_metadata.shutdown().await;
    net.stop().await;
}
