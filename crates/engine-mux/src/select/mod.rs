//! Block selection: which builder's block is proposed, if any. `offers` holds what the builders
//! offer and the verdicts, `rank` the policies, `decide` the one path from offers to the chosen
//! block (used by getPayload, by validation before op-node asks and by external-state-root
//! rebuilds); the policy then weighs the chosen block against the local one (never against
//! preconfirmations already shown to users).

mod decide;
pub(crate) mod fallback;
mod offers;
pub mod payload_check;
mod rank;
#[cfg(test)]
pub(crate) mod testing;

pub use self::rank::{BuilderPolicy, SelectionPolicy};
pub(crate) use self::{
    decide::{check_attributes, select},
    offers::{Candidate, Candidates, EarlyCheck, Offer, Origin, Verdict},
    rank::RankKey,
};
