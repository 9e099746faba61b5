//! A bounded transaction pool: per-sender nonce queues, block selection by effective tip.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use alloy_consensus::{Transaction, transaction::Recovered};
use alloy_primitives::{Address, TxHash, U256};
use op_alloy_consensus::OpTxEnvelope;

use crate::chain::state::StateSnapshot;

/// Pool-wide bound on pending transactions.
pub const DEFAULT_MAX_TXS: usize = 20_000;
/// How far ahead of the account nonce a transaction may be queued.
pub const MAX_NONCE_GAP: u64 = 64;
/// A same-nonce replacement must raise both fee caps by this many percent.
pub const REPLACEMENT_BUMP_PERCENT: u128 = 10;

/// Why a transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Deposits only arrive through payload attributes.
    #[error("deposit transactions cannot be submitted to the pool")]
    Deposit,
    /// Wrong or missing EIP-155 chain id.
    #[error("invalid chain id: expected {expected}, got {got:?}")]
    ChainId {
        /// This chain's id.
        expected: u64,
        /// The tx's id.
        got: Option<u64>,
    },
    /// Nonce already used.
    #[error("nonce too low: next nonce {expected}, tx nonce {got}")]
    NonceTooLow {
        /// Account nonce.
        expected: u64,
        /// Tx nonce.
        got: u64,
    },
    /// Nonce too far in the future.
    #[error("nonce too high: next nonce {expected}, tx nonce {got} (max gap {MAX_NONCE_GAP})")]
    NonceTooHigh {
        /// Account nonce.
        expected: u64,
        /// Tx nonce.
        got: u64,
    },
    /// Same hash already pooled.
    #[error("already known")]
    AlreadyKnown,
    /// Same nonce pooled with a fee the new one does not beat by the bump.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// Balance below value + gas * maxFee.
    #[error("insufficient funds for gas * price + value: balance {balance}, cost {cost}")]
    InsufficientFunds {
        /// Sender balance.
        balance: U256,
        /// Max cost.
        cost: U256,
    },
    /// Gas limit above the block gas limit.
    #[error("exceeds block gas limit")]
    GasLimit,
    /// Pool is full.
    #[error("txpool is full")]
    Full,
}

/// Pending transactions keyed by sender and nonce.
#[derive(Debug)]
pub struct Mempool {
    chain_id: u64,
    max_txs: usize,
    by_sender: HashMap<Address, BTreeMap<u64, Recovered<OpTxEnvelope>>>,
    by_hash: HashMap<TxHash, (Address, u64)>,
}

