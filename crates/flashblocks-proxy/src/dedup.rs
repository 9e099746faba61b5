//! De-duplication of flashblocks arriving from several upstreams, so each one reaches subscribers
//! once and in order.

use std::collections::VecDeque;

use serde::Deserialize;

/// The only fields of an `OpFlashblockPayload` needed to order it; the rest is skipped unparsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FlashblockKey {
    /// Payload id (hex string) the flashblock belongs to.
    pub payload_id: String,
    /// Position within the payload, 0 carrying `base`.
    pub index: u64,
}

impl FlashblockKey {
    /// Parses the key from flashblock JSON.
    pub fn parse(json: &[u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }
}

/// What to do with an incoming flashblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: publish it.
    Deliver,
    /// Already published (same payload, index not above the last one published).
    Duplicate,
    /// Belongs to a payload that has already been superseded.
    Stale,
}

/// How many superseded payload ids are remembered to reject late copies from a slower upstream.
pub const RECENT_PAYLOADS: usize = 64;

/// Tracks the payload being streamed and the highest index published for it.
#[derive(Debug, Default)]
pub struct Dedup {
    current: Option<(String, u64)>,
    recent: VecDeque<String>,
}

impl Dedup {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides whether `key` is published, and records it if so.
    ///
    /// Within a payload indices only move forward: a copy at or below the last published index is a
    /// duplicate, and a copy above it is published even if it skips indices (a dead upstream's
    /// last message may have been the only copy of the one in between; publishing the older one
    /// after a newer one would break order). A payload id seen before is stale.
    pub fn check(&mut self, key: &FlashblockKey) -> Verdict {
        if let Some((id, last)) = &mut self.current
            && *id == key.payload_id
        {
            if key.index > *last {
                *last = key.index;
                return Verdict::Deliver;
            }
            return Verdict::Duplicate;
        }
        if self.recent.iter().any(|p| *p == key.payload_id) {
            return Verdict::Stale;
        }
        if let Some((prev, _)) = self.current.take() {
            if self.recent.len() == RECENT_PAYLOADS {
                self.recent.pop_front();
            }
            self.recent.push_back(prev);
        }
        self.current = Some((key.payload_id.clone(), key.index));
        Verdict::Deliver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(p: &str, i: u64) -> FlashblockKey {
        FlashblockKey {
            payload_id: p.into(),
            index: i,
        }
    }

    #[test]
    fn parses_only_the_key() {
        let json =
            br#"{"payload_id":"0x0102","index":3,"diff":{"transactions":[]},"metadata":{"x":1}}"#;
        assert_eq!(FlashblockKey::parse(json), Some(k("0x0102", 3)));
        assert_eq!(FlashblockKey::parse(b"not json"), None);
        assert_eq!(FlashblockKey::parse(br#"{"index":1}"#), None);
    }

    #[test]
    fn two_interleaved_copies_deliver_each_once_in_order() {
        let mut d = Dedup::new();
        let mut delivered = Vec::new();
        // Upstream B lags one message behind A.
        let a = [k("p1", 0), k("p1", 1), k("p1", 2), k("p2", 0), k("p2", 1)];
        for i in 0..a.len() {
            for key in [Some(&a[i]), i.checked_sub(1).map(|j| &a[j])]
                .into_iter()
                .flatten()
            {
                if d.check(key) == Verdict::Deliver {
                    delivered.push(key.clone());
                }
            }
        }
        assert_eq!(delivered, a.to_vec());
        assert_eq!(d.check(&k("p1", 2)), Verdict::Stale);
        assert_eq!(d.check(&k("p2", 1)), Verdict::Duplicate);
        assert_eq!(d.check(&k("p2", 3)), Verdict::Deliver);
        assert_eq!(d.check(&k("p2", 2)), Verdict::Duplicate);
    }

    #[test]
    fn remembers_a_bounded_number_of_payloads() {
        let mut d = Dedup::new();
        for i in 0..(RECENT_PAYLOADS * 3) {
            assert_eq!(d.check(&k(&format!("p{i}"), 0)), Verdict::Deliver);
        }
        assert_eq!(d.recent.len(), RECENT_PAYLOADS);
    }
}
