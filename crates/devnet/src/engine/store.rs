//! Blocks the engine knows, the canonical chain, and the post-states it can build on.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
};

use alloy_consensus::{Block, BlockBody, Header, transaction::Recovered};
use alloy_primitives::{B256, TxHash};
use op_alloy_consensus::{OpReceiptEnvelope, OpTxEnvelope};

use crate::chain::state::StateSnapshot;

/// How many recent post-states are kept (a payload whose parent state was pruned gets SYNCING).
/// States share structure ([`StateSnapshot`] is persistent), so each costs what its block
/// changed, not a copy of the whole state.
pub const MAX_STATES: usize = 64;
/// How many blocks are kept in total by default; older ones are forgotten (eth queries return
/// null). [`ChainStore::set_max_blocks`] changes it (the soak keeps few, so its memory readings
/// flatten within the warm-up).
pub const MAX_BLOCKS: usize = 20_000;

/// A sealed block with its senders and receipts.
#[derive(Debug, Clone)]
pub struct ChainBlock {
    /// The header.
    pub header: Header,
    /// keccak256 of the RLP header.
    pub hash: B256,
    /// Transactions with recovered senders.
    pub transactions: Vec<Recovered<OpTxEnvelope>>,
    /// Receipts, one per transaction.
    pub receipts: Vec<OpReceiptEnvelope>,
    /// Post-state (moved into the store's state cache on insert).
    state: Option<Arc<StateSnapshot>>,
}

impl ChainBlock {
    /// Seals a header (computes its hash) together with its body, receipts and post-state.
    pub fn seal(
        header: Header,
        transactions: Vec<Recovered<OpTxEnvelope>>,
        receipts: Vec<OpReceiptEnvelope>,
        state: StateSnapshot,
    ) -> Self {
        let hash = header.hash_slow();
        Self {
            header,
            hash,
            transactions,
            receipts,
            state: Some(Arc::new(state)),
        }
    }

    /// The same block without its post-state: what a payload job keeps (re-serving a payload
    /// needs none, and a full state per job would hold hundreds of kilobytes for each of
    /// [`super::jobs::MAX_PAYLOAD_JOBS`] jobs).
    pub fn without_state(&self) -> Self {
        Self {
            header: self.header.clone(),
            hash: self.hash,
            transactions: self.transactions.clone(),
            receipts: self.receipts.clone(),
            state: None,
        }
    }

    /// The post-state carried by a freshly built/validated block, if not yet moved to a store.
    pub fn state(&self) -> Option<&Arc<StateSnapshot>> {
        self.state.as_ref()
    }

    /// Block number.
    pub fn number(&self) -> u64 {
        self.header.number
    }

    /// The block as an alloy consensus block (for payload conversion).
    pub fn to_consensus_block(&self) -> Block<OpTxEnvelope> {
        Block {
            header: self.header.clone(),
            body: BlockBody {
                transactions: self
                    .transactions
                    .iter()
                    .map(|t| t.inner().clone())
                    .collect(),
                ommers: Vec::new(),
                withdrawals: Some(Default::default()),
            },
        }
    }
}

/// Where a transaction sits in the canonical chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Hash of the containing block.
    pub block_hash: B256,
    /// Index in the block.
    pub index: usize,
}

/// The block tree and the canonical chain, bounded by [`MAX_BLOCKS`] and [`MAX_STATES`].
#[derive(Debug)]
pub struct ChainStore {
    blocks: HashMap<B256, Arc<ChainBlock>>,
    insertion_order: VecDeque<B256>,
    states: HashMap<B256, Arc<StateSnapshot>>,
    state_order: VecDeque<B256>,
    canonical: BTreeMap<u64, B256>,
    tx_index: HashMap<TxHash, TxLocation>,
    head: B256,
    safe: B256,
    finalized: B256,
    genesis_hash: B256,
    max_blocks: usize,
}

impl ChainStore {
    /// A chain holding only the genesis block.
    pub fn new(mut genesis: ChainBlock) -> Self {
        let hash = genesis.hash;
        let state = genesis.state.take().unwrap_or_default();
        let mut store = Self {
            blocks: HashMap::new(),
            insertion_order: VecDeque::new(),
            states: HashMap::new(),
            state_order: VecDeque::new(),
            canonical: BTreeMap::new(),
            tx_index: HashMap::new(),
            head: hash,
            safe: hash,
            finalized: hash,
            genesis_hash: hash,
            max_blocks: MAX_BLOCKS,
        };
        store.states.insert(hash, state);
        store.blocks.insert(hash, Arc::new(genesis));
        store.canonical.insert(0, hash);
        store
    }

