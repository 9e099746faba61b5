//! What builders offer for one block and what becomes of it: candidate blocks, their origin,
//! each builder's verdict, the chosen block.

use engine_api::PayloadEnvelope;
use serde_json::value::RawValue;

use super::{fallback::FallbackReason, payload_check::BuildRequest};

/// A block a builder offers for one payload.
#[derive(Debug)]
pub struct Candidate {
    /// The builder offering it.
    pub builder: &'static str,
    /// The envelope as `engine_getPayload` answers with it.
    pub raw: Box<RawValue>,
    /// The same, typed.
    pub envelope: PayloadEnvelope,
    /// With flashblocks: how it came about.
    pub path: Option<Origin>,
    /// Its validation must be done by then (earlier than the deadline when a fallback candidate
    /// still needs time).
    pub validate_by: tokio::time::Instant,
    /// What validating the builder's block before op-node asked found about this block.
    pub early: EarlyCheck,
}

/// How a candidate block came about when the builder streams flashblocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The builder's getPayload answer, which carries every preconfirmed transaction in order.
    BuilderPayload,
    /// Assembled from the accepted flashblocks, after the builder's block failed or dropped
    /// preconfirmed transactions.
    Assembled,
    /// Assembled from the accepted flashblocks, the builder having delivered no block.
    Preserved,
}

impl Origin {
    /// The label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BuilderPayload => "builder_payload",
            Self::Assembled => "assembled",
            Self::Preserved => "preserved",
        }
    }
}

/// A builder's part in one block's selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its block was chosen.
    Chosen,
    /// Its offer failed, for this reason.
    Failed(FallbackReason),
    /// It offered, but was not tried: a better offer was chosen first, or another builder's
    /// preconfirmations decided the block.
    NotTried,
}

/// How a candidate relates to the builder's block validated before op-node asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyCheck {
    /// Nothing was validated early for it.
    None,
    /// The builder answered other bytes than the block validated early (whatever hash they
    /// claim): they are validated again.
    Changed,
    /// These very bytes were checked and validated early, with this outcome.
    Same(Result<(), FallbackReason>),
}

/// What a builder offers for one payload, best first.
#[derive(Debug)]
pub struct Candidates {
    /// The block op-node asked for.
    pub request: BuildRequest,
    /// The blocks, best first.
    pub list: Vec<Candidate>,
    /// Flashblocks of this block already shown to subscribers.
    pub preconfirmed: usize,
    /// The transactions those flashblocks carried, in order (empty without preconfirmations):
    /// when no candidate is VALID, the local EL builds a block of exactly these.
    pub preconfirmed_txs: Vec<alloy_primitives::Bytes>,
    /// When op-node's getPayload must be answered.
    pub deadline: tokio::time::Instant,
    /// Why there is nothing better, when `list` is empty.
    pub failure: FallbackReason,
    /// Whether this is the first getPayload for this block (a block with an external state
    /// root is rebuilt on the first only).
    pub first_ask: bool,
}

/// A candidate that is the block op-node asked for and VALID.
#[derive(Debug)]
pub struct Chosen {
    /// The builder whose block it is.
    pub builder: &'static str,
    /// The envelope to answer op-node with.
    pub raw: Box<RawValue>,
    /// The same, typed.
    pub envelope: PayloadEnvelope,
    /// Flashblocks it carries that were shown to subscribers.
    pub preconfirmed: usize,
    /// Set when every block the builder offered failed (for this reason) and the local EL
    /// built the preconfirmed transactions itself: the builder is still at fault.
    pub rebuilt_after: Option<FallbackReason>,
}

/// One builder's offer for a block.
#[derive(Debug)]
pub struct Offer {
    /// The builder's name.
    pub builder: &'static str,
    /// Its priority (lower is preferred).
    pub priority: u32,
    /// Its candidates, or why it has none.
    pub result: Result<Candidates, FallbackReason>,
}

/// What selection made of every builder's offer.
#[derive(Debug)]
pub(crate) struct Selection {
    /// The block chosen, or why there is none.
    pub chosen: Result<Chosen, FallbackReason>,
    /// Per builder that offered, its part in the block.
    pub verdicts: Vec<(&'static str, Verdict)>,
}
