//! Tests of the pending state: the chain served on the upstream head, held and evicted blocks,
//! balances and nonces derived from the flashblocks, receipts checked and filled in.

use std::time::{Duration, Instant};

use alloy_consensus::{Eip658Value, Receipt, Sealable, TxReceipt};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bloom, Bytes, TxKind, U256};
use alloy_rpc_types_engine::PayloadId;
use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope, TxDeposit};
use op_alloy_rpc_types_engine::{
    OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
    OpFlashblockPayloadMetadata,
};

use super::{effects::BalanceEffect, state::*};
use crate::{config::PendingConfig, metrics::Rejection};

const MAX_AGE: Duration = Duration::from_secs(1);

fn state(max_blocks: usize) -> PendingState {
    PendingState::new(PendingConfig {
        max_blocks,
        max_flashblocks_per_block: 8,
        head_max_age: MAX_AGE,
    })
}

fn h(n: u8) -> B256 {
    B256::repeat_byte(n)
}

/// A deposit of `mint` to `from` that sends `value` on to `to` (a plain transfer).
fn deposit(from: Address, to: Address, mint: u128, value: u64, salt: u8) -> OpTxEnvelope {
    OpTxEnvelope::Deposit(
        TxDeposit {
            source_hash: h(salt),
            from,
            to: TxKind::Call(to),
            mint,
            value: U256::from(value),
            gas_limit: 21_000,
            is_system_transaction: false,
            input: Bytes::new(),
        }
        .seal_slow(),
    )
}

/// Flashblock `index` of `payload` for block `number` with deposits each using 21000 gas.
fn fb(
    payload: u8,
    index: u64,
    number: u64,
    parent: B256,
    prior: u64,
    txs: &[OpTxEnvelope],
    hash: B256,
) -> OpFlashblockPayload {
    let receipts = txs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let inner = Receipt {
                status: Eip658Value::Eip658(true),
                cumulative_gas_used: 21_000 * (prior + i as u64 + 1),
                logs: Vec::new(),
            };
            let r = OpReceipt::Deposit(OpDepositReceipt {
                inner,
                deposit_nonce: Some(0),
                deposit_receipt_version: Some(1),
            });
            (t.tx_hash(), r)
        })
        .collect();
    OpFlashblockPayload {
        payload_id: PayloadId::new([payload; 8]),
        index,
        base: (index == 0).then(|| OpFlashblockPayloadBase {
            parent_hash: parent,
            block_number: number,
            gas_limit: 30_000_000,
            base_fee_per_gas: U256::from(7),
            ..Default::default()
        }),
        diff: OpFlashblockPayloadDelta {
            gas_used: 21_000 * (prior + txs.len() as u64),
            block_hash: hash,
            logs_bloom: Bloom::ZERO,
            transactions: txs.iter().map(|t| t.encoded_2718().into()).collect(),
            ..Default::default()
        },
        metadata: OpFlashblockPayloadMetadata {
            block_number: number,
            new_account_balances: Default::default(),
            receipts,
        },
    }
}

fn numbers(s: &PendingState, now: Instant) -> Vec<u64> {
    s.chain(now).iter().map(|b| b.number()).collect()
}

#[test]
fn serves_only_blocks_chained_onto_the_head_and_drops_what_the_head_reached() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    s.ingest(&fb(1, 0, 11, h(10), 0, &[], h(11))).unwrap();
    s.ingest(&fb(2, 0, 12, h(11), 0, &[], h(12))).unwrap();
    assert_eq!(numbers(&s, now), [11, 12]);
    s.set_head(11, h(11), now);
    assert_eq!(numbers(&s, now), [12]);
    s.set_head(12, h(99), now);
    assert!(s.is_empty());
    assert!(numbers(&s, now).is_empty());
}

#[test]
fn block_arriving_before_its_parent_is_held_until_the_parent_is_canonical() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    s.ingest(&fb(1, 0, 12, h(11), 0, &[], h(12))).unwrap();
    assert_eq!(s.len(), 1);
    assert!(numbers(&s, now).is_empty(), "held, not served");
    s.set_head(11, h(11), now);
    assert_eq!(numbers(&s, now), [12]);
}

#[test]
fn flashblocks_at_or_below_the_head_are_stale() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    let (why, _) = s.ingest(&fb(1, 0, 10, h(9), 0, &[], h(1))).unwrap_err();
    assert_eq!(why, Rejection::Stale);
}

