//! `devnet ha`: a high-availability sequencer set of two stacks (each its own local engine,
//! builder engine with flashblocks, and engine-mux following the other stack's flashblocks),
//! and a stand-in for op-conductor that switches the leader on a failover schedule: after
//! flashblock `k` of block `N` the leader's stack dies (its op-node stops mid-slot, its builder,
//! engine-mux and engines go away with their mempools), the follower becomes leader, and the dead
//! stack comes back empty and re-syncs as the new follower. The follower imports every sealed
//! block the way a follower op-node does: `newPayload` then `forkchoiceUpdated`, through its
//! engine-mux. Per failover the conductor prints the transactions the dead leader preconfirmed
//! for the interrupted block, how many the new leader's block at the same height carried over,
//! and how many were lost.

mod conductor;
mod config;
mod run;
mod stack;
mod stand_ins;

pub use config::{FailoverAt, FailoverOutcome, HaConfig, HaRun, Schedule};
pub use run::{HaArgs, run, run_ha};
pub use stand_ins::{FollowingStack, PeerStreamStandIn, op_node_slot};
