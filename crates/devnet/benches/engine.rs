//! Devnet engine benchmark: build a block of N transfers from attributes + pool, then validate
//! it by re-execution (sender recovery included), as `engine_getPayload` and
//! `engine_newPayload` do. Run: `cargo bench -p devnet --bench engine`.

use std::time::{Duration, Instant};

use alloy_consensus::transaction::{Recovered, SignerRecoverable};
use alloy_primitives::{Address, U256};
use devnet::{
    chain::{
        accounts::{funded_dev_signers, sign_transfer},
        attributes::{SequencerParams, sequencer_attributes},
        genesis::{ForkOverrides, default_genesis},
    },
    engine::{
        build::build_block,
        store::ChainBlock,
        validate::{validate_block, validate_block_with_senders},
    },
};
use op_alloy_consensus::OpTxEnvelope;

const ROUNDS: usize = 15;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let g = default_genesis(1_000, ForkOverrides::default()).expect("genesis");
    let spec = g.spec.clone();
    let signers = funded_dev_signers(&g.state).expect("dev keys");
    let state = g.state.clone();
    let genesis = ChainBlock::seal(g.header, Vec::new(), Vec::new(), g.state);
    println!(
        "| transfers | build p50 ms | validate p50 ms | build+validate p50 ms | build+validate max ms | validate, senders from pool, p50 ms | gas used |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [200usize, 1_000] {
        // Distinct recipients: every transfer creates an account, the worst case for the trie.
        let txs: Vec<Recovered<OpTxEnvelope>> = (0..n)
            .map(|i| {
                let signer = &signers[i % signers.len()];
                let nonce = (i / signers.len()) as u64;
                let to = Address::from_word(alloy_primitives::keccak256((i as u64).to_be_bytes()));
                sign_transfer(
                    signer,
                    spec.chain_id,
                    nonce,
                    to,
                    U256::from(1),
                    1_000_000_000,
                    1_000,
                )
                .expect("sign")
                .try_into_recovered()
                .expect("recover")
            })
            .collect();
        // 60M gas: at Jovian's default DA-footprint scalar (400) a 30M block fits ~750 transfers.
        let params = SequencerParams {
            gas_limit: 60_000_000,
            ..SequencerParams::default()
        };
        let attrs = sequencer_attributes(&spec, &params, 1, 1_001);
        let senders: std::collections::HashMap<_, _> =
            txs.iter().map(|t| (t.tx_hash(), t.signer())).collect();
        let (mut builds, mut validates, mut totals, mut warm) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut gas = 0;
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            let built = build_block(&spec, &genesis, &state, &attrs, txs.clone()).expect("build");
            let t1 = Instant::now();
            assert_eq!(
                built.block.transactions.len(),
                n + 1,
                "all transfers included"
            );
            let consensus = built.block.to_consensus_block();
            let t2 = Instant::now();
            let valid = validate_block(&spec, &genesis, &state, consensus, built.block.hash)
                .expect("block re-validates");
            let t3 = Instant::now();
            assert_eq!(valid.hash, built.block.hash);
            let consensus = built.block.to_consensus_block();
            let t4 = Instant::now();
            validate_block_with_senders(
                &spec,
                &genesis,
                &state,
                consensus,
                built.block.hash,
                &senders,
            )
            .expect("block re-validates");
            warm.push(t4.elapsed());
            gas = built.block.header.gas_used;
            builds.push(t1 - t0);
            validates.push(t3 - t2);
            totals.push((t1 - t0) + (t3 - t2));
        }
        let max = *totals.iter().max().expect("rounds");
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {gas} |",
            ms(percentile(&mut builds, 0.5)),
            ms(percentile(&mut validates, 0.5)),
            ms(percentile(&mut totals, 0.5)),
            ms(max),
            ms(percentile(&mut warm, 0.5)),
        );
    }
}
