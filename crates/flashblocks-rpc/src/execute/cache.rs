//! Executions of pending chains, cached per chain and bounded, each computed once however many
//! handlers ask for it at the same time.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use alloy_primitives::{Address, B256, U256};
use tokio::sync::OnceCell;

use super::fees::Family;
use crate::{metrics::Metrics, pending::block::PendingBlock};

/// Executions (one per pending chain seen) kept for the handlers; older ones are dropped.
pub const MAX_EXECUTIONS: usize = 8;

/// The pending chain a simulation ran: the head it extends and its blocks' hashes (each
/// flashblock changes its block's hash, so this names one flashblock of each block).
pub type ChainKey = (B256, Vec<B256>);

/// The pending chain executed: every block with every receipt, and balances read after it.
#[derive(Debug)]
pub struct Execution {
    /// The head the chain extends.
    pub head: B256,
    /// The blocks, receipts filled in from the simulation where the stream sent none.
    pub blocks: Vec<PendingBlock>,
    /// Balances after the chain of every sender and recipient (and fee recipient), as the
    /// simulation left them, corrected for the L1 and operator fees it gets wrong.
    pub balances: HashMap<Address, U256>,
}

impl Execution {
    /// The executed block with `hash`.
    pub fn block(&self, hash: &B256) -> Option<&PendingBlock> {
        self.blocks.iter().find(|b| b.hash == *hash)
    }

    /// Whether the executed chain ran no code (plain transfers only).
    pub fn plain_transfers_only(&self) -> bool {
        self.blocks.iter().all(PendingBlock::plain_transfers_only)
    }
}

/// One chain's execution, computed once; `None` when there is nothing to serve.
pub(super) type ExecutionCell = Arc<OnceCell<Option<Arc<Execution>>>>;

/// Executions by pending chain, bounded (oldest dropped), each computed once however many
/// handlers ask for it at the same time.
#[derive(Debug, Default)]
pub struct Executions {
    entries: Mutex<VecDeque<(ChainKey, ExecutionCell)>>,
    /// How the upstream's simulation pays fees, once told.
    pub(super) family: OnceCell<Family>,
}

impl Executions {
    /// The cell of `key`'s execution, added (and the oldest dropped) when new.
    pub(super) fn cell(&self, metrics: &Metrics, key: &ChainKey) -> ExecutionCell {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, cell)) = entries.iter().find(|(k, _)| k == key) {
            return cell.clone();
        }
        let cell = Arc::new(OnceCell::new());
        entries.push_back((key.clone(), cell.clone()));
        while entries.len() > MAX_EXECUTIONS {
            entries.pop_front();
        }
        metrics.set_executions_cached(entries.len());
        cell
    }
}
