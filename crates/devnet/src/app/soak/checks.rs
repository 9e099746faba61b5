//! The soak's invariants, checked while it runs, over plain data (unit-tested with scripted
//! violations): no missed slot; every proposed block VALID on the local EL and the block op-node
//! asked for; every preconfirmed transaction landed, in its block, in order; every `/healthz`
//! change explained by the schedule.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{B256, Bytes};
use alloy_rpc_types_engine::PayloadId;
use op_alloy_rpc_types_engine::OpFlashblockPayload;

use super::schedule::Schedule;
use crate::chain::{
    attributes::{SequencerParams, sequencer_attributes},
    genesis::ChainSpec,
};

/// The deposit transaction type byte (EIP-2718): deposits are not preconfirmations.
const DEPOSIT_TX_TYPE: u8 = 0x7e;
/// A block's preconfirmations are judged this many blocks after it was sealed (late frames of
/// engine-mux's stream have arrived by then).
pub const JUDGE_AFTER_BLOCKS: u64 = 2;
/// Blocks before a `/healthz` 206 in which every builder must have had trouble.
pub const HEALTH_GRACE_BLOCKS: u64 = 10;
/// How long after a local EL restart a 503 is explained by it.
pub const LOCAL_RESTART_GRACE: Duration = Duration::from_secs(15);
/// Findings kept per kind (the counts stay exact).
const MAX_KEPT: usize = 50;

/// What the local EL holds for a proposed block (read from its store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlock {
    /// Height.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Timestamp.
    pub timestamp: u64,
    /// prevRandao (`mixHash`).
    pub prev_randao: B256,
    /// Fee recipient.
    pub fee_recipient: alloy_primitives::Address,
    /// Gas limit.
    pub gas_limit: u64,
    /// Parent beacon block root.
    pub parent_beacon_block_root: Option<B256>,
    /// Every transaction, EIP-2718 encoded, in block order.
    pub transactions: Vec<Bytes>,
    /// Whether the local EL holds it as its canonical block at `number` (it stores only blocks
    /// it built or validated VALID).
    pub canonical_on_local: bool,
}

impl SealedBlock {
    /// Reads block `hash` from the local engine.
    pub fn from_local(engine: &crate::engine::Engine, hash: B256) -> Option<Self> {
        engine.with_chain(|chain| {
            let block = chain.block(&hash)?;
            let canonical = chain
                .canonical_block(block.number())
                .is_some_and(|c| c.hash == hash);
            Some(Self {
                number: block.number(),
                hash,
                parent_hash: block.header.parent_hash,
                timestamp: block.header.timestamp,
                prev_randao: block.header.mix_hash,
                fee_recipient: block.header.beneficiary,
                gas_limit: block.header.gas_limit,
                parent_beacon_block_root: block.header.parent_beacon_block_root,
                transactions: block
                    .transactions
                    .iter()
                    .map(|t| t.inner().encoded_2718().into())
                    .collect(),
                canonical_on_local: canonical,
            })
        })
    }

    fn user_txs(&self) -> Vec<B256> {
        self.transactions
            .iter()
            .filter(|raw| raw.first() != Some(&DEPOSIT_TX_TYPE))
            .map(alloy_primitives::keccak256)
            .collect()
    }
}

/// One `/healthz` change and what explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// Since the soak started.
    pub at: Duration,
    /// The last block proposed when it changed.
    pub height: u64,
    /// Code before.
    pub from: u16,
    /// Code after.
    pub to: u16,
    /// The fault that explains it; `None`: unexplained (a failure).
    pub explained_by: Option<String>,
    /// What engine-mux's health report said right after the change (its own evidence, for
    /// reading an unexplained change; never used to explain one).
    pub evidence: Option<String>,
}

/// Counts and the first findings of each kind.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    /// Blocks proposed.
    pub proposed: u64,
    /// Slots missed (height, reason).
    pub missed: Vec<(u64, String)>,
    /// Missed slots.
    pub missed_count: u64,
    /// Proposed blocks that are not VALID on the local EL or not what op-node asked for.
    pub wrong_blocks: Vec<String>,
    /// Count of the above.
    pub wrong_block_count: u64,
    /// Preconfirmed transactions seen on engine-mux's stream.
    pub preconfirmed: u64,
    /// Preconfirmed transactions that landed elsewhere than their place (another block, or
    /// another position in their block).
    pub out_of_order: Vec<String>,
    /// Count of the above.
    pub out_of_order_count: u64,
    /// Preconfirmed transactions that never landed.
    pub lost: Vec<String>,
    /// Count of the above.
    pub lost_count: u64,
    /// Every `/healthz` change.
    pub health: Vec<HealthChange>,
}

