//! The order the flashblocks of one payload must arrive in (specs.optimism.io
//! protocol/flashblocks.md): index 0 first and carrying the base, then each index one more than
//! the last, all with the same payload id; a base anywhere but index 0 is refused.
//!
//! Every consumer that keeps a payload's flashblocks (engine-mux's builder store and its
//! high-availability peer store, flashblocks-rpc's pending block, [`super::assemble`]) asks one
//! [`Sequence`] instead of restating the rules. What a consumer does with a verdict differs (the
//! builder store holds a flashblock that is ahead of a gap, a peer's ordered stream refuses it),
//! so [`Sequence::check`] only classifies; the consumer calls [`Sequence::advance`] once it has
//! kept the flashblock.

use alloy_rpc_types_engine::PayloadId;
use op_alloy_rpc_types_engine::OpFlashblockPayload;

/// Where an acceptable flashblock stands in its payload's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The next index: keep it, then [`Sequence::advance`].
    Next,
    /// An index already accepted: a replay when it equals the one kept, an equivocation when it
    /// differs (the consumer holds the flashblocks, so it compares).
    Seen {
        /// The repeated index.
        index: u64,
    },
}

/// Why a flashblock does not fit its payload's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// A flashblock of another payload.
    #[error("flashblock of payload {found} in the sequence of payload {expected}")]
    Payload {
        /// The sequence's payload.
        expected: PayloadId,
        /// The flashblock's payload.
        found: PayloadId,
    },
    /// Index 0 without a base, or a later index with one.
    #[error("flashblock {index}: base must be present exactly at index 0")]
    Base {
        /// The offending index.
        index: u64,
    },
    /// An index past the next one: the flashblocks between are missing (so far).
    #[error("flashblock {found} where {expected} was expected")]
    Gap {
        /// The next index.
        expected: u64,
        /// The index received.
        found: u64,
    },
    /// The next index, but the payload already has as many flashblocks as allowed.
    #[error("flashblock {index}: a payload holds at most {max} flashblocks")]
    TooMany {
        /// The refused index.
        index: u64,
        /// The bound.
        max: u64,
    },
}

/// The flashblocks accepted so far of one payload, as far as their order goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequence {
    payload_id: PayloadId,
    next: u64,
    max: u64,
}

impl Sequence {
    /// An empty sequence for `payload_id` accepting at most `max` flashblocks.
    pub fn new(payload_id: PayloadId, max: u64) -> Self {
        Self {
            payload_id,
            next: 0,
            max,
        }
    }

    /// The payload this sequence is of.
    pub fn payload_id(&self) -> PayloadId {
        self.payload_id
    }

    /// The index the next flashblock must have (the number accepted so far).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Classifies `fb` against the sequence without changing it. The rules apply in this order:
    /// another payload, an index already accepted ([`Order::Seen`]), the base rule, a gap, the
    /// bound.
    pub fn check(&self, fb: &OpFlashblockPayload) -> Result<Order, OrderError> {
        if fb.payload_id != self.payload_id {
            return Err(OrderError::Payload {
                expected: self.payload_id,
                found: fb.payload_id,
            });
        }
        if fb.index < self.next {
            return Ok(Order::Seen { index: fb.index });
        }
        if (fb.index == 0) != fb.base.is_some() {
            return Err(OrderError::Base { index: fb.index });
        }
        if fb.index > self.next {
            return Err(OrderError::Gap {
                expected: self.next,
                found: fb.index,
            });
        }
        if self.next >= self.max {
            return Err(OrderError::TooMany {
                index: fb.index,
                max: self.max,
            });
        }
        Ok(Order::Next)
    }

    /// Records that the flashblock [`Self::check`] called [`Order::Next`] was kept.
    pub fn advance(&mut self) {
        self.next += 1;
    }
}

#[cfg(test)]
mod tests {
    use op_alloy_rpc_types_engine::OpFlashblockPayloadBase;

    use super::*;

