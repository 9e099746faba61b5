//! Executing the pending blocks through the upstream's `eth_simulateV1` (op-geth and op-reth
//! serve it, as does the devnet engine): each pending block becomes one simulated block with its
//! header fields as block overrides and its transactions (deposits included) as calls, on top of
//! the head the pending blocks extend. From one run per new flashblock come the receipts a
//! stream without metadata does not send and the balances of every sender and recipient; state
//! reads of other accounts, code and storage append probe calls to a run of their own.

mod answer;
mod cache;
mod fees;
mod request;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use alloy_consensus::Transaction;
use alloy_primitives::{Address, B256, Bytes, U256};
use engine_types::codes::METHOD_NOT_FOUND;
use rpc_objects::fees::{BASE_FEE_VAULT, OPERATOR_FEE_VAULT};
use serde_json::Value;
use tokio::sync::watch;

pub use self::{
    answer::{Ran, SimCallResult, SimulateError},
    cache::{ChainKey, Execution, Executions, MAX_EXECUTIONS},
    fees::{Family, corrected_balance},
    request::{
        BALANCE_PROBE, CODE_PROBE, RPC_GAS_CAP, Read, simulate_request, simulated_block,
        tail_gas_allowance, tx_call,
    },
};
use self::{
    answer::{SimulatedCalls, word_u256},
    fees::{calibration_request, family_from_calibration},
    request::probe_blocks,
};
use crate::{
    context::Context,
    metrics::Simulation,
    pending::{block::PendingBlock, executed::Outcome},
};

/// The served pending chain, copied out of the lock: its key, head and blocks.
pub fn snapshot(ctx: &Context) -> Option<(ChainKey, Vec<PendingBlock>)> {
    let state = ctx.read();
    let chain = state.chain(Instant::now());
    let head = chain.first()?.parent_hash();
    let key = (head, chain.iter().map(|b| b.hash).collect());
    Some((key, chain.into_iter().cloned().collect()))
}

/// Simulates `blocks` on top of `head` with `tail` (a caller's call) run last in the last
/// pending block, in its environment, then the `extra` blocks (probe reads).
pub async fn simulate(
    ctx: &Context,
    head: B256,
    blocks: &[PendingBlock],
    tail: Option<Value>,
    extra: Vec<Value>,
) -> Result<Ran, SimulateError> {
    let has_tail = tail.is_some();
    let (request, requested) = simulate_request(head, blocks, tail, extra);
    let answer = call_simulate(ctx, &request).await?;
    if answer.len() != requested {
        return Err(SimulateError::Failed(format!(
            "{} simulated blocks for {} requested",
            answer.len(),
            requested
        )));
    }
    let mut answer = answer.into_iter().map(|b| b.calls);
    let mut ran: Vec<Vec<SimCallResult>> = answer.by_ref().take(blocks.len()).collect();
    let tail = match (has_tail, ran.last_mut()) {
        (true, Some(last)) => last.pop(),
        _ => None,
    };
    for (block, calls) in blocks.iter().zip(&ran) {
        if calls.len() != block.txs.len() {
            return Err(SimulateError::Failed(format!(
                "{} call results for {} transactions",
                calls.len(),
                block.txs.len()
            )));
        }
    }
    Ok(Ran {
        blocks: ran,
        tail,
        extra: answer.flatten().collect(),
    })
}

/// Tells the upstream's [`Family`] from one calibration run on its head.
async fn detect_family(ctx: &Context) -> Result<Family, SimulateError> {
    let answer = call_simulate(ctx, &calibration_request()).await?;
    family_from_calibration(&answer)
}

/// The upstream's [`Family`], detected once (a failed detection is retried next time).
async fn family(ctx: &Context) -> Result<Family, SimulateError> {
    ctx.executions
        .family
        .get_or_try_init(|| detect_family(ctx))
        .await
        .copied()
}

/// `simulated`, the balance of `address` after `blocks` as the upstream simulated it,
/// corrected (`None`: a fee vault whose correction depends on the upstream's family, which
/// could not be told).
async fn corrected(
    ctx: &Context,
    blocks: &[PendingBlock],
    address: Address,
    simulated: U256,
) -> Option<U256> {
    let family = if address == BASE_FEE_VAULT || address == OPERATOR_FEE_VAULT {
        match family(ctx).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%e, "simulation family unknown");
                return None;
            }
        }
    } else {
        // Accounts other than these two vaults are corrected the same for both.
        Family::Geth
    };
    Some(corrected_balance(blocks, address, simulated, family))
}

/// The execution of the served pending chain: cached per chain, computed on the first ask (by
/// the background task on each new flashblock, or a handler). `None`: no pending chain, or
/// the simulation is unavailable, failed or diverged from the stream (counted by outcome).
pub async fn execution(ctx: &Context) -> Option<Arc<Execution>> {
    let (key, blocks) = snapshot(ctx)?;
    let cell = ctx.executions.cell(&ctx.metrics, &key);
    cell.get_or_init(|| execute(ctx, key.0, blocks))
        .await
        .clone()
}