#[test]
fn held_blocks_are_bounded_lowest_evicted() {
    let now = Instant::now();
    let mut s = state(2);
    s.set_head(10, h(10), now);
    for n in 11..=14u64 {
        s.ingest(&fb(n as u8, 0, n, h(n as u8 - 1), 0, &[], h(n as u8)))
            .unwrap();
    }
    assert_eq!(s.len(), 2);
    assert!(numbers(&s, now).is_empty(), "11 and 12 were evicted");
    s.set_head(12, h(12), now);
    assert_eq!(numbers(&s, now), [13, 14]);
}

#[test]
fn a_missing_flashblock_drops_the_block() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    s.ingest(&fb(1, 0, 11, h(10), 0, &[], h(11))).unwrap();
    let (why, _) = s.ingest(&fb(1, 2, 11, h(10), 0, &[], h(12))).unwrap_err();
    assert_eq!(why, Rejection::OutOfOrder);
    assert!(s.is_empty());
}

#[test]
fn nothing_is_served_on_a_head_older_than_the_maximum_age() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    s.ingest(&fb(1, 0, 11, h(10), 0, &[], h(11))).unwrap();
    assert_eq!(numbers(&s, now + MAX_AGE), [11]);
    assert!(numbers(&s, now + MAX_AGE + Duration::from_millis(1)).is_empty());
}

#[test]
fn new_payload_at_the_same_height_replaces_and_a_non_building_child_drops() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    s.ingest(&fb(1, 0, 11, h(10), 0, &[], h(0xa))).unwrap();
    s.ingest(&fb(1, 0, 12, h(0xa), 0, &[], h(0xc))).unwrap();
    let applied = s.ingest(&fb(2, 0, 11, h(10), 0, &[], h(0xb))).unwrap();
    assert_eq!(applied, Applied::Replaced);
    assert_eq!(numbers(&s, now), [11]);
    assert_eq!(s.tip(now).unwrap().hash, h(0xb));
    // Block 12 on some other parent: 11 lost.
    s.ingest(&fb(3, 0, 12, h(0xd), 0, &[], h(0xe))).unwrap();
    assert!(numbers(&s, now).is_empty());
}

#[test]
fn deposit_transfers_derive_balances_and_nonces() {
    let now = Instant::now();
    let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
    let mut s = state(4);
    s.set_head(10, h(10), now);
    let txs = [deposit(a, b, 100, 40, 1)];
    s.ingest(&fb(1, 0, 11, h(10), 0, &txs, h(11))).unwrap();
    let effect = |credit: u64, debit: u64| PendingBalance::Relative {
        head: h(10),
        effect: BalanceEffect {
            credit: U256::from(credit),
            debit: U256::from(debit),
        },
    };
    assert_eq!(s.balance(&a, now), Some(effect(100, 40)));
    assert_eq!(s.balance(&b, now), Some(effect(40, 0)));
    assert_eq!(
        s.balance(&Address::repeat_byte(0xc), now),
        Some(PendingBalance::Untouched)
    );
    assert_eq!(
        s.nonce(&a, now),
        Some(PendingNonce::Relative {
            head: h(10),
            add: 1
        })
    );
    assert_eq!(s.nonce(&b, now), Some(PendingNonce::Untouched));
    let (block, i) = s.find_tx(&txs[0].tx_hash(), now).unwrap();
    assert_eq!((block.number(), i), (11, 0));
}

#[test]
fn reported_balances_win_and_unreported_accounts_are_untouched() {
    let now = Instant::now();
    let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
    let mut s = state(4);
    s.set_head(10, h(10), now);
    let mut first = fb(1, 0, 11, h(10), 0, &[deposit(a, b, 100, 40, 1)], h(11));
    first
        .metadata
        .new_account_balances
        .insert(a, U256::from(1_000));
    s.ingest(&first).unwrap();
    assert_eq!(
        s.balance(&a, now),
        Some(PendingBalance::Known(U256::from(1_000)))
    );
    // The builder reports every account it touched: b is not among them, so unchanged.
    assert_eq!(s.balance(&b, now), Some(PendingBalance::Untouched));
    let mut second = fb(1, 1, 11, h(10), 1, &[], h(12));
    second
        .metadata
        .new_account_balances
        .insert(a, U256::from(900));
    s.ingest(&second).unwrap();
    assert_eq!(
        s.balance(&a, now),
        Some(PendingBalance::Known(U256::from(900)))
    );
}

