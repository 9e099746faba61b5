//! The cost of a failover carry-over on the new leader: the time from op-node's first
//! forkchoiceUpdated (with attributes) on the new leader to its getPayload answer, asked right
//! away, with the dead peer's preconfirmed block held for that parent (`carry`: its TXS
//! transactions are nonce-checked against the local EL, forced into the attributes, executed at
//! the FCU) and without (`plain`: the same slot, nothing held on the parent). A real local
//! engine, builder engine and engine-mux (following a stand-in peer stream) on loopback.
//!
//! Run: `cargo bench -p devnet --bench failover_carry` (`ROUNDS=n` per case, default 40;
//! `TXS=n` carried transactions, default 20).

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rpc_types_engine::PayloadId;
use devnet::{
    app::{
        ha::{FollowingStack, op_node_slot},
        metric_value,
    },
    chain::{
        accounts::{raw_transaction, sign_transfer},
        attributes::{SequencerParams, sequencer_attributes},
    },
};
use op_alloy_rpc_types_engine::{OpFlashblockPayload, OpFlashblockPayloadBase};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn summary(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label:<6} n={:<3} p50={:>8.3} ms  p90={:>8.3} ms  max={:>8.3} ms",
        v.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.9).as_secs_f64() * 1e3,
        q(1.0).as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = env("ROUNDS", 40);
    let per_block = env("TXS", 20);
    let stack = FollowingStack::start(&["--log-level=warn".into()])
        .await
        .unwrap();
    let FollowingStack {
        local,
        mux,
        client,
        spec,
        signers,
        peer,
        ..
    } = &stack;
    let mut nonces = vec![0u64; signers.len()];
    let (mut carry, mut plain) = (Vec::new(), Vec::new());
    let mut accepted = 0.0;
    for round in 0..rounds * 2 {
        let head = local.engine.head();
        let number = head.header.number + 1;
        let attrs = sequencer_attributes(
            spec,
            &SequencerParams::default(),
            number,
            head.header.timestamp + 1,
        );
        let carrying = round % 2 == 0;
        // The peer's block for this height: on this parent when carrying, on another otherwise.
        let parent = if carrying {
            head.hash
        } else {
            B256::repeat_byte(0xee)
        };
        let mut txs: Vec<Bytes> = Vec::new();
        for i in 0..per_block {
            let s = i % signers.len();
            let tx = sign_transfer(
                &signers[s],
                spec.chain_id,
                nonces[s],
                Address::repeat_byte(0x55),
                U256::from(1),
                2_000_000_000,
                1_000_000,
            )
            .unwrap();
            if carrying {
                nonces[s] += 1;
            }
            txs.push(raw_transaction(&tx));
        }
        let mut fb = OpFlashblockPayload {
            payload_id: PayloadId::new((round as u64).to_be_bytes()),
            index: 0,
            base: Some(OpFlashblockPayloadBase {
                parent_hash: parent,
                block_number: number,
                ..Default::default()
            }),
            ..Default::default()
        };
        fb.diff.transactions = attrs.transactions.clone().unwrap();
        peer.publish(&fb);
        fb.index = 1;
        fb.base = None;
        fb.diff.transactions = txs;
        peer.publish(&fb);
        accepted += 2.0;
        let waited = std::time::Instant::now();
        while metric_value(
            &mux.metrics_text(),
            "engine_mux_peer_flashblocks_total",
            &[("outcome", "accepted")],
        ) < accepted
        {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "round {round}: the peer's flashblocks were not accepted:\n{}",
                mux.metrics_text()
                    .lines()
                    .filter(|l| l.contains("peer"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (_, block, elapsed) = op_node_slot(client, spec, head.hash, &attrs).await.unwrap();
        let expected = if carrying { 1 + per_block } else { 1 };
        assert_eq!(block.len(), expected, "round {round}");
        if carrying { &mut carry } else { &mut plain }.push(elapsed);
    }
    println!("FCU (with attributes) to getPayload answer on the new leader, TXS={per_block}:");
    summary("plain", plain);
    summary("carry", carry);
    stack.stop().await;
}
