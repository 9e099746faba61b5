//! The pending chain: blocks keyed by number, served only while they connect to the upstream
//! head (first parent = head hash, each next parent = previous block hash). Blocks at or below
//! the head are dropped; blocks whose parent is not canonical yet are held, bounded.

use std::{collections::BTreeMap, time::Instant};

use alloy_primitives::{Address, B256, U256};
use op_alloy_rpc_types_engine::OpFlashblockPayload;

use super::block::{BalanceEffect, BalanceView, BlockError, PendingBlock};
use crate::{config::PendingConfig, metrics::Rejection};

/// The upstream's latest block as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// When it was observed.
    pub observed_at: Instant,
}

/// What happened to a flashblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Started a new block.
    Started,
    /// Started a new block that replaced a different payload at the same height.
    Replaced,
    /// Extended an existing block.
    Extended,
}

/// Pending balance of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingBalance {
    /// Known outright.
    Known(U256),
    /// The balance at `head` plus `effect`.
    Relative {
        /// Block whose state the effect applies to.
        head: B256,
        /// Net change across the pending blocks.
        effect: BalanceEffect,
    },
    /// The pending blocks do not touch the account.
    Untouched,
    /// Not derivable from what the stream carries.
    Unknown,
}

/// Pending nonce of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingNonce {
    /// Known outright.
    Known(u64),
    /// The nonce at `head` plus `add` (deposits only).
    Relative {
        /// Block whose state it applies to.
        head: B256,
        /// Deposits sent.
        add: u64,
    },
    /// The pending blocks have nothing from the account.
    Untouched,
}

/// All pending blocks and the upstream head.
#[derive(Debug)]
pub struct PendingState {
    config: PendingConfig,
    head: Option<Head>,
    blocks: BTreeMap<u64, PendingBlock>,
}

impl PendingState {
    /// Empty state.
    pub fn new(config: PendingConfig) -> Self {
        Self {
            config,
            head: None,
            blocks: BTreeMap::new(),
        }
    }

    /// The last observed head.
    pub fn head(&self) -> Option<Head> {
        self.head
    }

    /// Blocks held (served or waiting).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Drops everything (the stream went away: nothing it said can be trusted to be current).
    pub fn clear(&mut self) {
        self.blocks.clear();
    }

    /// Records the upstream head and drops every block it reached or passed.
    pub fn set_head(&mut self, number: u64, hash: B256, now: Instant) {
        self.head = Some(Head {
            number,
            hash,
            observed_at: now,
        });
        self.blocks = self.blocks.split_off(&number.saturating_add(1));
    }

    /// Applies one flashblock.
    pub fn ingest(&mut self, fb: &OpFlashblockPayload) -> Result<Applied, (Rejection, BlockError)> {
        let number = fb.metadata.block_number;
        if let Some(head) = self.head
            && number <= head.number
        {
            return Err((
                Rejection::Stale,
                BlockError::Number {
                    got: number,
                    expected: head.number.saturating_add(1),
                },
            ));
        }
        if fb.index == 0 {
            let block = PendingBlock::start(fb, self.config.max_flashblocks_per_block)
                .map_err(|e| (classify(&e), e))?;
            if block.number() != number {
                return Err((
                    Rejection::OutOfOrder,
                    BlockError::Number {
                        got: number,
                        expected: block.number(),
                    },
                ));
            }
            let replaced = self
                .blocks
                .get(&number)
                .is_some_and(|old| old.payload_id != block.payload_id || old.hash != block.hash);
            // Anything above was built on what this block replaces (or on nothing yet).
            self.blocks.split_off(&number);
            // A pending parent this block does not build on lost: it will never be canonical.
            if let Some(below) = number.checked_sub(1)
                && self
                    .blocks
                    .get(&below)
                    .is_some_and(|p| p.hash != block.parent_hash())
            {
                self.blocks.remove(&below);
            }
            self.blocks.insert(number, block);
            while self.blocks.len() > self.config.max_blocks {
                self.blocks.pop_first();
            }
            return Ok(if replaced {
                Applied::Replaced
            } else {
                Applied::Started
            });
        }
        let Some(block) = self.blocks.get_mut(&number) else {
            return Err((
                Rejection::OutOfOrder,
                BlockError::Sequence {
                    payload_id: fb.payload_id,
                    got: fb.index,
                    expected: 0,
                },
            ));
        };
        if block.payload_id != fb.payload_id {
            return Err((
                Rejection::OutOfOrder,
                BlockError::Sequence {
                    payload_id: fb.payload_id,
                    got: fb.index,
                    expected: 0,
                },
            ));
        }
        match block.apply(fb, self.config.max_flashblocks_per_block) {
            Ok(()) => Ok(Applied::Extended),
            Err(e) => {
                // A block missing a flashblock can never catch up: stop serving it.
                self.blocks.remove(&number);
                Err((classify(&e), e))
            }
        }
    }

