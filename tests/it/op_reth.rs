//! The pending-state scenarios with a real op-reth as the local EL and flashblocks-rpc's
//! upstream (the devnet builder still builds; engine-mux between the driver and both), each
//! through an instance on engine-mux's stream and one on it stripped of metadata. Ignored
//! without a binary (CI has none):
//!
//! ```sh
//! OP_RETH_BIN=/path/to/op-reth cargo nextest run -p e2e --run-ignored only op_reth
//! ```
//!
//! A request op-reth refuses fails the scenario with the exact request and answer (the tap in
//! front of op-reth keeps them); op-reth's output is in the log file the failure names.

use e2e::Net;

use crate::{pending_call, pending_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OP_RETH_BIN (a real op-reth)"]
async fn op_reth_pending_logs_merge_with_filters_and_block_indexes() {
    pending_state::logs_scenario(Net::start_on_op_reth(0.0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OP_RETH_BIN (a real op-reth)"]
async fn op_reth_pending_code_and_storage_see_a_preconfirmed_deployment_and_write() {
    pending_state::code_and_storage_scenario(Net::start_on_op_reth(0.0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OP_RETH_BIN (a real op-reth)"]
async fn op_reth_pending_balances_after_a_contract_call_equal_the_sealed_ones() {
    pending_state::balances_scenario(Net::start_on_op_reth(0.0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OP_RETH_BIN (a real op-reth)"]
async fn op_reth_pending_nonce_counts_preconfirmed_transactions() {
    pending_state::nonce_scenario(Net::start_on_op_reth(0.0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OP_RETH_BIN (a real op-reth)"]
async fn op_reth_pending_eth_call_and_estimate_see_a_preconfirmed_write() {
    pending_call::scenario(Net::start_on_op_reth(0.0).await).await;
}