#[test]
fn receipts_that_do_not_add_up_are_refused() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    let mut bad = fb(
        1,
        0,
        11,
        h(10),
        0,
        &[deposit(Address::ZERO, Address::ZERO, 0, 0, 2)],
        h(11),
    );
    bad.diff.gas_used = 1;
    let (why, _) = s.ingest(&bad).unwrap_err();
    assert_eq!(why, Rejection::BadContent);
    // Receipts for some transactions but not all: refused.
    let mut missing = fb(
        1,
        0,
        11,
        h(10),
        0,
        &[
            deposit(Address::ZERO, Address::ZERO, 0, 0, 3),
            deposit(Address::ZERO, Address::ZERO, 0, 0, 4),
        ],
        h(11),
    );
    let first = *missing.metadata.receipts.keys().next().unwrap();
    missing.metadata.receipts.remove(&first);
    let (why, _) = s.ingest(&missing).unwrap_err();
    assert_eq!(why, Rejection::BadContent);
    assert!(s.is_empty());
}

/// Base's stream: metadata is only `block_number`, no receipts or balances at all. The
/// flashblocks are accepted; transactions are held without receipts, balances unknown.
#[test]
fn flashblocks_without_any_receipts_are_accepted() {
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    let a = Address::repeat_byte(0xaa);
    let mut first = fb(1, 0, 11, h(10), 0, &[deposit(a, a, 0, 0, 3)], h(11));
    first.metadata.receipts.clear();
    first.diff.gas_used = 12_345;
    s.ingest(&first).unwrap();
    let mut second = fb(1, 1, 11, h(10), 1, &[deposit(a, a, 0, 0, 4)], h(12));
    second.metadata.receipts.clear();
    s.ingest(&second).unwrap();
    let tip = s.tip(now).unwrap();
    assert_eq!(tip.hash, h(12));
    assert_eq!(tip.txs.len(), 2);
    assert!(tip.txs.iter().all(|t| t.receipt.is_none()));
    assert_eq!(s.balance(&a, now), Some(PendingBalance::Unknown));
}

/// Base's stream sends no receipts: a simulation of the block fills them in (status, gas,
/// cumulative gas, logs with block-wide indexes), checked against the stream's gas after
/// every flashblock; a simulation whose gas differs is refused.
#[test]
fn a_simulation_fills_in_receipts_and_must_match_the_streams_gas() {
    use super::executed::{Divergence, Outcome};
    let now = Instant::now();
    let mut s = state(4);
    s.set_head(10, h(10), now);
    let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
    let mut first = fb(1, 0, 11, h(10), 0, &[deposit(a, b, 0, 0, 1)], h(11));
    first.metadata.receipts.clear();
    first.diff.gas_used = 30_000;
    s.ingest(&first).unwrap();
    let mut second = fb(
        1,
        1,
        11,
        h(10),
        1,
        &[deposit(b, a, 0, 0, 2), deposit(a, a, 0, 0, 3)],
        h(12),
    );
    second.metadata.receipts.clear();
    second.diff.gas_used = 30_000 + 50_000 + 21_000;
    s.ingest(&second).unwrap();
    let block = s.tip(now).unwrap().clone();
    let log = |n: u8| {
        alloy_primitives::Log::new_unchecked(Address::repeat_byte(n), vec![h(n)], Bytes::new())
    };
    let outcome = |status, gas_used, logs| Outcome {
        status,
        gas_used,
        logs,
    };
    let outcomes = [
        outcome(true, 30_000, vec![log(1), log(2)]),
        outcome(false, 50_000, vec![]),
        outcome(true, 21_000, vec![log(3)]),
    ];
    let done = block.executed(&outcomes).unwrap();
    let receipts: Vec<_> = done
        .txs
        .iter()
        .map(|t| t.receipt.clone().unwrap())
        .collect();
    assert_eq!(
        receipts
            .iter()
            .map(|r| r.cumulative_gas_used())
            .collect::<Vec<_>>(),
        [30_000, 80_000, 101_000]
    );
    assert_eq!(
        receipts.iter().map(|r| r.status()).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(
        done.txs
            .iter()
            .map(|t| (t.gas_used, t.first_log_index))
            .collect::<Vec<_>>(),
        [(30_000, 0), (50_000, 2), (21_000, 2)]
    );
    assert_eq!(receipts[2].logs(), &[log(3)]);
    assert!(done.receipts_complete());
    // The first flashblock's gas says 30000: a simulation using 31000 there diverged.
    let mut wrong = outcomes.clone();
    wrong[0].gas_used = 31_000;
    wrong[1].gas_used = 49_000;
    assert_eq!(
        block.executed(&wrong).unwrap_err(),
        Divergence::Gas {
            txs: 1,
            simulated: 31_000,
            stream: 30_000
        }
    );
    assert!(matches!(
        block.executed(&outcomes[..2]),
        Err(Divergence::Count { .. })
    ));
}
