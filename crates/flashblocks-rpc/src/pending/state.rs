//! The pending chain: blocks keyed by number, served only while they connect to the upstream
//! head (first parent = head hash, each next parent = previous block hash). Blocks at or below
//! the head are dropped; blocks whose parent is not canonical yet are held, bounded.

use std::{collections::BTreeMap, time::Instant};

use alloy_primitives::{Address, B256, U256};
use op_alloy_rpc_types_engine::OpFlashblockPayload;

use super::{
    block::{BlockError, PendingBlock},
    effects::{BalanceEffect, BalanceView},
};
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
        // A later flashblock of a payload whose index 0 this state does not hold.
        let Some(block) = self
            .blocks
            .get_mut(&number)
            .filter(|b| b.payload_id == fb.payload_id)
        else {
            return Err((
                Rejection::OutOfOrder,
                BlockError::Sequence {
                    payload_id: fb.payload_id,
                    got: fb.index,
                    expected: 0,
                },
            ));
        };
        match block.apply(fb) {
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
