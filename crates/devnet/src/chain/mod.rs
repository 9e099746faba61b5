//! The chain every part shares, with no process behind it: its spec and genesis, world state,
//! fee rules, the L1-attributes deposit and payload attributes a sequencer sends, and the funded
//! dev accounts.

pub mod accounts;
pub mod attributes;
pub mod fees;
pub mod genesis;
pub mod l1_info;
pub mod state;