    /// The blocks served as pending, oldest first: a chain starting on the head. Empty when
    /// the head is unknown or older than the configured maximum age.
    pub fn chain(&self, now: Instant) -> Vec<&PendingBlock> {
        let Some(head) = self.head else {
            return Vec::new();
        };
        if now.saturating_duration_since(head.observed_at) > self.config.head_max_age {
            return Vec::new();
        }
        let mut out: Vec<&PendingBlock> = Vec::new();
        let mut parent = head.hash;
        let first = head.number.saturating_add(1);
        for (n, block) in self.blocks.range(first..) {
            if *n != first.saturating_add(out.len() as u64) || block.parent_hash() != parent {
                break;
            }
            parent = block.hash;
            out.push(block);
        }
        out
    }

    /// The newest served block.
    pub fn tip(&self, now: Instant) -> Option<&PendingBlock> {
        self.chain(now).pop()
    }

    /// A served block holding transaction `hash`, and its position.
    pub fn find_tx(&self, hash: &B256, now: Instant) -> Option<(&PendingBlock, usize)> {
        self.chain(now)
            .into_iter()
            .rev()
            .find_map(|b| b.position(hash).map(|i| (b, i)))
    }

    /// Pending nonce of `address` across the served blocks.
    pub fn nonce(&self, address: &Address, now: Instant) -> Option<PendingNonce> {
        let chain = self.chain(now);
        let head = self.head?.hash;
        let mut known: Option<u64> = None;
        let mut add = 0u64;
        let mut touched = false;
        for block in &chain {
            if let Some(n) = block.nonce_after(address) {
                touched = true;
                match n.known_next {
                    Some(next) => {
                        known = Some(next.saturating_add(n.deposits_after));
                        add = 0;
                    }
                    None => match known.as_mut() {
                        Some(k) => *k = k.saturating_add(n.deposits_after),
                        None => add = add.saturating_add(n.deposits_after),
                    },
                }
            }
        }
        if chain.is_empty() {
            return None;
        }
        Some(match (touched, known) {
            (false, _) => PendingNonce::Untouched,
            (true, Some(k)) => PendingNonce::Known(k),
            (true, None) => PendingNonce::Relative { head, add },
        })
    }

    /// Pending balance of `address` across the served blocks.
    pub fn balance(&self, address: &Address, now: Instant) -> Option<PendingBalance> {
        let chain = self.chain(now);
        if chain.is_empty() {
            return None;
        }
        Some(balance_over(&chain, self.head?.hash, address))
    }
}

/// Balance of `address` after `chain` (blocks on top of `head`), as far as the blocks tell.
pub fn balance_over(chain: &[&PendingBlock], head: B256, address: &Address) -> PendingBalance {
    let mut known: Option<U256> = None;
    let mut effect = BalanceEffect::default();
    for block in chain {
        match block.balance(address) {
            BalanceView::Reported(b) => {
                known = Some(b);
                effect = BalanceEffect::default();
            }
            BalanceView::Effect(e) => {
                effect.credit = effect.credit.saturating_add(e.credit);
                effect.debit = effect.debit.saturating_add(e.debit);
            }
            BalanceView::Unknown => return PendingBalance::Unknown,
        }
    }
    let untouched = effect == BalanceEffect::default();
    match known {
        Some(b) if untouched => PendingBalance::Known(b),
        Some(b) => match b
            .checked_add(effect.credit)
            .and_then(|v| v.checked_sub(effect.debit))
        {
            Some(v) => PendingBalance::Known(v),
            None => PendingBalance::Unknown,
        },
        None if untouched => PendingBalance::Untouched,
        None => PendingBalance::Relative { head, effect },
    }
}

fn classify(e: &BlockError) -> Rejection {
    match e {
        BlockError::Sequence { .. }
        | BlockError::MissingBase(_)
        | BlockError::UnexpectedBase { .. }
        | BlockError::Number { .. } => Rejection::OutOfOrder,
        BlockError::Transaction { .. } | BlockError::MissingReceipt(_) | BlockError::Gas { .. } => {
            Rejection::BadContent
        }
        BlockError::TooMany(_) => Rejection::OverCapacity,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alloy_consensus::{Eip658Value, Receipt, Sealable, TxReceipt};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Bloom, Bytes, TxKind};
    use alloy_rpc_types_engine::PayloadId;
    use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope, TxDeposit};
    use op_alloy_rpc_types_engine::{
        OpFlashblockPayloadBase, OpFlashblockPayloadDelta, OpFlashblockPayloadMetadata,
    };

    use super::*;

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
        use super::super::block::{Divergence, Outcome};
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
}
