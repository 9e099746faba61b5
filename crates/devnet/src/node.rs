//! An op-node sequencer loop against any engine URL: FCU with attributes (L1-info deposit
//! first), getPayload near the end of the slot, newPayload, FCU to the new head, then a check
//! that the engine's head really is the block just proposed. The calls go over HTTP or, with
//! engine-mux linked in, through its typed in-process handle ([`DriverEngine`]).

mod engine;
mod error;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_primitives::B256;
use alloy_rpc_types_engine::{ForkchoiceState, ForkchoiceUpdated, JwtSecret, PayloadStatusEnum};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

pub use self::{engine::DriverEngine, error::DriverError};

use crate::chain::{
    attributes::{SequencerParams, sequencer_attributes},
    genesis::ChainSpec,
};

/// Buffered driver events per subscriber before a slow subscriber starts losing them.
const EVENT_BUFFER: usize = 1024;

/// How the driver runs.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Engine API URL (engine-mux or an engine directly), for [`start_driver`].
    pub engine_url: http::Uri,
    /// JWT secret for it, for [`start_driver`].
    pub jwt: JwtSecret,
    /// Slot length.
    pub block_time: Duration,
    /// getPayload is sent this long before the slot ends.
    pub get_payload_lead: Duration,
    /// Deadline for one engine call.
    pub call_timeout: Duration,
    /// Sequencer knobs (gas limit, 1559 params, min base fee).
    pub params: SequencerParams,
    /// Stop after this many proposed blocks (`None` = run until stopped).
    pub max_blocks: Option<u64>,
}

/// One slot's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// A block was built, imported and became the head.
    Proposed(ProposedBlock),
    /// The slot produced no block (the error says which step failed).
    Missed {
        /// Height that was attempted.
        number: u64,
        /// What went wrong.
        reason: String,
    },
}

/// A block the driver proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedBlock {
    /// Height.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Timestamp.
    pub timestamp: u64,
    /// Transactions (incl. the deposit).
    pub tx_count: usize,
    /// Gas used.
    pub gas_used: u64,
    /// Whether it came through the V4 (Isthmus) methods.
    pub v4: bool,
    /// Time from FCU-with-attributes to getPayload answer.
    pub get_payload_latency: Duration,
    /// How long each engine call of the slot took.
    pub calls: SlotCalls,
}

/// The duration of each engine call of one slot (the wait for the slot's end not included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCalls {
    /// `engine_forkchoiceUpdatedV3` with the block's attributes.
    pub fcu_attributes: Duration,
    /// `engine_getPayloadV3`/`V4`.
    pub get_payload: Duration,
    /// `engine_newPayloadV3`/`V4`.
    pub new_payload: Duration,
    /// `engine_forkchoiceUpdatedV3` to the new head (no attributes).
    pub fcu: Duration,
}

impl SlotCalls {
    /// The four calls together: what the block cost in engine calls.
    pub fn total(&self) -> Duration {
        self.fcu_attributes + self.get_payload + self.new_payload + self.fcu
    }
}

/// Counters readable while the driver runs.
#[derive(Debug, Default)]
pub struct DriverStats {
    /// Blocks proposed.
    pub proposed: AtomicU64,
    /// Slots missed.
    pub missed: AtomicU64,
}

/// Handle to a running driver.
#[derive(Debug)]
pub struct DriverHandle {
    /// Counters.
    pub stats: Arc<DriverStats>,
    events: broadcast::Sender<DriverEvent>,
    stop: watch::Sender<bool>,
    finished: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DriverHandle {
    /// Resolves when the loop has ended (`max_blocks` reached or stopped).
    pub async fn finished(&self) {
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// A new subscription to slot outcomes.
    pub fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }

    /// Stops the loop after the current slot.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits for the loop to end by itself (`max_blocks`).
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// Ends the loop at once, mid-slot: a sequencer that dies (no getPayload for the block in
    /// progress). Used by `devnet ha`'s op-conductor stand-in.
    pub fn abort(&self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy)]
struct Head {
    number: u64,
    hash: B256,
    timestamp: u64,
}

fn parse_head(v: &Value) -> Option<Head> {
    let num = |k: &str| u64::from_str_radix(v.get(k)?.as_str()?.trim_start_matches("0x"), 16).ok();
    Some(Head {
        number: num("number")?,
        hash: v.get("hash")?.as_str()?.parse().ok()?,
        timestamp: num("timestamp")?,
    })
}

struct Driver {
    engine: DriverEngine,
    spec: ChainSpec,
    config: DriverConfig,
}

impl Driver {
    async fn latest(&self) -> Result<Head, DriverError> {
        let v = self.engine.latest_block(self.config.call_timeout).await?;
        parse_head(&v).ok_or(DriverError::Malformed("eth_getBlockByNumber answer"))
    }

