//! The bounded store of peers' preconfirmed blocks: for each build a peer streamed (its payload
//! id), the parent it builds on and the transactions its flashblocks preconfirmed, in order.
//! A peer's flashblocks get the spec's rules the own builder's get in
//! [`crate::flashblocks::store`] (index exactly previous + 1 starting at 0, base only at index
//! 0, no equivocation, per-build count and byte bounds); a peer's stream is one ordered
//! connection, so a gap is refused instead of held.
//!
//! Transactions are decoded and their senders recovered here, on the stream's task, so the
//! forkchoiceUpdated that carries them over pays for none of it.

use std::collections::VecDeque;

use alloy_consensus::{Transaction, transaction::SignerRecoverable};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, Bytes};
use engine_api::{
    PayloadId,
    flashblocks::{Order, OrderError, Sequence},
};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use parking_lot::Mutex;

use crate::flashblocks::store::{MAX_BYTES_PER_BUILD, MAX_PER_BUILD};

/// Peer builds held at most (the current height's and a few before it, across all peers).
pub(crate) const MAX_PEER_BUILDS: usize = 16;
/// Builds more than this many heights below the newest one seen are dropped: their blocks
/// were sealed (or replaced) long ago.
pub(crate) const KEEP_HEIGHTS: u64 = 2;

/// Why a peer's flashblock was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRejection {
    /// A different flashblock for an index already accepted.
    Equivocation,
    /// Base present at index > 0 or missing at index 0.
    Base,
    /// An index that is not the next one of its build (or a build that never had index 0).
    Gap,
    /// More than [`MAX_PER_BUILD`] flashblocks for one build.
    TooMany,
    /// The build's flashblocks would exceed [`MAX_BYTES_PER_BUILD`].
    TooLarge,
    /// A build for a height long sealed.
    Stale,
}

impl PeerRejection {
    /// Metric label (the same words the builder's flashblocks use for the same rules).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equivocation => "equivocation",
            Self::Base => "base",
            Self::Gap => "gap",
            Self::TooMany => "too_many",
            Self::TooLarge => "too_large",
            Self::Stale => "stale",
        }
    }
}

/// What happened to a peer's flashblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerVerdict {
    /// Accepted.
    Accepted,
    /// An exact copy of one already accepted.
    Duplicate,
    /// Refused.
    Rejected(PeerRejection),
}

/// One transaction a peer preconfirmed, decoded once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldTx {
    /// The transaction as the peer's flashblock carried it (EIP-2718 bytes).
    pub raw: Bytes,
    /// Its hash.
    pub hash: B256,
    /// Sender and nonce; `None` when it does not decode or its signature does not recover.
    pub sender: Option<(Address, u64)>,
}

/// A peer's preconfirmed block, as far as its flashblocks went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerBlock {
    /// Which peer (index into the configured peer URLs).
    pub peer: usize,
    /// The peer's payload id.
    pub payload_id: PayloadId,
    /// The parent the block builds on.
    pub parent_hash: B256,
    /// Its height.
    pub block_number: u64,
    /// Flashblocks accepted.
    pub flashblocks: u64,
    /// The non-deposit transactions, in block order (deposits belong to the attributes of
    /// whoever builds the block, never carried).
    pub transactions: Vec<HeldTx>,
}

struct Build {
    block: PeerBlock,
    /// The order its flashblocks must keep (engine-types' one checker).
    sequence: Sequence,
    /// Each accepted flashblock, to tell duplicates from equivocations.
    accepted: Vec<OpFlashblockPayload>,
    bytes: usize,
    /// Arrival order, to pick the newest build on a parent.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    builds: VecDeque<Build>,
    newest_height: u64,
    seq: u64,
}

/// Peers' preconfirmed blocks, bounded ([`MAX_PEER_BUILDS`], [`KEEP_HEIGHTS`], and per build the
/// builder store's count and byte bounds).
#[derive(Default)]
pub struct HeldPreconfirmations {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for HeldPreconfirmations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldPreconfirmations")
            .finish_non_exhaustive()
    }
}

/// What a build's order says of `fb` (`accepted`: the build's flashblocks so far): `None` when
/// it is the next one.
fn refusal(
    sequence: &Sequence,
    accepted: &[OpFlashblockPayload],
    fb: &OpFlashblockPayload,
) -> Option<PeerVerdict> {
    Some(match sequence.check(fb) {
        Ok(Order::Next) => return None,
        Ok(Order::Seen { index }) => {
            if accepted.get(index as usize) == Some(fb) {
                PeerVerdict::Duplicate
            } else {
                PeerVerdict::Rejected(PeerRejection::Equivocation)
            }
        }
        Err(OrderError::Base { .. }) => PeerVerdict::Rejected(PeerRejection::Base),
        // A peer's stream is one ordered connection: what skips ahead is refused, not held (a
        // build is found by its payload id, so another payload's flashblock is not seen here).
        Err(OrderError::Gap { .. } | OrderError::Payload { .. }) => {
            PeerVerdict::Rejected(PeerRejection::Gap)
        }
        Err(OrderError::TooMany { .. }) => PeerVerdict::Rejected(PeerRejection::TooMany),
    })
}

