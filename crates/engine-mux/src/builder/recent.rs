//! The recent payloads op-node sent (`engine_newPayload`) and its latest forkchoice state:
//! what builder catch-up replays to a builder that fell behind, with the time one catch-up run
//! may take.

use std::collections::VecDeque;

use alloy_primitives::{B256, U64};
use alloy_rpc_types_engine::ForkchoiceState;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;

/// One payload as op-node sent it.
#[derive(Debug, Clone)]
pub struct RecentPayload {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// The newPayload method it came with.
    pub method: &'static str,
    /// The params exactly as sent.
    pub params: std::sync::Arc<RawValue>,
}

/// Why a replay cannot be served from the window.
#[derive(Debug, PartialEq, Eq)]
pub struct BeyondWindow {
    /// The oldest block number held.
    pub oldest: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayloadHead {
    block_number: U64,
    block_hash: B256,
}

/// The number and hash of the payload in newPayload's params (`[payload, ...]`), read in one
/// pass that skips everything else (a 100-transaction payload is tens of kB; this is on
/// op-node's newPayload path).
fn first_payload_head(params: &RawValue) -> Option<PayloadHead> {
    struct FirstOf;
    impl<'de> serde::de::Visitor<'de> for FirstOf {
        type Value = Option<PayloadHead>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("newPayload params")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let head = seq.next_element::<PayloadHead>()?;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(head)
        }
    }
    let mut de = serde_json::Deserializer::from_str(params.get());
    serde::Deserializer::deserialize_seq(&mut de, FirstOf)
        .ok()
        .flatten()
}

/// Default for how long a single catch-up run replays before handing the queue back to live
/// traffic (`--catch-up-budget-ms`).
pub(crate) const DEFAULT_RUN_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// A bounded window of recent payloads, ordered by block number.
#[derive(Debug)]
pub struct RecentPayloads {
    inner: Mutex<Inner>,
    capacity: usize,
    run_budget: std::time::Duration,
}

#[derive(Debug, Default)]
struct Inner {
    payloads: VecDeque<RecentPayload>,
    forkchoice: Option<ForkchoiceState>,
}

impl RecentPayloads {
    /// Holds at most `capacity` payloads.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            run_budget: DEFAULT_RUN_BUDGET,
        }
    }

    /// Sets how long one catch-up run may replay before handing the queue back.
    pub fn with_run_budget(mut self, budget: std::time::Duration) -> Self {
        self.run_budget = budget;
        self
    }

    /// How long one catch-up run may replay.
    pub fn run_budget(&self) -> std::time::Duration {
        self.run_budget
    }

    /// Records a newPayload call; returns the window size. Params that do not parse are ignored
    /// (the local EL will have rejected them anyway).
    pub fn record(&self, method: &'static str, params: &RawValue) -> usize {
        let head = first_payload_head(params);
        let Some(head) = head else { return self.len() };
        let number = head.block_number.to::<u64>();
        let entry = RecentPayload {
            number,
            hash: head.block_hash,
            method,
            params: params.to_owned().into(),
        };
        let mut inner = self.inner.lock();
        // A payload at or below the newest number replaces that height and everything above
        // it (a reorg or a repeat), keeping the window a single chain ordered by number.
        while inner.payloads.back().is_some_and(|p| p.number >= number) {
            inner.payloads.pop_back();
        }
        inner.payloads.push_back(entry);
        while inner.payloads.len() > self.capacity {
            inner.payloads.pop_front();
        }
        inner.payloads.len()
    }

    /// Records the latest forkchoice state op-node sent.
    pub fn record_forkchoice(&self, state: ForkchoiceState) {
        self.inner.lock().forkchoice = Some(state);
    }

    /// The latest forkchoice state op-node sent.
    pub fn forkchoice(&self) -> Option<ForkchoiceState> {
        self.inner.lock().forkchoice
    }

    /// The payload held for block `number`.
    pub fn at(&self, number: u64) -> Option<RecentPayload> {
        let inner = self.inner.lock();
        let oldest = inner.payloads.front()?.number;
        // Usually contiguous: index directly, fall back to a search when there are gaps.
        let guess = usize::try_from(number.checked_sub(oldest)?).ok()?;
        match inner.payloads.get(guess) {
            Some(p) if p.number == number => Some(p.clone()),
            _ => inner.payloads.iter().find(|p| p.number == number).cloned(),
        }
    }

    /// The newest block number held.
    pub fn newest(&self) -> Option<u64> {
        self.inner.lock().payloads.back().map(|p| p.number)
    }

    /// The payloads after block `head`, oldest first; an error when the window no longer
    /// reaches back to `head + 1`.
    pub fn after(&self, head: u64) -> Result<Vec<RecentPayload>, BeyondWindow> {
        let inner = self.inner.lock();
        let Some(oldest) = inner.payloads.front().map(|p| p.number) else {
            return Ok(Vec::new());
        };
        let newest = inner.payloads.back().map_or(oldest, |p| p.number);
        if head >= newest {
            return Ok(Vec::new());
        }
        if oldest > head.saturating_add(1) {
            return Err(BeyondWindow { oldest });
        }
        Ok(inner
            .payloads
            .iter()
            .filter(|p| p.number > head)
            .cloned()
            .collect())
    }

    /// Number of payloads held.
    pub fn len(&self) -> usize {
        self.inner.lock().payloads.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: u64, tag: u8) -> Box<RawValue> {
        let hash = B256::repeat_byte(tag);
        RawValue::from_string(format!(
            r#"[{{"blockNumber":"{:#x}","blockHash":"{hash}","transactions":[]}},[],"0x{}"]"#,
            n,
            "00".repeat(32)
        ))
        .unwrap()
    }

    #[test]
    fn window_is_bounded_ordered_and_reports_gaps() {
        let r = RecentPayloads::new(4);
        for n in 1..=6 {
            r.record("engine_newPayloadV3", &params(n, n as u8));
        }
        assert_eq!(r.len(), 4);
        let after = r.after(3).unwrap();
        assert_eq!(
            after.iter().map(|p| p.number).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        assert_eq!(after[0].hash, B256::repeat_byte(4));
        assert_eq!(r.after(1).unwrap_err(), BeyondWindow { oldest: 3 });
        assert_eq!(r.newest(), Some(6));
        assert_eq!(r.at(4).map(|p| p.hash), Some(B256::repeat_byte(4)));
        assert!(r.at(2).is_none() && r.at(7).is_none());
        assert!(r.after(6).unwrap().is_empty());
        assert!(r.after(100).unwrap().is_empty());
    }

    #[test]
    fn a_reorg_replaces_the_tip() {
        let r = RecentPayloads::new(8);
        for n in 1..=5 {
            r.record("engine_newPayloadV3", &params(n, 1));
        }
        r.record("engine_newPayloadV4", &params(4, 9));
        let after = r.after(2).unwrap();
        assert_eq!(
            after.iter().map(|p| (p.number, p.hash)).collect::<Vec<_>>(),
            vec![(3, B256::repeat_byte(1)), (4, B256::repeat_byte(9))]
        );
        assert_eq!(after[1].method, "engine_newPayloadV4");
        assert_eq!(
            r.record(
                "engine_newPayloadV3",
                &RawValue::from_string("[1]".into()).unwrap()
            ),
            4,
            "garbage is ignored"
        );
    }
}