    /// Adds a validated or built block (and its post-state) to the tree, not yet canonical.
    pub fn insert(&mut self, mut block: ChainBlock) -> Arc<ChainBlock> {
        let hash = block.hash;
        if let Some(existing) = self.blocks.get(&hash) {
            return existing.clone();
        }
        if let Some(state) = block.state.take() {
            self.states.insert(hash, state);
            self.state_order.push_back(hash);
            while self.state_order.len() > MAX_STATES {
                match self.state_order.pop_front() {
                    // The head's state is what everything builds on: keep it, age it again.
                    Some(old) if old == self.head => self.state_order.push_back(old),
                    Some(old) => {
                        self.states.remove(&old);
                    }
                    None => break,
                }
            }
        }
        let block = Arc::new(block);
        self.blocks.insert(hash, block.clone());
        self.insertion_order.push_back(hash);
        while self.insertion_order.len() > self.max_blocks {
            let Some(old) = self.insertion_order.pop_front() else {
                break;
            };
            if old == self.head {
                self.insertion_order.push_back(old);
                continue;
            }
            if let Some(b) = self.blocks.remove(&old) {
                if self.canonical.get(&b.number()) == Some(&old) {
                    self.canonical.remove(&b.number());
                }
                for tx in &b.transactions {
                    self.tx_index.remove(&tx.tx_hash());
                }
            }
        }
        block
    }

    /// Keeps at most `n` blocks (at least the head and [`MAX_STATES`]' worth) from the next
    /// insert on.
    pub fn set_max_blocks(&mut self, n: usize) {
        self.max_blocks = n.max(MAX_STATES);
    }

    /// A known block by hash.
    pub fn block(&self, hash: &B256) -> Option<Arc<ChainBlock>> {
        self.blocks.get(hash).cloned()
    }

    /// The post-state of a known block, if still kept.
    pub fn state(&self, hash: &B256) -> Option<Arc<StateSnapshot>> {
        self.states.get(hash).cloned()
    }

    /// Canonical block at `number`.
    pub fn canonical_block(&self, number: u64) -> Option<Arc<ChainBlock>> {
        self.canonical.get(&number).and_then(|h| self.block(h))
    }

    /// Current head block.
    pub fn head(&self) -> Arc<ChainBlock> {
        self.blocks
            .get(&self.head)
            .or_else(|| self.blocks.get(&self.genesis_hash))
            .cloned()
            .expect("head and genesis are never pruned")
    }

    /// Post-state of the head.
    pub fn head_state(&self) -> Arc<StateSnapshot> {
        self.state(&self.head).unwrap_or_default()
    }

    /// Safe block hash as last set by forkchoice.
    pub fn safe_hash(&self) -> B256 {
        self.safe
    }

    /// Finalized block hash as last set by forkchoice.
    pub fn finalized_hash(&self) -> B256 {
        self.finalized
    }

    /// Where a canonical transaction is.
    pub fn transaction(&self, hash: &TxHash) -> Option<(Arc<ChainBlock>, usize)> {
        let loc = self.tx_index.get(hash)?;
        Some((self.block(&loc.block_hash)?, loc.index))
    }