/// Decodes a preconfirmed transaction; deposits give `None` (never carried).
fn decode(raw: &Bytes) -> Option<HeldTx> {
    let hash = alloy_primitives::keccak256(raw);
    let Ok(tx) = OpTxEnvelope::decode_2718_exact(raw.as_ref()) else {
        return Some(HeldTx {
            raw: raw.clone(),
            hash,
            sender: None,
        });
    };
    if tx.is_deposit() {
        return None;
    }
    let sender = tx.recover_signer().ok().map(|s| (s, tx.nonce()));
    Some(HeldTx {
        raw: raw.clone(),
        hash,
        sender,
    })
}

impl HeldPreconfirmations {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one of peer `peer`'s flashblocks (`frame_len`: its size on the wire).
    pub fn ingest(&self, peer: usize, fb: OpFlashblockPayload, frame_len: usize) -> PeerVerdict {
        let mut inner = self.inner.lock();
        let found = inner
            .builds
            .iter()
            .position(|b| b.block.peer == peer && b.block.payload_id == fb.payload_id);
        let Some(pos) = found else {
            let mut sequence = Sequence::new(fb.payload_id, MAX_PER_BUILD as u64);
            if let Some(refused) = refusal(&sequence, &[], &fb) {
                return refused;
            }
            // The sequence accepted it as index 0, which carries the base.
            let Some(base) = fb.base.as_ref() else {
                return PeerVerdict::Rejected(PeerRejection::Base);
            };
            if base.block_number + KEEP_HEIGHTS < inner.newest_height {
                return PeerVerdict::Rejected(PeerRejection::Stale);
            }
            if frame_len > MAX_BYTES_PER_BUILD {
                return PeerVerdict::Rejected(PeerRejection::TooLarge);
            }
            let block = PeerBlock {
                peer,
                payload_id: fb.payload_id,
                parent_hash: base.parent_hash,
                block_number: base.block_number,
                flashblocks: 1,
                transactions: fb.diff.transactions.iter().filter_map(decode).collect(),
            };
            inner.seq += 1;
            let seq = inner.seq;
            inner.newest_height = inner.newest_height.max(block.block_number);
            sequence.advance();
            inner.builds.push_back(Build {
                block,
                sequence,
                accepted: vec![fb],
                bytes: frame_len,
                seq,
            });
            let floor = inner.newest_height.saturating_sub(KEEP_HEIGHTS);
            inner.builds.retain(|b| b.block.block_number >= floor);
            while inner.builds.len() > MAX_PEER_BUILDS {
                inner.builds.pop_front();
            }
            return PeerVerdict::Accepted;
        };
        let build = &mut inner.builds[pos];
        if let Some(refused) = refusal(&build.sequence, &build.accepted, &fb) {
            return refused;
        }
        if build.bytes + frame_len > MAX_BYTES_PER_BUILD {
            return PeerVerdict::Rejected(PeerRejection::TooLarge);
        }
        build.bytes += frame_len;
        build
            .block
            .transactions
            .extend(fb.diff.transactions.iter().filter_map(decode));
        build.block.flashblocks += 1;
        build.sequence.advance();
        build.accepted.push(fb);
        PeerVerdict::Accepted
    }

    /// The newest peer block held on `parent` that preconfirmed at least one transaction.
    pub fn on_parent(&self, parent: &B256) -> Option<PeerBlock> {
        let inner = self.inner.lock();
        inner
            .builds
            .iter()
            .filter(|b| b.block.parent_hash == *parent && !b.block.transactions.is_empty())
            .max_by_key(|b| b.seq)
            .map(|b| b.block.clone())
    }

    /// Whether nothing is held (the FCU path's cheap early exit).
    pub fn is_empty(&self) -> bool {
        self.inner.lock().builds.is_empty()
    }

    /// Builds and transactions held (for the gauges).
    pub fn size(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        let txs = inner
            .builds
            .iter()
            .map(|b| b.block.transactions.len())
            .sum();
        (inner.builds.len(), txs)
    }
}

#[cfg(test)]
mod tests {
    use op_alloy_rpc_types_engine::OpFlashblockPayloadBase;

    use super::*;

    fn fb(id: u8, index: u64, number: u64, parent: u8, txs: Vec<Bytes>) -> OpFlashblockPayload {
        let mut f = OpFlashblockPayload {
            payload_id: PayloadId::new([id; 8]),
            index,
            base: (index == 0).then(|| OpFlashblockPayloadBase {
                parent_hash: B256::repeat_byte(parent),
                block_number: number,
                ..Default::default()
            }),
            ..Default::default()
        };
        f.diff.transactions = txs;
        f
    }