impl Findings {
    /// `/healthz` changes nothing explains.
    pub fn unexplained_health(&self) -> usize {
        self.health
            .iter()
            .filter(|c| c.explained_by.is_none())
            .count()
    }

    fn keep(list: &mut Vec<String>, count: &mut u64, what: String) {
        *count += 1;
        if list.len() < MAX_KEPT {
            list.push(what);
        }
    }
}

/// The running checks.
#[derive(Debug)]
pub struct Checks {
    spec: ChainSpec,
    params: SequencerParams,
    builders: usize,
    schedule: Schedule,
    last: Option<(u64, B256)>,
    // Block number of each payload engine-mux published (bounded: pruned with judged blocks).
    payload_numbers: HashMap<PayloadId, u64>,
    // Per block number: the payload last started for it and its preconfirmed user txs in order.
    preconfirmed: BTreeMap<u64, (PayloadId, Vec<B256>)>,
    // Sealed blocks waiting to be judged.
    sealed: BTreeMap<u64, Vec<B256>>,
    // Preconfirmed transactions not in their block, looked up again at the end.
    unlanded: Vec<(u64, B256)>,
    local_restarts: Vec<Duration>,
    // Per builder (b1 first): the last block engine-mux proposed from its payload (0: none).
    last_proposed: Vec<u64>,
    health: u16,
    /// Results so far.
    pub findings: Findings,
}

impl Checks {
    /// Checks for a chain of `spec` driven with `params`, against `schedule`.
    pub fn new(
        spec: ChainSpec,
        params: SequencerParams,
        builders: usize,
        schedule: Schedule,
    ) -> Self {
        Self {
            spec,
            params,
            builders,
            schedule,
            last: None,
            payload_numbers: HashMap::new(),
            preconfirmed: BTreeMap::new(),
            sealed: BTreeMap::new(),
            unlanded: Vec::new(),
            local_restarts: Vec::new(),
            last_proposed: vec![0; builders],
            health: 200,
            findings: Findings::default(),
        }
    }

    /// The driver missed the slot for `number`.
    pub fn missed(&mut self, number: u64, reason: &str) {
        self.findings.missed_count += 1;
        if self.findings.missed.len() < MAX_KEPT {
            self.findings.missed.push((number, reason.to_string()));
        }
        // op-node re-reads the head after a miss.
        self.last = None;
    }

    /// The driver proposed `hash` at `number` with `timestamp` (what it asked for); `sealed`
    /// is what the local EL holds under that hash (`None`: it does not have it). `landed`
    /// finds the block a transaction is in on the local EL.
    pub fn proposed(
        &mut self,
        number: u64,
        hash: B256,
        timestamp: u64,
        sealed: Option<SealedBlock>,
        landed: impl Fn(&B256) -> Option<u64>,
    ) {
        self.findings.proposed += 1;
        let wrong = match &sealed {
            None => Some("not on the local EL".to_string()),
            Some(b) => self.mismatch(number, timestamp, b),
        };
        if let Some(why) = wrong {
            Findings::keep(
                &mut self.findings.wrong_blocks,
                &mut self.findings.wrong_block_count,
                format!("block {number} {hash}: {why}"),
            );
        }
        self.last = Some((number, hash));
        if let Some(b) = sealed {
            self.sealed.insert(number, b.user_txs());
        }
        let ready: Vec<u64> = self
            .sealed
            .range(..=number.saturating_sub(JUDGE_AFTER_BLOCKS))
            .map(|(n, _)| *n)
            .collect();
        for n in ready {
            self.judge(n, &landed);
        }
        // Looked up again every block while the engine still indexes the block they landed in
        // (its history is bounded): a late landing is out of order, not lost.
        let unlanded = std::mem::take(&mut self.unlanded);
        for (n, tx) in unlanded {
            match landed(&tx) {
                Some(m) => Findings::keep(
                    &mut self.findings.out_of_order,
                    &mut self.findings.out_of_order_count,
                    format!("{tx}: preconfirmed for block {n}, landed in block {m}"),
                ),
                None => self.unlanded.push((n, tx)),
            }
        }
    }

