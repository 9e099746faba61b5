//! The op-conductor stand-in: a leader's term (its op-node, users and a subscriber to its
//! flashblocks), and killing the leader's stack after a given flashblock.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy_primitives::B256;
use futures::StreamExt;
use op_alloy_rpc_types_engine::OpFlashblockPayload;
use tokio::{sync::watch, task::JoinHandle};

use super::{
    config::{DRAIN, FailoverAt, STEP_TIMEOUT},
    stack::{Shared, Stack, import},
};
use crate::{
    chain::attributes::SequencerParams,
    engine::{faults::Fault, store::ChainBlock},
    node::{DriverConfig, DriverEvent, DriverHandle, start_driver},
    spammer::{SpammerConfig, SpammerHandle, start_spammer},
};

/// A subscriber to a leader's engine-mux flashblocks (what users see through flashblocks-proxy).
pub(super) struct Watcher {
    pub(super) frames: Arc<Mutex<Vec<OpFlashblockPayload>>>,
    pub(super) latest: watch::Receiver<(u64, u64)>,
    pub(super) task: JoinHandle<()>,
}

impl Watcher {
    pub(super) async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let url = format!("ws://{addr}");
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let ws = loop {
            match tokio_tungstenite::connect_async(&url).await {
                Ok((ws, _)) => break ws,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("subscribing to {url}: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (tx, latest) = watch::channel((0, 0));
        let sink = frames.clone();
        let task = tokio::spawn(async move {
            let (_, mut read) = ws.split();
            let mut numbers = std::collections::HashMap::new();
            while let Some(Ok(msg)) = read.next().await {
                let Ok(text) = msg.to_text() else { continue };
                let Ok(fb) = engine_api::flashblocks::parse(text.as_bytes()) else {
                    continue;
                };
                if let Some(base) = &fb.base {
                    numbers.insert(fb.payload_id, base.block_number);
                }
                let number = numbers.get(&fb.payload_id).copied().unwrap_or_default();
                let index = fb.index;
                if let Ok(mut f) = sink.lock() {
                    f.push(fb);
                }
                let _ = tx.send((number, index));
            }
        });
        Ok(Self {
            frames,
            latest,
            task,
        })
    }

    pub(super) fn frames(&self) -> Vec<OpFlashblockPayload> {
        self.frames.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Non-deposit transaction hashes of `frames` of block `number`, in order.
pub(super) fn preconfirmed_of(frames: &[OpFlashblockPayload], number: u64) -> Vec<B256> {
    let Some(id) = frames
        .iter()
        .rev()
        .find(|f| f.base.as_ref().is_some_and(|b| b.block_number == number))
        .map(|f| f.payload_id)
    else {
        return Vec::new();
    };
    frames
        .iter()
        .filter(|f| f.payload_id == id)
        .flat_map(|f| f.diff.transactions.iter())
        .filter(|raw| raw.first() != Some(&0x7e))
        .map(alloy_primitives::keccak256)
        .collect()
}

pub(super) fn user_txs(block: &ChainBlock) -> Vec<B256> {
    block
        .transactions
        .iter()
        .filter(|t| !t.inner().is_deposit())
        .map(|t| t.tx_hash())
        .collect()
}

/// A leader's term: its op-node, its users' spammer and a subscriber to its flashblocks.
pub(super) struct Term {
    pub(super) leader: usize,
    pub(super) driver: DriverHandle,
    pub(super) spammer: Option<SpammerHandle>,
    pub(super) watcher: Watcher,
    pub(super) gossip: Option<JoinHandle<()>>,
}

pub(super) struct Conductor {
    pub(super) shared: Arc<Shared>,
    pub(super) stacks: [Option<Arc<Stack>>; 2],
    pub(super) published: Vec<OpFlashblockPayload>,
    pub(super) rng: u64,
}

impl Conductor {
    pub(super) fn next_random(&mut self) -> u64 {
        // xorshift64: a seeded, repeatable schedule without another dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    pub(super) fn stack(&self, i: usize) -> Result<&Arc<Stack>, String> {
        self.stacks[i]
            .as_ref()
            .ok_or_else(|| format!("stack {i} is not running"))
    }

    pub(super) async fn begin_term(&mut self, leader: usize, term: usize) -> Result<Term, String> {
        let shared = self.shared.clone();
        let stack = self.stack(leader)?.clone();
        let config = &shared.config;
        let engine_url: http::Uri = format!("http://{}", stack.mux.rpc_addr)
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let watcher = Watcher::connect(
            stack
                .mux
                .flashblocks_addr
                .ok_or("engine-mux publishes no flashblocks")?,
        )
        .await?;
        let driver = start_driver(
            DriverConfig {
                engine_url: engine_url.clone(),
                jwt: shared.jwt,
                block_time: config.block_time,
                get_payload_lead: config.block_time / 5,
                call_timeout: Duration::from_secs(2).max(config.block_time),
                params: SequencerParams::default(),
                max_blocks: None,
            },
            shared.spec().clone(),
        );
        let per = config.accounts_per_term.max(1);
        let accounts: Vec<_> = shared
            .signers
            .iter()
            .skip(term * per)
            .take(per)
            .cloned()
            .collect();
        let spammer = (config.tx_rate > 0.0 && !accounts.is_empty()).then(|| {
            start_spammer(
                SpammerConfig {
                    rpc_url: engine_url,
                    jwt: Some(shared.jwt),
                    rate: config.tx_rate,
                    chain_id: shared.spec().chain_id,
                    max_fee_per_gas: 2_000_000_000,
                    max_priority_fee_per_gas: 1_000_000,
                    call_timeout: Duration::from_secs(2),
                },
                accounts,
            )
        });
        Ok(Term {
            leader,
            driver,
            spammer,
            watcher,
            gossip: None,
        })
    }

    /// The follower imports each block the leader seals (like a follower op-node from gossip).
    pub(super) fn start_gossip(&self, term: &mut Term) -> Result<(), String> {
        let leader = self.stack(term.leader)?.clone();
        let follower = self.stack(1 - term.leader)?.clone();
        let spec = self.shared.spec().clone();
        let mut events = term.driver.subscribe();
        term.gossip = Some(tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(DriverEvent::Proposed(_))
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(e) = import(&spec, &leader.local.engine, &follower).await {
                            tracing::warn!(%e, "follower import failed; retried on the next block");
                        }
                    }
                    Ok(DriverEvent::Missed { .. }) => {}
                    Err(_) => break,
                }
            }
        }));
        Ok(())
    }

    /// Kills the leader's whole stack after flashblock `at.after_flashblock` of a block at or
    /// above `at.block`; returns the interrupted height and the index seen last.
    pub(super) async fn kill_leader(
        &mut self,
        mut term: Term,
        at: FailoverAt,
    ) -> Result<(u64, u64), String> {
        let mut latest = term.watcher.latest.clone();
        let seen = tokio::time::timeout(
            STEP_TIMEOUT,
            latest.wait_for(|(n, i)| *n >= at.block && *i >= at.after_flashblock),
        )
        .await
        .map_err(|_| {
            format!(
                "no flashblock {} of block {} in time",
                at.after_flashblock, at.block
            )
        })?
        .map(|v| *v)
        .map_err(|_| "the leader's flashblocks stream ended".to_string())?;
        // The sequencer dies: op-node mid-slot (no getPayload), users' connection, builder.
        term.driver.abort();
        if let Some(s) = &term.spammer {
            s.pause();
        }
        if let Some(g) = term.gossip.take() {
            g.abort();
            let _ = g.await;
        }
        let dead = self.stacks[term.leader]
            .take()
            .ok_or("the leader is not running")?;
        dead.builder
            .engine
            .faults()
            .set(Fault::FlashblocksDown, true);
        tokio::time::sleep(DRAIN).await;
        let last = term.watcher.latest.borrow().to_owned();
        term.watcher.task.abort();
        self.published.extend(term.watcher.frames());
        // Everything the dead leader sealed reached the follower (op-conductor hands leadership
        // only to a caught-up follower).
        let follower = self.stack(1 - term.leader)?.clone();
        import(self.shared.spec(), &dead.local.engine, &follower).await?;
        let Ok(dead) = Arc::try_unwrap(dead) else {
            return Err("the dead stack is still in use".into());
        };
        dead.mux.shutdown().await;
        dead.builder.stop().await;
        dead.local.stop().await;
        Ok((seen.0, last.1.max(seen.1)))
    }
}