    fn junk(tag: u8) -> Bytes {
        Bytes::from(vec![0x02, tag, tag])
    }

    #[test]
    fn a_peer_block_grows_in_order_and_is_found_by_its_parent() {
        let s = HeldPreconfirmations::new();
        assert_eq!(
            s.ingest(0, fb(1, 0, 10, 9, vec![]), 10),
            PeerVerdict::Accepted
        );
        assert_eq!(
            s.on_parent(&B256::repeat_byte(9)),
            None,
            "nothing preconfirmed yet"
        );
        assert_eq!(
            s.ingest(0, fb(1, 1, 10, 9, vec![junk(1)]), 10),
            PeerVerdict::Accepted
        );
        assert_eq!(
            s.ingest(0, fb(1, 2, 10, 9, vec![junk(2), junk(3)]), 10),
            PeerVerdict::Accepted
        );
        let block = s.on_parent(&B256::repeat_byte(9)).expect("held");
        assert_eq!(block.block_number, 10);
        assert_eq!(block.flashblocks, 3);
        let raws: Vec<_> = block.transactions.iter().map(|t| t.raw.clone()).collect();
        assert_eq!(raws, vec![junk(1), junk(2), junk(3)]);
        assert!(
            block.transactions.iter().all(|t| t.sender.is_none()),
            "junk does not decode; kept so the carry-over can name it"
        );
        assert_eq!(s.on_parent(&B256::repeat_byte(8)), None, "another parent");
    }

    #[test]
    fn the_spec_rules_apply_to_peers_too() {
        let s = HeldPreconfirmations::new();
        assert_eq!(
            s.ingest(0, fb(1, 1, 10, 9, vec![]), 10),
            PeerVerdict::Rejected(PeerRejection::Gap),
            "a build must start at index 0"
        );
        let mut no_base = fb(1, 0, 10, 9, vec![]);
        no_base.base = None;
        assert_eq!(
            s.ingest(0, no_base, 10),
            PeerVerdict::Rejected(PeerRejection::Base)
        );
        s.ingest(0, fb(1, 0, 10, 9, vec![junk(1)]), 10);
        assert_eq!(
            s.ingest(0, fb(1, 0, 10, 9, vec![junk(1)]), 10),
            PeerVerdict::Duplicate
        );
        assert_eq!(
            s.ingest(0, fb(1, 0, 10, 9, vec![junk(7)]), 10),
            PeerVerdict::Rejected(PeerRejection::Equivocation)
        );
        assert_eq!(
            s.ingest(0, fb(1, 2, 10, 9, vec![]), 10),
            PeerVerdict::Rejected(PeerRejection::Gap)
        );
        let mut late_base = fb(1, 1, 10, 9, vec![]);
        late_base.base = Some(OpFlashblockPayloadBase::default());
        assert_eq!(
            s.ingest(0, late_base, 10),
            PeerVerdict::Rejected(PeerRejection::Base)
        );
        assert_eq!(
            s.ingest(0, fb(1, 1, 10, 9, vec![]), MAX_BYTES_PER_BUILD),
            PeerVerdict::Rejected(PeerRejection::TooLarge)
        );
        let raws: Vec<_> = s.on_parent(&B256::repeat_byte(9)).unwrap().transactions;
        assert_eq!(raws.len(), 1, "only the accepted flashblock's transaction");
    }

    #[test]
    fn the_store_is_bounded_by_count_and_height() {
        let s = HeldPreconfirmations::new();
        for n in 0..(MAX_PEER_BUILDS as u8 + 5) {
            s.ingest(0, fb(n, 0, 100, n, vec![junk(n)]), 10);
        }
        assert_eq!(s.size().0, MAX_PEER_BUILDS);
        s.ingest(
            1,
            fb(200, 0, 100 + KEEP_HEIGHTS + 1, 200, vec![junk(1)]),
            10,
        );
        assert_eq!(
            s.size(),
            (1, 1),
            "every build more than KEEP_HEIGHTS below is gone"
        );
        assert_eq!(
            s.ingest(0, fb(201, 0, 100, 1, vec![]), 10),
            PeerVerdict::Rejected(PeerRejection::Stale)
        );
    }

    #[test]
    fn the_newest_build_on_a_parent_wins_and_peers_are_kept_apart() {
        let s = HeldPreconfirmations::new();
        s.ingest(0, fb(1, 0, 10, 9, vec![junk(1)]), 10);
        s.ingest(1, fb(1, 0, 10, 9, vec![junk(2)]), 10);
        let block = s.on_parent(&B256::repeat_byte(9)).unwrap();
        assert_eq!(
            block.peer, 1,
            "same payload id from another peer is another build"
        );
        assert_eq!(block.transactions[0].raw, junk(2));
    }
}