    fn mismatch(&self, number: u64, timestamp: u64, b: &SealedBlock) -> Option<String> {
        if !b.canonical_on_local {
            return Some("not the local EL's canonical block".into());
        }
        if b.number != number {
            return Some(format!("height {} instead of {number}", b.number));
        }
        if let Some((n, parent)) = self.last
            && n + 1 == number
            && b.parent_hash != parent
        {
            return Some(format!("parent {} instead of {parent}", b.parent_hash));
        }
        let attrs = sequencer_attributes(&self.spec, &self.params, number, timestamp);
        let pa = &attrs.payload_attributes;
        let forced = attrs.transactions.clone().unwrap_or_default();
        let checks = [
            (b.timestamp == pa.timestamp, "timestamp"),
            (b.prev_randao == pa.prev_randao, "prevRandao"),
            (
                b.fee_recipient == pa.suggested_fee_recipient,
                "fee recipient",
            ),
            (Some(b.gas_limit) == attrs.gas_limit, "gas limit"),
            (
                b.parent_beacon_block_root == pa.parent_beacon_block_root,
                "parent beacon block root",
            ),
            (
                b.transactions.len() >= forced.len()
                    && b.transactions[..forced.len()] == forced[..],
                "the attributes' transactions as prefix",
            ),
        ];
        checks
            .iter()
            .find(|(ok, _)| !ok)
            .map(|(_, what)| format!("{what} differs from the attributes op-node sent"))
    }

    /// A frame engine-mux re-published.
    pub fn flashblock(&mut self, fb: &OpFlashblockPayload) {
        if let Some(base) = &fb.base {
            self.payload_numbers
                .insert(fb.payload_id, base.block_number);
            // A new payload for a height (a retried slot) replaces the old one's promises.
            self.preconfirmed
                .insert(base.block_number, (fb.payload_id, Vec::new()));
        }
        let Some(number) = self.payload_numbers.get(&fb.payload_id).copied() else {
            return; // its index 0 was not seen (subscribed mid-block)
        };
        let Some((id, txs)) = self.preconfirmed.get_mut(&number) else {
            return;
        };
        if *id != fb.payload_id {
            return;
        }
        for raw in &fb.diff.transactions {
            if raw.first() == Some(&DEPOSIT_TX_TYPE) {
                continue;
            }
            let hash = alloy_primitives::keccak256(raw);
            if !txs.contains(&hash) {
                txs.push(hash);
                self.findings.preconfirmed += 1;
            }
        }
    }

    /// Judges block `n`: its preconfirmed transactions must open it, in order.
    fn judge(&mut self, n: u64, landed: &impl Fn(&B256) -> Option<u64>) {
        let block = self.sealed.remove(&n).unwrap_or_default();
        let Some((id, pre)) = self.preconfirmed.remove(&n) else {
            return;
        };
        self.payload_numbers.retain(|p, num| *p != id && *num > n);
        for (i, tx) in pre.iter().enumerate() {
            if block.get(i) == Some(tx) {
                continue;
            }
            match block.iter().position(|t| t == tx) {
                Some(at) => Findings::keep(
                    &mut self.findings.out_of_order,
                    &mut self.findings.out_of_order_count,
                    format!("{tx}: preconfirmed at {i} of block {n}, landed at {at}"),
                ),
                None => match landed(tx) {
                    Some(m) => Findings::keep(
                        &mut self.findings.out_of_order,
                        &mut self.findings.out_of_order_count,
                        format!("{tx}: preconfirmed for block {n}, landed in block {m}"),
                    ),
                    None => self.unlanded.push((n, *tx)),
                },
            }
        }
    }

    /// engine-mux proposed block `number` from builder `n`'s (1-based) payload.
    pub fn builder_proposed(&mut self, n: usize, number: u64) {
        if let Some(last) = n.checked_sub(1).and_then(|i| self.last_proposed.get_mut(i)) {
            *last = number;
        }
    }

