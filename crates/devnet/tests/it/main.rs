//! End-to-end scenarios: a real local engine, a real builder engine, engine-mux between them,
//! the driver playing op-node and the spammer, all in-process on loopback ports.

mod support;

mod builder_catch_up;
mod builder_down;
mod builder_garbage;
mod builder_hangs;
mod builder_invalid;
mod builder_rejoins;
mod builder_zero_state_root;
mod builders_flashblocks_elected;
mod builders_invalid_slow_good;
mod builders_policy;
mod builders_runtime;
mod embedded_driver;
mod engine_rpc;
mod failover_carry;
mod flashblocks;
mod flashblocks_after_proposal;
mod flashblocks_builder_drops_preconfirmed;
mod flashblocks_builder_killed;
mod flashblocks_fifty_blocks;
mod flashblocks_fork_transition;
mod flashblocks_hostile;
mod flashblocks_invalid_builder_block;
mod flashblocks_late;
mod flashblocks_p2p;
mod flashblocks_reconnect;
mod flashblocks_slow_subscriber;
mod flashblocks_zero_state_root;
mod fork_transition;
mod ha_failover;
mod healthy;
mod local_down;
mod prevalidation;
mod wallet;