async fn execute(ctx: &Context, head: B256, blocks: Vec<PendingBlock>) -> Option<Arc<Execution>> {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_millis() as u64;
    let mut touched: Vec<Address> = Vec::new();
    let mut seen = HashSet::new();
    for block in &blocks {
        let parties = block
            .txs
            .iter()
            .flat_map(|t| [Some(t.tx.signer()), t.tx.to()])
            .chain([Some(block.header.beneficiary)])
            .flatten();
        for a in parties {
            if seen.insert(a) {
                touched.push(a);
            }
        }
    }
    let reads: Vec<Read> = touched.iter().map(|a| Read::Balance(*a)).collect();
    let ran = match simulate(ctx, head, &blocks, None, probe_blocks(&reads)).await {
        Ok(r) => r,
        Err(SimulateError::Unsupported) => {
            ctx.metrics.simulated(Simulation::Unsupported, elapsed());
            return None;
        }
        Err(e) => {
            tracing::debug!(%e, "pending execution failed");
            ctx.metrics.simulated(Simulation::Failed, elapsed());
            return None;
        }
    };
    let mut executed = Vec::with_capacity(blocks.len());
    for (block, calls) in blocks.iter().zip(&ran.blocks) {
        let outcomes: Vec<Outcome> = calls
            .iter()
            .map(|c| Outcome {
                status: c.status,
                gas_used: c.gas_used,
                logs: c.logs.clone(),
            })
            .collect();
        match block.executed(&outcomes) {
            Ok(b) => executed.push(b),
            Err(e) => {
                tracing::debug!(%e, block = block.number(), "simulation diverged from the stream");
                ctx.metrics.simulated(Simulation::Divergent, elapsed());
                return None;
            }
        }
    }
    let mut balances = HashMap::new();
    for (address, result) in touched.iter().zip(&ran.extra) {
        if let Some(b) = word_u256(result)
            && let Some(b) = corrected(ctx, &executed, *address, b).await
        {
            balances.insert(*address, b);
        }
    }
    ctx.metrics.simulated(Simulation::Ok, elapsed());
    Some(Arc::new(Execution {
        head,
        blocks: executed,
        balances,
    }))
}

/// What a probe read: a balance or slot as a word, code as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadValue {
    /// A balance or a storage word.
    Word(U256),
    /// Code.
    Code(Bytes),
}

/// Reads `read` after the pending chain `blocks` (on `head`) with a run of its own.
pub async fn probe(
    ctx: &Context,
    head: B256,
    blocks: &[PendingBlock],
    read: Read,
) -> Result<ReadValue, SimulateError> {
    let ran = simulate(ctx, head, blocks, None, probe_blocks(&[read])).await?;
    let result = ran
        .extra
        .first()
        .ok_or_else(|| SimulateError::Failed("no probe result".into()))?;
    if !result.status {
        return Err(SimulateError::Failed(format!(
            "probe failed: {:?}",
            result.error.as_ref().map(|e| &e.message)
        )));
    }
    ctx.metrics.probed();
    Ok(match read {
        Read::Code(_) => ReadValue::Code(result.return_data.clone()),
        Read::Balance(a) => {
            let simulated = word_u256(result)
                .ok_or_else(|| SimulateError::Failed("short balance word".into()))?;
            ReadValue::Word(
                corrected(ctx, blocks, a, simulated)
                    .await
                    .ok_or_else(|| SimulateError::Failed("fee vault correction unknown".into()))?,
            )
        }
        Read::Storage(..) => ReadValue::Word(
            word_u256(result).ok_or_else(|| SimulateError::Failed("short storage word".into()))?,
        ),
    })
}

/// Executes each new pending chain as flashblocks arrive (woken per accepted flashblock; a
/// burst coalesces into one run of the latest chain) until `stop` flips.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = ctx.execute_nudge.notified() => {}
            _ = stop.changed() => return,
        }
        let _ = execution(&ctx).await;
    }
}

/// One `eth_simulateV1` call to the upstream; an upstream without the method (-32601) is
/// `Unsupported`, any other failure `Failed`.
async fn call_simulate(
    ctx: &Context,
    request: &serde_json::Value,
) -> Result<Vec<SimulatedCalls>, SimulateError> {
    match ctx
        .upstream
        .call("eth_simulateV1", request, ctx.config.upstream.timeout)
        .await
    {
        Ok(a) => Ok(a),
        Err(engine_api::UpstreamError::Rpc { error, .. }) if error.code() == METHOD_NOT_FOUND => {
            Err(SimulateError::Unsupported)
        }
        Err(e) => Err(SimulateError::Failed(e.to_string())),
    }
}