    /// The local EL was restarted (at `at` since the start).
    pub fn local_restarted(&mut self, at: Duration) {
        self.local_restarts.push(at);
    }

    /// `/healthz` answered `code` at `at`, the last proposed block being `height`. Whether
    /// that was a change (recorded, see [`Self::attach_evidence`]).
    pub fn health(&mut self, code: u16, at: Duration, height: u64) -> bool {
        if code == self.health {
            return false;
        }
        let from = std::mem::replace(&mut self.health, code);
        let explained_by = self.explain(code, at, height);
        self.findings.health.push(HealthChange {
            at,
            height,
            from,
            to: code,
            explained_by,
            evidence: None,
        });
        true
    }

    /// engine-mux's own account of the last recorded health change.
    pub fn attach_evidence(&mut self, evidence: String) {
        if let Some(last) = self.findings.health.last_mut() {
            last.evidence = Some(evidence);
        }
    }

    fn explain(&self, code: u16, at: Duration, height: u64) -> Option<String> {
        match code {
            200 => Some("recovered".into()),
            503 => self
                .local_restarts
                .iter()
                .rev()
                .find(|r| **r <= at + Duration::from_secs(1) && at <= **r + LOCAL_RESTART_GRACE)
                .map(|r| format!("local EL restarted at {:.1}s", r.as_secs_f64())),
            206 => {
                let from = height.saturating_sub(HEALTH_GRACE_BLOCKS);
                let to = height + 1;
                // A builder whose last tried block failed stays failing until one of its
                // blocks is proposed: look back to its last proposed block, not only the grace.
                let since = |n: usize| self.last_proposed.get(n - 1).copied().unwrap_or(0);
                let troubled = |n: usize| {
                    self.schedule.builder_troubled(n, from, to)
                        || self.schedule.builder_failed_a_block_since(n, since(n), to)
                };
                (1..=self.builders).all(troubled).then(|| {
                    (1..=self.builders)
                        .map(|n| {
                            format!(
                                "b{n}: {}",
                                self.schedule
                                    .describe_builder(n, from.min(since(n) + 1), to)
                                    .join(" ")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            }
            _ => None,
        }
    }

    /// Ends the run: judges what is left and looks the unlanded preconfirmations up once more.
    pub fn finish(&mut self, landed: impl Fn(&B256) -> Option<u64>) -> &Findings {
        let pending: Vec<u64> = self.sealed.keys().copied().collect();
        for n in pending {
            self.judge(n, &landed);
        }
        for (n, tx) in std::mem::take(&mut self.unlanded) {
            match landed(&tx) {
                Some(m) => Findings::keep(
                    &mut self.findings.out_of_order,
                    &mut self.findings.out_of_order_count,
                    format!("{tx}: preconfirmed for block {n}, landed in block {m}"),
                ),
                None => Findings::keep(
                    &mut self.findings.lost,
                    &mut self.findings.lost_count,
                    format!("{tx}: preconfirmed for block {n}, never landed"),
                ),
            }
        }
        &self.findings
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::Address;
    use op_alloy_rpc_types_engine::{OpFlashblockPayloadBase, OpFlashblockPayloadDelta};

    use super::*;
    use crate::{
        app::soak::schedule::{Event, EventKind},
        chain::attributes::SEQUENCER_FEE_VAULT,
    };

    fn spec() -> ChainSpec {
        crate::app::load_genesis(None, 1_000, None).unwrap().spec
    }

    fn checks(schedule: Schedule) -> Checks {
        Checks::new(spec(), SequencerParams::default(), 2, schedule)
    }

    fn empty_schedule() -> Schedule {
        Schedule {
            seed: 1,
            windows: vec![],
            events: vec![],
        }
    }

    /// The block op-node asked for at `number` (timestamp 1000 + number), with `txs` after
    /// the deposit.
    fn block(c: &Checks, number: u64, parent: B256, txs: &[Bytes]) -> SealedBlock {
        let attrs = sequencer_attributes(&c.spec, &c.params, number, 1_000 + number);
        let pa = &attrs.payload_attributes;
        let mut transactions = attrs.transactions.clone().unwrap();
        transactions.extend(txs.iter().cloned());
        SealedBlock {
            number,
            hash: B256::with_last_byte(number as u8),
            parent_hash: parent,
            timestamp: pa.timestamp,
            prev_randao: pa.prev_randao,
            fee_recipient: SEQUENCER_FEE_VAULT,
            gas_limit: attrs.gas_limit.unwrap(),
            parent_beacon_block_root: pa.parent_beacon_block_root,
            transactions,
            canonical_on_local: true,
        }
    }

    fn tx(n: u8) -> Bytes {
        Bytes::from(vec![0x02, n, n])
    }

    fn frame(id: u8, index: u64, number: Option<u64>, txs: &[Bytes]) -> OpFlashblockPayload {
        OpFlashblockPayload {
            payload_id: PayloadId::new([id; 8]),
            index,
            base: number.map(|block_number| OpFlashblockPayloadBase {
                block_number,
                ..Default::default()
            }),
            diff: OpFlashblockPayloadDelta {
                transactions: txs.to_vec(),
                ..Default::default()
            },
            metadata: Default::default(),
        }
    }

    fn propose(c: &mut Checks, b: SealedBlock, landed: &HashMap<B256, u64>) {
        c.proposed(b.number, b.hash, b.timestamp, Some(b), |t| {
            landed.get(t).copied()
        });
    }

    #[test]
    fn good_blocks_with_their_preconfirmations_in_order_find_nothing() {
        let mut c = checks(empty_schedule());
        let landed = HashMap::new();
        let mut parent = B256::ZERO;
        for n in 1..=6u8 {
            c.flashblock(&frame(n, 0, Some(n.into()), &[]));
            c.flashblock(&frame(n, 1, None, &[tx(n), tx(n + 100)]));
            let b = block(&c, n.into(), parent, &[tx(n), tx(n + 100), tx(n + 200)]);
            parent = b.hash;
            propose(&mut c, b, &landed);
        }
        let f = c.finish(|_| None);
        assert_eq!(f.proposed, 6);
        assert_eq!(f.preconfirmed, 12);
        assert_eq!(
            (f.wrong_block_count, f.out_of_order_count, f.lost_count),
            (0, 0, 0),
            "{f:?}"
        );
    }

    #[test]
    fn a_missed_slot_is_counted_with_its_reason() {
        let mut c = checks(empty_schedule());
        c.missed(4, "getPayload: timeout");
        assert_eq!(c.findings.missed_count, 1);
        assert_eq!(c.findings.missed[0], (4, "getPayload: timeout".to_string()));
    }

    #[test]
    fn a_lost_and_a_moved_preconfirmation_are_found() {
        let mut c = checks(empty_schedule());
        let mut landed = HashMap::new();
        c.flashblock(&frame(1, 0, Some(1), &[]));
        c.flashblock(&frame(1, 1, None, &[tx(1), tx(2), tx(3)]));
        let b1 = block(&c, 1, B256::ZERO, &[tx(1)]);
        let h1 = b1.hash;
        propose(&mut c, b1, &landed);
        // tx 2 shows up two blocks later; tx 3 never.
        landed.insert(alloy_primitives::keccak256(tx(2)), 3);
        let b2 = block(&c, 2, h1, &[]);
        let h2 = b2.hash;
        propose(&mut c, b2, &landed);
        let b3 = block(&c, 3, h2, &[tx(2)]);
        propose(&mut c, b3, &landed);
        let f = c.finish(|t| landed.get(t).copied());
        assert_eq!(f.out_of_order_count, 1, "{f:?}");
        assert!(f.out_of_order[0].contains("landed in block 3"));
        assert_eq!(f.lost_count, 1, "{f:?}");
        assert!(f.lost[0].contains("never landed"));
    }

    #[test]
    fn preconfirmations_reordered_in_their_block_are_out_of_order() {
        let mut c = checks(empty_schedule());
        c.flashblock(&frame(1, 0, Some(1), &[]));
        c.flashblock(&frame(1, 1, None, &[tx(1), tx(2)]));
        let b1 = block(&c, 1, B256::ZERO, &[tx(2), tx(1)]);
        propose(&mut c, b1, &HashMap::new());
        let f = c.finish(|_| None);
        assert_eq!((f.out_of_order_count, f.lost_count), (2, 0), "{f:?}");
    }

    #[test]
    fn a_block_not_asked_for_or_not_on_the_local_el_is_wrong() {
        let mut c = checks(empty_schedule());
        let landed = HashMap::new();
        let mut b = block(&c, 1, B256::ZERO, &[]);
        b.prev_randao = B256::repeat_byte(9);
        propose(&mut c, b, &landed);
        let mut b = block(&c, 2, B256::with_last_byte(1), &[]);
        b.fee_recipient = Address::repeat_byte(1);
        propose(&mut c, b, &landed);
        c.proposed(3, B256::repeat_byte(3), 1_003, None, |_| None);
        let mut b = block(&c, 4, B256::repeat_byte(3), &[]);
        b.canonical_on_local = false;
        propose(&mut c, b, &landed);
        let mut b = block(&c, 5, B256::repeat_byte(77), &[]);
        b.transactions.remove(0);
        propose(&mut c, b, &landed);
        let f = c.finish(|_| None);
        assert_eq!(f.wrong_block_count, 5, "{:#?}", f.wrong_blocks);
        for (i, what) in [
            "prevRandao",
            "fee recipient",
            "not on the local EL",
            "canonical",
            "parent",
        ]
        .iter()
        .enumerate()
        {
            assert!(f.wrong_blocks[i].contains(what), "{}", f.wrong_blocks[i]);
        }
    }

    #[test]
    fn a_builder_whose_failed_block_was_never_followed_by_a_proposed_one_still_explains_a_206() {
        // The soak's unexplained 206: b3 served garbage at 975..977, b1's blocks won every
        // slot after that (b3's offers were never tried), then b1 restarted and b2 was slow.
        let schedule = Schedule {
            seed: 1,
            windows: vec![
                "b3:garbage@975..977".parse().unwrap(),
                "b2:slow=214@1002..1021".parse().unwrap(),
            ],
            events: vec![Event {
                height: 1019,
                kind: EventKind::RestartBuilder(1),
            }],
        };
        let mut c = Checks::new(spec(), SequencerParams::default(), 3, schedule.clone());
        c.builder_proposed(3, 970);
        c.builder_proposed(1, 1018);
        let s = Duration::from_secs;
        assert!(c.health(206, s(1018), 1019));
        let why = c.findings.health[0].explained_by.clone();
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("b3:Garbage@975..977")),
            "{why:?}"
        );
        // A block of b3 proposed after its garbage shows engine-mux it recovered: then the
        // same 206 is not explained by that old fault.
        let mut c = Checks::new(spec(), SequencerParams::default(), 3, schedule);
        c.builder_proposed(3, 990);
        assert!(c.health(206, s(1018), 1019));
        assert_eq!(c.findings.health[0].explained_by, None);
    }

    #[test]
    fn health_changes_are_explained_by_the_schedule_or_reported() {
        let schedule = Schedule {
            seed: 1,
            windows: vec![
                "b1:hang@10..20".parse().unwrap(),
                "b2:invalid@12..15".parse().unwrap(),
            ],
            events: vec![Event {
                height: 30,
                kind: EventKind::RestartLocal,
            }],
        };
        let mut c = checks(schedule);
        let s = Duration::from_secs;
        c.health(206, s(6), 13);
        c.health(200, s(8), 17);
        c.local_restarted(s(15));
        c.health(503, s(16), 30);
        c.health(200, s(17), 31);
        // Nothing scheduled explains these.
        c.health(206, s(40), 80);
        c.health(200, s(41), 81);
        c.health(503, s(60), 120);
        let f = &c.findings;
        assert_eq!(f.health.len(), 7);
        assert!(
            f.health[0]
                .explained_by
                .as_deref()
                .unwrap()
                .contains("b1:Hang@10..20")
        );
        assert!(f.health[2].explained_by.is_some());
        assert_eq!(f.health[4].explained_by, None, "206 with no builder fault");
        assert_eq!(f.health[6].explained_by, None, "503 long after the restart");
        assert_eq!(f.unexplained_health(), 2);
        c.health(503, s(61), 121);
        assert_eq!(c.findings.health.len(), 7, "no change, no entry");
    }
}