impl Mempool {
    /// An empty pool for `chain_id` holding at most `max_txs` transactions.
    pub fn new(chain_id: u64, max_txs: usize) -> Self {
        Self {
            chain_id,
            max_txs,
            by_sender: HashMap::new(),
            by_hash: HashMap::new(),
        }
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// A pooled transaction by hash.
    pub fn get(&self, hash: &TxHash) -> Option<&Recovered<OpTxEnvelope>> {
        let (sender, nonce) = self.by_hash.get(hash)?;
        self.by_sender.get(sender)?.get(nonce)
    }

    /// The next nonce `sender` can use given the pool and `state` (for `pending` counts).
    pub fn pending_nonce(&self, sender: &Address, state: &StateSnapshot) -> u64 {
        let mut next = state.nonce(sender);
        if let Some(queue) = self.by_sender.get(sender) {
            while queue.contains_key(&next) {
                next += 1;
            }
        }
        next
    }

    /// Validates `tx` against `state` and adds it.
    pub fn insert(
        &mut self,
        tx: Recovered<OpTxEnvelope>,
        state: &StateSnapshot,
        block_gas_limit: u64,
    ) -> Result<TxHash, PoolError> {
        if tx.inner().is_deposit() {
            return Err(PoolError::Deposit);
        }
        if tx.chain_id() != Some(self.chain_id) {
            return Err(PoolError::ChainId {
                expected: self.chain_id,
                got: tx.chain_id(),
            });
        }
        let hash = tx.tx_hash();
        if self.by_hash.contains_key(&hash) {
            return Err(PoolError::AlreadyKnown);
        }
        if tx.gas_limit() > block_gas_limit {
            return Err(PoolError::GasLimit);
        }
        let sender = tx.signer();
        let account_nonce = state.nonce(&sender);
        let nonce = tx.nonce();
        if nonce < account_nonce {
            return Err(PoolError::NonceTooLow {
                expected: account_nonce,
                got: nonce,
            });
        }
        if nonce > account_nonce + MAX_NONCE_GAP {
            return Err(PoolError::NonceTooHigh {
                expected: account_nonce,
                got: nonce,
            });
        }
        let cost = U256::from(tx.gas_limit()) * U256::from(tx.max_fee_per_gas()) + tx.value();
        let balance = state.balance(&sender);
        if cost > balance {
            return Err(PoolError::InsufficientFunds { balance, cost });
        }
        let existing = self.by_sender.get(&sender).and_then(|q| q.get(&nonce));
        if let Some(old) = existing {
            let bumped = |old: u128| old + old * REPLACEMENT_BUMP_PERCENT / 100;
            let old_tip = old
                .max_priority_fee_per_gas()
                .unwrap_or(old.max_fee_per_gas());
            let new_tip = tx
                .max_priority_fee_per_gas()
                .unwrap_or(tx.max_fee_per_gas());
            if tx.max_fee_per_gas() < bumped(old.max_fee_per_gas()) || new_tip < bumped(old_tip) {
                return Err(PoolError::ReplacementUnderpriced);
            }
            let old_hash = old.tx_hash();
            self.by_hash.remove(&old_hash);
        } else if self.by_hash.len() >= self.max_txs {
            return Err(PoolError::Full);
        }
        self.by_sender.entry(sender).or_default().insert(nonce, tx);
        self.by_hash.insert(hash, (sender, nonce));
        Ok(hash)
    }

    /// Drops every transaction whose nonce `state` has already consumed (they were included).
    pub fn prune(&mut self, state: &StateSnapshot) {
        let by_hash = &mut self.by_hash;
        self.by_sender.retain(|sender, queue| {
            let next = state.nonce(sender);
            let stale: Vec<u64> = queue.range(..next).map(|(n, _)| *n).collect();
            for nonce in stale {
                if let Some(tx) = queue.remove(&nonce) {
                    by_hash.remove(&tx.tx_hash());
                }
            }
            !queue.is_empty()
        });
    }

    /// Executable transactions in inclusion order: per sender in nonce order starting at the
    /// state nonce, across senders by effective tip at `base_fee` (highest first).
    pub fn best(
        &self,
        state: &StateSnapshot,
        base_fee: u64,
        limit: usize,
    ) -> Vec<Recovered<OpTxEnvelope>> {
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        struct Candidate {
            tip: u128,
            // Reverse so ties go to the lower address, deterministically.
            sender: std::cmp::Reverse<Address>,
            nonce: u64,
        }
        let tip_of = |tx: &Recovered<OpTxEnvelope>| tx.effective_tip_per_gas(base_fee);
        let mut heap = BinaryHeap::new();
        for (sender, queue) in &self.by_sender {
            let next = state.nonce(sender);
            if let Some(tx) = queue.get(&next)
                && let Some(tip) = tip_of(tx)
            {
                heap.push(Candidate {
                    tip,
                    sender: std::cmp::Reverse(*sender),
                    nonce: next,
                });
            }
        }
        let mut out = Vec::new();
        while let Some(Candidate { sender, nonce, .. }) = heap.pop() {
            if out.len() >= limit {
                break;
            }
            let Some(queue) = self.by_sender.get(&sender.0) else {
                continue;
            };
            if let Some(tx) = queue.get(&nonce) {
                out.push(tx.clone());
            }
            if let Some(next) = queue.get(&(nonce + 1))
                && let Some(tip) = tip_of(next)
            {
                heap.push(Candidate {
                    tip,
                    sender,
                    nonce: nonce + 1,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use alloy_consensus::transaction::SignerRecoverable;

    use super::*;
    use crate::chain::{
        accounts::{funded_dev_signers, sign_transfer},
        genesis::{ForkOverrides, default_genesis},
    };

    fn setup() -> (StateSnapshot, Vec<alloy_signer_local::PrivateKeySigner>) {
        let g = default_genesis(0, ForkOverrides::default()).unwrap();
        let signers = funded_dev_signers(&g.state).unwrap();
        (g.state, signers)
    }

    fn tx(
        s: &alloy_signer_local::PrivateKeySigner,
        nonce: u64,
        tip: u128,
    ) -> Recovered<OpTxEnvelope> {
        sign_transfer(
            s,
            901,
            nonce,
            Address::ZERO,
            U256::from(1),
            1_000_000_000,
            tip,
        )
        .unwrap()
        .try_into_recovered()
        .unwrap()
    }

    #[test]
    fn nonce_checks_and_replacement() {
        let (state, signers) = setup();
        let mut pool = Mempool::new(901, 100);
        assert_eq!(
            pool.insert(tx(&signers[0], 0, 5), &state, 30_000_000)
                .map(|_| ()),
            Ok(())
        );
        assert_eq!(
            pool.insert(tx(&signers[0], 0, 5), &state, 30_000_000),
            Err(PoolError::AlreadyKnown)
        );
        assert_eq!(
            pool.insert(tx(&signers[0], 0, 6), &state, 30_000_000),
            Err(PoolError::ReplacementUnderpriced)
        );
        assert!(matches!(
            pool.insert(tx(&signers[0], MAX_NONCE_GAP + 1, 5), &state, 30_000_000),
            Err(PoolError::NonceTooHigh { .. })
        ));
        assert!(matches!(
            pool.insert(
                sign_transfer(&signers[0], 1, 0, Address::ZERO, U256::from(1), 1, 1)
                    .unwrap()
                    .try_into_recovered()
                    .unwrap(),
                &state,
                30_000_000
            ),
            Err(PoolError::ChainId { .. })
        ));
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.pending_nonce(&signers[0].address(), &state), 1);
    }

    #[test]
    fn best_orders_by_tip_and_keeps_nonce_order() {
        let (state, signers) = setup();
        let mut pool = Mempool::new(901, 100);
        pool.insert(tx(&signers[0], 0, 1), &state, 30_000_000)
            .unwrap();
        pool.insert(tx(&signers[0], 1, 100), &state, 30_000_000)
            .unwrap();
        pool.insert(tx(&signers[1], 0, 50), &state, 30_000_000)
            .unwrap();
        pool.insert(tx(&signers[2], 5, 500), &state, 30_000_000)
            .unwrap(); // gapped: not executable
        let best = pool.best(&state, 1, 10);
        let order: Vec<(Address, u64)> = best.iter().map(|t| (t.signer(), t.nonce())).collect();
        assert_eq!(
            order,
            vec![
                (signers[1].address(), 0),
                (signers[0].address(), 0),
                (signers[0].address(), 1)
            ]
        );
    }

    #[test]
    fn pool_is_bounded() {
        let (state, signers) = setup();
        let mut pool = Mempool::new(901, 2);
        pool.insert(tx(&signers[0], 0, 1), &state, 30_000_000)
            .unwrap();
        pool.insert(tx(&signers[0], 1, 1), &state, 30_000_000)
            .unwrap();
        assert_eq!(
            pool.insert(tx(&signers[0], 2, 1), &state, 30_000_000),
            Err(PoolError::Full)
        );
    }
}
