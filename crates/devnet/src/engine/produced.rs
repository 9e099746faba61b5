//! What an engine handed out: the block hashes its getPayload answers carried (as served, after
//! any fault changed them) and the flashblocks it built. The devnet reads it to say which builder
//! built a sealed block, by hash: engines that build from the same parent, attributes and pool
//! produce the same block, so a hash may belong to several of them.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
};

use alloy_primitives::B256;
use alloy_rpc_types_engine::PayloadId;

/// Block hashes and flashblocks remembered per engine (oldest forgotten first): a few minutes
/// of 250 ms blocks with a dozen flashblocks each.
pub const MAX_PRODUCED: usize = 8192;

#[derive(Debug, Default)]
struct Record {
    blocks: HashSet<B256>,
    block_order: VecDeque<B256>,
    flashblocks: HashMap<(PayloadId, u64), B256>,
    flashblock_order: VecDeque<(PayloadId, u64)>,
}

impl Record {
    fn block(&mut self, hash: B256) {
        if self.blocks.insert(hash) {
            self.block_order.push_back(hash);
            while self.block_order.len() > MAX_PRODUCED {
                if let Some(old) = self.block_order.pop_front() {
                    self.blocks.remove(&old);
                }
            }
        }
    }
}

/// The bounded record of what one engine produced.
#[derive(Debug, Default)]
pub struct Produced {
    record: Mutex<Record>,
}

impl Produced {
    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a block hash a getPayload answer carried.
    pub fn served(&self, hash: B256) {
        self.lock().block(hash);
    }

    /// Records flashblock `index` of payload `id`, whose blocks so far hash to `hash` (the block
    /// an assembler builds from flashblocks 0..=index).
    pub fn flashblock(&self, id: PayloadId, index: u64, hash: B256) {
        let mut record = self.lock();
        record.block(hash);
        if record.flashblocks.insert((id, index), hash).is_none() {
            record.flashblock_order.push_back((id, index));
            while record.flashblock_order.len() > MAX_PRODUCED {
                if let Some(old) = record.flashblock_order.pop_front() {
                    record.flashblocks.remove(&old);
                }
            }
        }
    }

    /// Whether this engine served this block hash, or built a flashblock that assembles to it.
    pub fn has_block(&self, hash: &B256) -> bool {
        self.lock().blocks.contains(hash)
    }

    /// The block hash of flashblock `index` of payload `id`, if this engine built it.
    pub fn flashblock_hash(&self, id: PayloadId, index: u64) -> Option<B256> {
        self.lock().flashblocks.get(&(id, index)).copied()
    }

    /// Every `(payload id, index, block hash)` this engine built a flashblock for (oldest first).
    pub fn flashblocks(&self) -> Vec<(PayloadId, u64, B256)> {
        let record = self.lock();
        record
            .flashblock_order
            .iter()
            .filter_map(|k| record.flashblocks.get(k).map(|h| (k.0, k.1, *h)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_blocks_and_flashblocks_and_forgets_the_oldest_past_the_bound() {
        let produced = Produced::default();
        let id = PayloadId::new([1; 8]);
        produced.served(B256::with_last_byte(1));
        produced.flashblock(id, 0, B256::with_last_byte(2));
        assert!(produced.has_block(&B256::with_last_byte(1)));
        assert!(
            produced.has_block(&B256::with_last_byte(2)),
            "a flashblock's block counts as produced"
        );
        assert_eq!(
            produced.flashblock_hash(id, 0),
            Some(B256::with_last_byte(2))
        );
        assert_eq!(produced.flashblock_hash(id, 1), None);
        for i in 0..MAX_PRODUCED as u64 {
            produced.served(B256::left_padding_from(&(i + 100).to_be_bytes()));
        }
        assert!(!produced.has_block(&B256::with_last_byte(1)), "evicted");
        assert_eq!(produced.lock().blocks.len(), MAX_PRODUCED);
        assert_eq!(produced.flashblocks().len(), 1);
    }
}