    /// Makes `hash` the head (reorganising the canonical index if needed); the block must be
    /// known. Returns false when it is not.
    pub fn set_head(&mut self, hash: B256, safe: B256, finalized: B256) -> bool {
        let Some(new_head) = self.block(&hash) else {
            return false;
        };
        // Collect the new canonical segment back to the first block already canonical.
        let mut segment = Vec::new();
        let mut cursor = new_head.clone();
        loop {
            if self.canonical.get(&cursor.number()) == Some(&cursor.hash) {
                break;
            }
            segment.push(cursor.clone());
            match self.block(&cursor.header.parent_hash) {
                Some(parent) => cursor = parent,
                None => break,
            }
        }
        let fork_point = cursor.number();
        // Unindex everything above the fork point on the old chain.
        let stale: Vec<u64> = self
            .canonical
            .range(fork_point + 1..)
            .map(|(n, _)| *n)
            .collect();
        for number in stale {
            if let Some(old_hash) = self.canonical.remove(&number)
                && let Some(old) = self.blocks.get(&old_hash)
            {
                for tx in &old.transactions {
                    self.tx_index.remove(&tx.tx_hash());
                }
            }
        }
        for block in segment.into_iter().rev() {
            self.canonical.insert(block.number(), block.hash);
            for (index, tx) in block.transactions.iter().enumerate() {
                self.tx_index.insert(
                    tx.tx_hash(),
                    TxLocation {
                        block_hash: block.hash,
                        index,
                    },
                );
            }
        }
        self.head = hash;
        if !safe.is_zero() {
            self.safe = safe;
        }
        if !finalized.is_zero() {
            self.finalized = finalized;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child_of(parent: &ChainBlock) -> ChainBlock {
        let header = Header {
            parent_hash: parent.hash,
            number: parent.number() + 1,
            timestamp: parent.header.timestamp + 1,
            ..Default::default()
        };
        ChainBlock::seal(header, Vec::new(), Vec::new(), StateSnapshot::default())
    }

    #[test]
    fn states_are_bounded_but_the_head_state_is_kept() {
        let genesis = ChainBlock::seal(
            Header::default(),
            Vec::new(),
            Vec::new(),
            StateSnapshot::default(),
        );
        let genesis_hash = genesis.hash;
        let mut store = ChainStore::new(genesis.clone());
        let mut parent = genesis;
        let mut hashes = Vec::new();
        for _ in 0..MAX_STATES + 10 {
            let child = child_of(&parent);
            hashes.push(child.hash);
            parent = (*store.insert(child)).clone();
        }
        assert!(store.states.len() <= MAX_STATES + 1);
        assert!(
            store.state(&genesis_hash).is_some(),
            "head (genesis) state kept"
        );
        assert!(
            store.state(&hashes[0]).is_none(),
            "oldest non-head state pruned"
        );
        assert!(store.state(hashes.last().unwrap()).is_some());
    }

    #[test]
    fn history_is_bounded_by_the_configured_number_of_blocks() {
        let genesis = ChainBlock::seal(
            Header::default(),
            Vec::new(),
            Vec::new(),
            StateSnapshot::default(),
        );
        let mut store = ChainStore::new(genesis.clone());
        store.set_max_blocks(MAX_STATES + 4);
        let mut parent = genesis;
        let mut hashes = Vec::new();
        for _ in 0..MAX_STATES * 2 {
            let child = child_of(&parent);
            hashes.push(child.hash);
            parent = (*store.insert(child)).clone();
            assert!(store.set_head(parent.hash, B256::ZERO, B256::ZERO));
        }
        // Genesis is kept besides them.
        assert!(store.blocks.len() <= MAX_STATES + 4 + 1);
        assert!(store.block(&hashes[0]).is_none(), "oldest block forgotten");
        assert!(store.canonical_block(1).is_none(), "and unindexed");
        assert_eq!(store.head().hash, parent.hash);
        assert!(store.block(hashes.last().unwrap()).is_some());
    }

    #[test]
    fn set_head_reorgs_the_canonical_index() {
        let genesis = ChainBlock::seal(
            Header::default(),
            Vec::new(),
            Vec::new(),
            StateSnapshot::default(),
        );
        let mut store = ChainStore::new(genesis.clone());
        let a1 = (*store.insert(child_of(&genesis))).clone();
        let a2 = (*store.insert(child_of(&a1))).clone();
        assert!(store.set_head(a2.hash, B256::ZERO, B256::ZERO));
        assert_eq!(store.canonical_block(2).unwrap().hash, a2.hash);
        let mut b1 = child_of(&genesis);
        b1.header.timestamp += 100;
        let b1 = ChainBlock::seal(b1.header, Vec::new(), Vec::new(), StateSnapshot::default());
        let b1 = (*store.insert(b1)).clone();
        assert!(store.set_head(b1.hash, B256::ZERO, B256::ZERO));
        assert_eq!(store.canonical_block(1).unwrap().hash, b1.hash);
        assert!(
            store.canonical_block(2).is_none(),
            "old branch above the fork point unindexed"
        );
        assert!(!store.set_head(B256::repeat_byte(9), B256::ZERO, B256::ZERO));
    }
}