    const ID: PayloadId = PayloadId(alloy_primitives::B64::new([7; 8]));

    fn fb(index: u64, base: bool) -> OpFlashblockPayload {
        OpFlashblockPayload {
            payload_id: ID,
            index,
            base: base.then(OpFlashblockPayloadBase::default),
            ..Default::default()
        }
    }

    /// Accepts `n` flashblocks 0..n in order.
    fn accepted(n: u64, max: u64) -> Sequence {
        let mut seq = Sequence::new(ID, max);
        for i in 0..n {
            assert_eq!(seq.check(&fb(i, i == 0)), Ok(Order::Next), "index {i}");
            seq.advance();
        }
        seq
    }

    #[test]
    fn index_zero_with_base_then_each_next_index_without_one() {
        let seq = accepted(5, 10);
        assert_eq!(seq.next(), 5);
        assert_eq!(seq.payload_id(), ID);
    }

    #[test]
    fn check_alone_does_not_advance() {
        let seq = Sequence::new(ID, 10);
        assert_eq!(seq.check(&fb(0, true)), Ok(Order::Next));
        assert_eq!(seq.check(&fb(0, true)), Ok(Order::Next));
        assert_eq!(seq.next(), 0);
        assert_eq!(
            seq.check(&fb(1, false)),
            Err(OrderError::Gap {
                expected: 0,
                found: 1
            })
        );
    }

    #[test]
    fn another_payloads_flashblock_is_refused_before_anything_else() {
        let seq = accepted(2, 10);
        let other = PayloadId::new([8; 8]);
        for index in [0, 1, 2, 9] {
            let mut f = fb(index, index == 0);
            f.payload_id = other;
            assert_eq!(
                seq.check(&f),
                Err(OrderError::Payload {
                    expected: ID,
                    found: other
                })
            );
        }
    }

    #[test]
    fn an_index_already_accepted_is_seen_whatever_its_base() {
        let seq = accepted(3, 10);
        for index in 0..3 {
            assert_eq!(seq.check(&fb(index, true)), Ok(Order::Seen { index }));
            assert_eq!(seq.check(&fb(index, false)), Ok(Order::Seen { index }));
        }
    }

    #[test]
    fn base_only_at_index_zero() {
        let empty = Sequence::new(ID, 10);
        assert_eq!(
            empty.check(&fb(0, false)),
            Err(OrderError::Base { index: 0 })
        );
        let seq = accepted(1, 10);
        assert_eq!(seq.check(&fb(1, true)), Err(OrderError::Base { index: 1 }));
        // A base on a flashblock past a gap is refused as a base, not held as a gap.
        assert_eq!(seq.check(&fb(4, true)), Err(OrderError::Base { index: 4 }));
        assert_eq!(
            empty.check(&fb(3, true)),
            Err(OrderError::Base { index: 3 })
        );
    }

    #[test]
    fn an_index_past_the_next_is_a_gap() {
        assert_eq!(
            Sequence::new(ID, 10).check(&fb(1, false)),
            Err(OrderError::Gap {
                expected: 0,
                found: 1
            })
        );
        assert_eq!(
            accepted(2, 10).check(&fb(5, false)),
            Err(OrderError::Gap {
                expected: 2,
                found: 5
            })
        );
    }

    #[test]
    fn the_bound_refuses_the_next_index_once_full() {
        let seq = accepted(3, 3);
        assert_eq!(
            seq.check(&fb(3, false)),
            Err(OrderError::TooMany { index: 3, max: 3 })
        );
        // What is already accepted still reads as seen, and a gap stays a gap.
        assert_eq!(seq.check(&fb(2, false)), Ok(Order::Seen { index: 2 }));
        assert_eq!(
            seq.check(&fb(4, false)),
            Err(OrderError::Gap {
                expected: 3,
                found: 4
            })
        );
        assert_eq!(
            Sequence::new(ID, 0).check(&fb(0, true)),
            Err(OrderError::TooMany { index: 0, max: 0 })
        );
    }
}