    async fn fcu(
        &self,
        head: B256,
        attrs: Option<op_alloy_rpc_types_engine::OpPayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, DriverError> {
        let state = ForkchoiceState {
            head_block_hash: head,
            safe_block_hash: head,
            finalized_block_hash: head,
        };
        let out = self
            .engine
            .fork_choice_updated(state, attrs, self.config.call_timeout)
            .await?;
        if out.payload_status.status != PayloadStatusEnum::Valid {
            return Err(DriverError::NotValid {
                step: "forkchoiceUpdated",
                status: out.payload_status.status,
            });
        }
        Ok(out)
    }

    /// When the slot building on `head` ends. With whole-second block times the chain is tied
    /// to the wall clock like op-node's: the block with timestamp `t` is sealed at unix time `t`
    /// (a chain that fell behind catches up with shorter slots, never shorter than a quarter
    /// block). Sub-second block times (tests) cannot match timestamps, so slots are relative.
    fn slot_end(&self, head: &Head, slot_start: tokio::time::Instant) -> tokio::time::Instant {
        let block_time = self.config.block_time;
        if block_time.subsec_nanos() != 0 || block_time.is_zero() {
            return slot_start + block_time;
        }
        let now = tokio::time::Instant::now();
        let next_ts = head.timestamp + block_time.as_secs();
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let until = Duration::from_secs(next_ts).saturating_sub(unix_now);
        (now + until).max(now + block_time / 4)
    }

    async fn slot(
        &self,
        head: Head,
        slot_end: tokio::time::Instant,
    ) -> Result<ProposedBlock, DriverError> {
        let number = head.number + 1;
        let timestamp = head.timestamp + self.config.block_time.as_secs().max(1);
        let attrs = sequencer_attributes(&self.spec, &self.config.params, number, timestamp);
        let mut calls = SlotCalls::default();
        let started = tokio::time::Instant::now();
        let fcu = self.fcu(head.hash, Some(attrs)).await?;
        calls.fcu_attributes = started.elapsed();
        let id = fcu.payload_id.ok_or(DriverError::NoPayloadId)?;
        tokio::time::sleep_until(
            slot_end
                .checked_sub(self.config.get_payload_lead)
                .unwrap_or(slot_end),
        )
        .await;
        let v4 = self.spec.is_isthmus(timestamp);
        let timeout = self.config.call_timeout;
        let started = tokio::time::Instant::now();
        let payload = self.engine.get_payload(id, v4, timeout).await?;
        calls.get_payload = started.elapsed();
        let (hash, tx_count, gas_used) = payload.summary();
        let started = tokio::time::Instant::now();
        let status = self.engine.new_payload(payload, timeout).await?;
        calls.new_payload = started.elapsed();
        if status.status != PayloadStatusEnum::Valid {
            return Err(DriverError::NotValid {
                step: "newPayload",
                status: status.status,
            });
        }
        let started = tokio::time::Instant::now();
        self.fcu(hash, None).await?;
        calls.fcu = started.elapsed();
        let now_head = self.latest().await?;
        if now_head.hash != hash {
            return Err(DriverError::HeadMismatch {
                expected: hash,
                actual: now_head.hash,
            });
        }
        Ok(ProposedBlock {
            number,
            hash,
            timestamp,
            tx_count,
            gas_used,
            v4,
            get_payload_latency: calls.get_payload,
            calls,
        })
    }
}

/// Starts the sequencer loop against `config.engine_url` over HTTP; the chain spec must match
/// the engine's genesis.
pub fn start_driver(config: DriverConfig, spec: ChainSpec) -> DriverHandle {
    let engine = DriverEngine::http(config.engine_url.clone(), config.jwt, config.call_timeout);
    start_driver_on(engine, config, spec)
}

/// Starts the sequencer loop against `engine` (`config.engine_url` and `config.jwt` unused).
pub fn start_driver_on(
    engine: DriverEngine,
    config: DriverConfig,
    spec: ChainSpec,
) -> DriverHandle {
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let (stop, mut stop_rx) = watch::channel(false);
    let stats = Arc::new(DriverStats::default());
    let (finished_tx, finished) = watch::channel(false);
    let driver = Driver {
        engine,
        spec,
        config,
    };
    let (tx, task_stats) = (events.clone(), stats.clone());
    let task = tokio::spawn(async move {
        let mut slot_start = tokio::time::Instant::now();
        let mut head: Option<Head> = None;
        let mut proposed = 0u64;
        loop {
            if *stop_rx.borrow() || driver.config.max_blocks.is_some_and(|m| proposed >= m) {
                break;
            }
            let current = match head {
                Some(h) => Ok(h),
                None => driver.latest().await,
            };
            let slot_end = match &current {
                Ok(h) => driver.slot_end(h, slot_start),
                Err(_) => slot_start + driver.config.block_time,
            };
            let outcome = match current {
                Ok(h) => driver
                    .slot(h, slot_end)
                    .await
                    .map_err(|e| (h.number + 1, e)),
                Err(e) => Err((0, e)),
            };
            match outcome {
                Ok(block) => {
                    proposed += 1;
                    task_stats.proposed.fetch_add(1, Ordering::Relaxed);
                    head = Some(Head {
                        number: block.number,
                        hash: block.hash,
                        timestamp: block.timestamp,
                    });
                    let _ = tx.send(DriverEvent::Proposed(block));
                }
                Err((number, e)) => {
                    tracing::warn!(number, error = %e, "driver missed a slot");
                    task_stats.missed.fetch_add(1, Ordering::Relaxed);
                    // Re-read the head next slot: the engine may have moved or restarted.
                    head = None;
                    let _ = tx.send(DriverEvent::Missed {
                        number,
                        reason: e.to_string(),
                    });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(slot_end) => {}
                _ = stop_rx.changed() => {}
            }
            slot_start = slot_end.max(tokio::time::Instant::now());
        }
        let _ = finished_tx.send(true);
    });
    DriverHandle {
        stats,
        events,
        stop,
        finished,
        task,
    }
}
