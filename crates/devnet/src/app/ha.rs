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

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy_primitives::B256;
use alloy_rpc_types_engine::{ExecutionPayloadV3, ForkchoiceState, JwtSecret, PayloadStatus};
use alloy_signer_local::PrivateKeySigner;
use engine_api::{Upstream, UpstreamConfig};
use engine_mux::RunningMux;
use futures::StreamExt;
use op_alloy_rpc_types_engine::{OpExecutionPayloadV4, OpFlashblockPayload};
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

use super::{
    args::parse_duration,
    config::DevnetFlashblocks,
    error::{CommandError, DevnetError},
    start::{MuxWiring, load_genesis, start_engine_on, start_engine_with, start_mux, unix_now},
};
use crate::{
    chain::{
        accounts::funded_dev_signers,
        attributes::SequencerParams,
        genesis::{ChainSpec, LoadedGenesis},
    },
    engine::{
        Engine, Role,
        flashblocks::FlashblocksConfig,
        rpc::{EngineServerConfig, RunningEngine},
        store::ChainBlock,
    },
    node::{DriverConfig, DriverEvent, DriverHandle, start_driver},
    spammer::{SpammerConfig, SpammerHandle, start_spammer},
};

/// How long a dying leader's engine-mux keeps serving its subscribers after its op-node and
/// builder stopped, so frames already in flight reach them (the peer and the users alike).
const DRAIN: Duration = Duration::from_millis(150);
/// Longest wait for one scheduled event (a flashblock, a block, a sync).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// One scheduled failover: after flashblock `after_flashblock` of block `block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverAt {
    /// Flashblock index the leader dies after.
    pub after_flashblock: u64,
    /// Block height.
    pub block: u64,
}

impl FromStr for FailoverAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err =
            || format!("invalid failover {s:?} (expected K@N: after flashblock K of block N)");
        let (k, n) = s.split_once('@').ok_or_else(err)?;
        Ok(Self {
            after_flashblock: k.trim().parse().map_err(|_| err())?,
            block: n.trim().parse().map_err(|_| err())?,
        })
    }
}

/// The failover schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Exactly these, in order (heights increasing).
    Fixed(Vec<FailoverAt>),
    /// `count` failovers, each 2–3 blocks into a leader's term, after a flashblock index drawn
    /// from `1..=max_index` (seeded, so a run can be repeated).
    Random {
        /// How many.
        count: usize,
        /// PRNG seed.
        seed: u64,
        /// Largest flashblock index drawn.
        max_index: u64,
    },
}

/// Everything `devnet ha` can be told.
#[derive(Clone, Debug)]
pub struct HaConfig {
    /// Slot length.
    pub block_time: Duration,
    /// Time between two flashblocks of one block.
    pub flashblocks_interval: Duration,
    /// Spammer rate (to the current leader).
    pub tx_rate: f64,
    /// When leaders die.
    pub schedule: Schedule,
    /// Each engine-mux follows the other stack's flashblocks (`--flashblocks-peer-url`); off
    /// shows what a failover costs without the feature.
    pub carry_over: bool,
    /// Dev accounts the spammer uses per leader term (fresh ones each term, so a transaction lost
    /// with a dead leader's mempool is never re-created by a later term).
    pub accounts_per_term: usize,
    /// Extra engine-mux flags for both stacks.
    pub mux_args: Vec<String>,
    /// Address everything binds to.
    pub host: IpAddr,
    /// Print a line per failover.
    pub print: bool,
}

impl Default for HaConfig {
    fn default() -> Self {
        Self {
            block_time: Duration::from_secs(1),
            flashblocks_interval: Duration::from_millis(200),
            tx_rate: 10.0,
            schedule: Schedule::Random {
                count: 5,
                seed: 1,
                max_index: 3,
            },
            carry_over: true,
            accounts_per_term: 2,
            mux_args: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            print: true,
        }
    }
}

/// What one failover did to the interrupted block's preconfirmations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverOutcome {
    /// The interrupted height.
    pub block: u64,
    /// The last flashblock index the dead leader published for it.
    pub after_flashblock: u64,
    /// The stack that died and the one that took over.
    pub dead: &'static str,
    /// The new leader.
    pub leader: &'static str,
    /// Non-deposit transactions the dead leader's published flashblocks preconfirmed, in order.
    pub preconfirmed: Vec<B256>,
    /// Non-deposit transactions of the new leader's block at the same height, in order.
    pub new_block: Vec<B256>,
    /// Preconfirmed transactions found in that block.
    pub carried: usize,
    /// Preconfirmed transactions not in the new leader's chain once it sealed that block.
    pub lost: Vec<B256>,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct HaRun {
    /// Per failover.
    pub failovers: Vec<FailoverOutcome>,
    /// Every non-deposit transaction any published flashblock carried.
    pub published: Vec<B256>,
    /// Those not in the final leader's canonical chain.
    pub missing: Vec<B256>,
    /// The final head.
    pub head: u64,
    /// engine-mux metrics of each stack's last incarnation (Prometheus text).
    pub metrics: Vec<String>,
}

/// The op-conductor stand-in's view of one stack.
struct Stack {
    name: &'static str,
    local: RunningEngine,
    builder: RunningEngine,
    mux: RunningMux,
    client: Upstream,
}

/// What both stacks share.
struct Shared {
    genesis: LoadedGenesis,
    jwt: JwtSecret,
    /// The secret the set's engine-muxes sign their peer streams with.
    peer_secret: JwtSecret,
    config: HaConfig,
    signers: Vec<PrivateKeySigner>,
    /// Each stack's engine-mux outbound flashblocks port (kept across restarts, so the peer's
    /// `--flashblocks-peer-url` stays right).
    ports: [u16; 2],
}

impl Shared {
    fn spec(&self) -> &ChainSpec {
        &self.genesis.spec
    }

    fn client(&self, name: &'static str, addr: SocketAddr) -> Upstream {
        Upstream::new(UpstreamConfig {
            name,
            url: format!("http://{addr}")
                .parse()
                .expect("a socket address is a valid authority"),
            secret: Some(self.jwt),
            timeout: Duration::from_secs(5),
            max_response_bytes: engine_api::upstream::DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Starts stack `index` empty (genesis), its engine-mux following the other stack.
    async fn start_stack(&self, index: usize) -> Result<Stack, DevnetError> {
        let host = self.config.host;
        let name = ["a", "b"][index];
        let local =
            start_engine_on(self.genesis.clone(), Role::Local, host, 0, 0, self.jwt).await?;
        let builder = start_engine_with(
            self.genesis.clone(),
            Role::Builder,
            EngineServerConfig {
                auth_addr: SocketAddr::new(host, 0),
                http_addr: SocketAddr::new(host, 0),
                jwt: self.jwt,
                flashblocks: Some(FlashblocksConfig {
                    addr: SocketAddr::new(host, 0),
                    interval: self.config.flashblocks_interval,
                    max_per_payload: DevnetFlashblocks {
                        interval: self.config.flashblocks_interval,
                        ..Default::default()
                    }
                    .max_per_payload(self.config.block_time),
                }),
            },
        )
        .await?;
        let mut args = self.config.mux_args.clone();
        // Every engine-mux of the set signs what it serves its peers (and, following them,
        // accepts only what they signed).
        args.push(format!(
            "--flashblocks-peer-secret={}",
            alloy_primitives::hex::encode(self.peer_secret.as_bytes())
        ));
        if self.config.carry_over {
            args.push(format!(
                "--flashblocks-peer-url=ws://{}",
                SocketAddr::new(host, self.ports[1 - index])
            ));
            args.push("--flashblocks-peer-max-reconnect-ms=100".into());
        }
        let mux = start_mux(
            MuxWiring {
                local_url: local.auth_url(),
                builder_url: builder.auth_url(),
                jwt: self.jwt,
                host,
                port: 0,
                flashblocks: builder.flashblocks_addr.map(|ws| (ws, self.ports[index])),
                flashblocks_p2p: None,
            },
            &args,
        )
        .await?;
        let client = self.client("ha-op-node", mux.rpc_addr);
        Ok(Stack {
            name,
            local,
            builder,
            mux,
            client,
        })
    }
}

/// `engine_newPayload` params of a sealed block, as op-node sends them.
fn new_payload_call(spec: &ChainSpec, block: &ChainBlock) -> (&'static str, Value) {
    let b = block.to_consensus_block();
    let v3 = ExecutionPayloadV3::from_block_unchecked(block.hash, &b);
    let root = b.header.parent_beacon_block_root.unwrap_or_default();
    if spec.is_isthmus(b.header.timestamp) {
        let v4 = OpExecutionPayloadV4::from_v3_with_withdrawals_root(
            v3,
            b.header.withdrawals_root.unwrap_or_default(),
        );
        (
            "engine_newPayloadV4",
            json!([v4, Vec::<B256>::new(), root, Vec::<String>::new()]),
        )
    } else {
        ("engine_newPayloadV3", json!([v3, Vec::<B256>::new(), root]))
    }
}

/// A follower op-node's import: every canonical block of `from` above the follower's head,
/// `newPayload` each, then `forkchoiceUpdated` to the last, through the follower's engine-mux.
async fn import(spec: &ChainSpec, from: &Engine, to: &Stack) -> Result<u64, String> {
    let mut n = to.local.engine.head().number();
    let target = from.head().number();
    let mut last = None;
    while n < target {
        n += 1;
        let Some(block) = from.with_chain(|c| c.canonical_block(n)) else {
            return Err(format!("leader has no canonical block {n}"));
        };
        let (method, params) = new_payload_call(spec, &block);
        let status: PayloadStatus = to
            .client
            .call(method, &params, Duration::from_secs(5))
            .await
            .map_err(|e| format!("newPayload {n} on {}: {e}", to.name))?;
        if !status.status.is_valid() {
            return Err(format!("newPayload {n} on {}: {}", to.name, status.status));
        }
        last = Some(block.hash);
    }
    if let Some(head) = last {
        let state = ForkchoiceState {
            head_block_hash: head,
            safe_block_hash: head,
            finalized_block_hash: head,
        };
        let _: Value = to
            .client
            .call(
                "engine_forkchoiceUpdatedV3",
                &json!([state, Value::Null]),
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| format!("forkchoiceUpdated on {}: {e}", to.name))?;
    }
    Ok(n)
}

/// A subscriber to a leader's engine-mux flashblocks (what users see through flashblocks-proxy).
struct Watcher {
    frames: Arc<Mutex<Vec<OpFlashblockPayload>>>,
    latest: watch::Receiver<(u64, u64)>,
    task: JoinHandle<()>,
}

impl Watcher {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
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

    fn frames(&self) -> Vec<OpFlashblockPayload> {
        self.frames.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Non-deposit transaction hashes of `frames` of block `number`, in order.
fn preconfirmed_of(frames: &[OpFlashblockPayload], number: u64) -> Vec<B256> {
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

fn user_txs(block: &ChainBlock) -> Vec<B256> {
    block
        .transactions
        .iter()
        .filter(|t| !t.inner().is_deposit())
        .map(|t| t.tx_hash())
        .collect()
}

/// A leader's term: its op-node, its users' spammer and a subscriber to its flashblocks.
struct Term {
    leader: usize,
    driver: DriverHandle,
    spammer: Option<SpammerHandle>,
    watcher: Watcher,
    gossip: Option<JoinHandle<()>>,
}

struct Conductor {
    shared: Arc<Shared>,
    stacks: [Option<Arc<Stack>>; 2],
    published: Vec<OpFlashblockPayload>,
    rng: u64,
}

impl Conductor {
    fn next_random(&mut self) -> u64 {
        // xorshift64: a seeded, repeatable schedule without another dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn stack(&self, i: usize) -> Result<&Arc<Stack>, String> {
        self.stacks[i]
            .as_ref()
            .ok_or_else(|| format!("stack {i} is not running"))
    }

    async fn begin_term(&mut self, leader: usize, term: usize) -> Result<Term, String> {
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
    fn start_gossip(&self, term: &mut Term) -> Result<(), String> {
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
    async fn kill_leader(&mut self, mut term: Term, at: FailoverAt) -> Result<(u64, u64), String> {
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
            .set(crate::engine::faults::Fault::FlashblocksDown, true);
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

/// Runs the set through its schedule and returns what each failover did.
pub async fn run_ha(config: HaConfig) -> Result<HaRun, DevnetError> {
    let genesis = load_genesis(None, unix_now(), None)?;
    let signers = funded_dev_signers(&genesis.state)?;
    let fail = |e: String| DevnetError::MuxStart(format!("ha: {e}"));
    // Both outbound ports are chosen first: each engine-mux needs the other's URL.
    let mut ports = [0u16; 2];
    {
        let a = std::net::TcpListener::bind(SocketAddr::new(config.host, 0))
            .map_err(|e| fail(e.to_string()))?;
        let b = std::net::TcpListener::bind(SocketAddr::new(config.host, 0))
            .map_err(|e| fail(e.to_string()))?;
        ports[0] = a.local_addr().map_err(|e| fail(e.to_string()))?.port();
        ports[1] = b.local_addr().map_err(|e| fail(e.to_string()))?.port();
    }
    let seed = match &config.schedule {
        Schedule::Random { seed, .. } => (*seed).max(1),
        Schedule::Fixed(_) => 1,
    };
    let shared = Arc::new(Shared {
        genesis,
        jwt: JwtSecret::random(),
        peer_secret: JwtSecret::random(),
        config,
        signers,
        ports,
    });
    let mut conductor = Conductor {
        stacks: [
            Some(Arc::new(shared.start_stack(0).await?)),
            Some(Arc::new(shared.start_stack(1).await?)),
        ],
        shared: shared.clone(),
        published: Vec::new(),
        rng: seed,
    };
    let count = match &shared.config.schedule {
        Schedule::Fixed(f) => f.len(),
        Schedule::Random { count, .. } => *count,
    };
    let mut term = conductor.begin_term(0, 0).await.map_err(fail)?;
    conductor.start_gossip(&mut term).map_err(fail)?;
    let mut outcomes = Vec::new();
    for i in 0..count {
        let leader = term.leader;
        let head = conductor
            .stack(leader)
            .map_err(fail)?
            .local
            .engine
            .head()
            .number();
        let at = match &shared.config.schedule {
            Schedule::Fixed(f) => f[i],
            Schedule::Random { max_index, .. } => {
                let k = 1 + conductor.next_random() % (*max_index).max(1);
                let n = head + 2 + conductor.next_random() % 2;
                FailoverAt {
                    after_flashblock: k,
                    block: n,
                }
            }
        };
        let (number, index) = conductor.kill_leader(term, at).await.map_err(fail)?;
        let dead_frames = conductor.published.clone();
        // The follower becomes leader; the dead stack comes back empty as the new follower.
        let new_leader = 1 - leader;
        term = conductor
            .begin_term(new_leader, i + 1)
            .await
            .map_err(fail)?;
        let mut events = term.driver.subscribe();
        let restarted = Arc::new(shared.start_stack(leader).await?);
        conductor.stacks[leader] = Some(restarted.clone());
        let leader_stack = conductor.stack(new_leader).map_err(fail)?.clone();
        import(shared.spec(), &leader_stack.local.engine, &restarted)
            .await
            .map_err(fail)?;
        conductor.start_gossip(&mut term).map_err(fail)?;
        // The new leader's block at the interrupted height.
        let sealed = tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match events.recv().await {
                    Ok(DriverEvent::Proposed(b)) if b.number >= number => return Ok(b.number),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return Err("the new leader's op-node stopped".to_string()),
                }
            }
        })
        .await
        .map_err(|_| {
            fail(format!(
                "block {number} not sealed by the new leader in time"
            ))
        })?
        .map_err(fail)?;
        let _ = sealed;
        let preconfirmed = preconfirmed_of(&dead_frames, number);
        let engine = &leader_stack.local.engine;
        let new_block = engine
            .with_chain(|c| c.canonical_block(number))
            .map(|b| user_txs(&b))
            .unwrap_or_default();
        let in_block: HashSet<B256> = new_block.iter().copied().collect();
        let carried = preconfirmed
            .iter()
            .filter(|h| in_block.contains(*h))
            .count();
        let lost: Vec<B256> = preconfirmed
            .iter()
            .filter(|h| engine.with_chain(|c| c.transaction(h)).is_none())
            .copied()
            .collect();
        let outcome = FailoverOutcome {
            block: number,
            after_flashblock: index,
            dead: ["a", "b"][leader],
            leader: ["a", "b"][new_leader],
            preconfirmed,
            new_block,
            carried,
            lost,
        };
        if shared.config.print {
            println!(
                "failover {}: stack {} died after flashblock {} of block {}; stack {} leads (op-conductor stand-in): preconfirmed {}, carried over {}, lost {}",
                i + 1,
                outcome.dead,
                outcome.after_flashblock,
                outcome.block,
                outcome.leader,
                outcome.preconfirmed.len(),
                outcome.carried,
                outcome.lost.len()
            );
        }
        outcomes.push(outcome);
    }
    // Let the last leader seal the block in progress, then look at the whole chain.
    tokio::time::sleep(shared.config.block_time).await;
    if let Some(s) = &term.spammer {
        s.pause();
    }
    term.driver.stop().await;
    if let Some(g) = &term.gossip {
        g.abort();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    term.watcher.task.abort();
    conductor.published.extend(term.watcher.frames());
    let leader = conductor.stack(term.leader).map_err(fail)?.clone();
    let engine = &leader.local.engine;
    let mut seen = HashSet::new();
    let published: Vec<B256> = conductor
        .published
        .iter()
        .flat_map(|f| f.diff.transactions.iter())
        .filter(|raw| raw.first() != Some(&0x7e))
        .map(alloy_primitives::keccak256)
        .filter(|h| seen.insert(*h))
        .collect();
    let missing = published
        .iter()
        .filter(|h| engine.with_chain(|c| c.transaction(h)).is_none())
        .copied()
        .collect();
    let head = engine.head().number();
    let metrics = conductor
        .stacks
        .iter()
        .flatten()
        .map(|s| s.mux.metrics_text())
        .collect();
    for stack in conductor.stacks.iter_mut() {
        if let Some(s) = stack.take().and_then(|s| Arc::try_unwrap(s).ok()) {
            s.mux.shutdown().await;
            s.builder.stop().await;
            s.local.stop().await;
        }
    }
    Ok(HaRun {
        failovers: outcomes,
        published,
        missing,
        head,
        metrics,
    })
}

/// `devnet ha`.
#[derive(Debug, Clone, clap::Args)]
pub struct HaArgs {
    /// Slot length (`250ms`, `1s`, ...).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Time between two flashblocks of one block.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub flashblocks_interval: Duration,
    /// Spammer transactions per second, sent to the current leader.
    #[arg(long, default_value_t = 10.0)]
    pub tx_rate: f64,
    /// A failover `K@N`: after flashblock K of block N the leader's stack dies and the follower
    /// becomes leader; repeatable (heights increasing). Without any, --random-failovers.
    #[arg(long = "failover", value_name = "K@N")]
    pub failovers: Vec<FailoverAt>,
    /// That many failovers at random flashblock indices, 2–3 blocks into each leader's term.
    #[arg(long, default_value_t = 5)]
    pub random_failovers: usize,
    /// Seed of the random schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run without `--flashblocks-peer-url` (what a failover costs without the feature).
    #[arg(long)]
    pub no_carry_over: bool,
    /// Extra engine-mux flags for both stacks, e.g. `--mux-arg=--log-level --mux-arg=debug`.
    #[arg(long = "mux-arg", allow_hyphen_values = true)]
    pub mux_args: Vec<String>,
}

/// `devnet ha`: runs the schedule, printing a line per failover and a summary.
pub async fn run(args: HaArgs) -> Result<(), CommandError> {
    let max_index = (args.block_time.as_nanos() / args.flashblocks_interval.as_nanos().max(1))
        .saturating_sub(2)
        .max(1) as u64;
    let config = HaConfig {
        block_time: args.block_time,
        flashblocks_interval: args.flashblocks_interval,
        tx_rate: args.tx_rate,
        schedule: if args.failovers.is_empty() {
            Schedule::Random {
                count: args.random_failovers,
                seed: args.seed,
                max_index,
            }
        } else {
            Schedule::Fixed(args.failovers)
        },
        carry_over: !args.no_carry_over,
        mux_args: args.mux_args,
        ..HaConfig::default()
    };
    let run = run_ha(config).await?;
    let preconfirmed: usize = run.failovers.iter().map(|f| f.preconfirmed.len()).sum();
    let carried: usize = run.failovers.iter().map(|f| f.carried).sum();
    let lost: usize = run.failovers.iter().map(|f| f.lost.len()).sum();
    println!(
        "{} failovers up to block {}: preconfirmed {preconfirmed} in interrupted blocks, carried over {carried}, lost {lost}; {} of {} published transactions missing from the chain",
        run.failovers.len(),
        run.head,
        run.missing.len(),
        run.published.len()
    );
    Ok(())
}

/// One sequencer stack following a [`PeerStreamStandIn`]'s flashblocks, with a client playing its
/// op-node: a local engine, a builder engine and engine-mux on loopback. What the carry-over
/// tests and the carry-over benchmark drive.
#[derive(Debug)]
pub struct FollowingStack {
    /// The local execution engine.
    pub local: RunningEngine,
    /// The builder engine.
    pub builder: RunningEngine,
    /// engine-mux, following `peer`.
    pub mux: RunningMux,
    /// op-node's side: JWT-authenticated calls to engine-mux.
    pub client: Upstream,
    /// The chain both engines run.
    pub spec: ChainSpec,
    /// Funded dev accounts.
    pub signers: Vec<PrivateKeySigner>,
    /// The peer whose flashblocks engine-mux follows.
    pub peer: PeerStreamStandIn,
}

impl FollowingStack {
    /// Starts the stack and waits until engine-mux subscribed to the peer; `mux_args` are extra
    /// engine-mux flags.
    pub async fn start(mux_args: &[String]) -> Result<Self, DevnetError> {
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let genesis = load_genesis(None, unix_now(), None)?;
        let jwt = JwtSecret::random();
        let signers = funded_dev_signers(&genesis.state)?;
        let local = start_engine_on(genesis.clone(), Role::Local, host, 0, 0, jwt).await?;
        let builder = start_engine_on(genesis.clone(), Role::Builder, host, 0, 0, jwt).await?;
        let peer_secret = JwtSecret::random();
        let peer = PeerStreamStandIn::start(host, &peer_secret)
            .await
            .map_err(|e| DevnetError::MuxStart(format!("peer stream stand-in: {e}")))?;
        let mut args = vec![
            format!("--flashblocks-peer-url=ws://{}", peer.addr),
            format!(
                "--flashblocks-peer-secret={}",
                alloy_primitives::hex::encode(peer_secret.as_bytes())
            ),
        ];
        args.extend_from_slice(mux_args);
        let mux = start_mux(
            MuxWiring {
                local_url: local.auth_url(),
                builder_url: builder.auth_url(),
                jwt,
                host,
                port: 0,
                flashblocks: None,
                flashblocks_p2p: None,
            },
            &args,
        )
        .await?;
        peer.subscribed().await;
        let client = Upstream::new(UpstreamConfig {
            name: "op-node",
            url: format!("http://{}", mux.rpc_addr)
                .parse()
                .map_err(|e| DevnetError::MuxStart(format!("engine-mux URL: {e}")))?,
            secret: Some(jwt),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 24,
        });
        Ok(Self {
            local,
            builder,
            mux,
            client,
            spec: genesis.spec,
            signers,
            peer,
        })
    }

    /// Stops engine-mux, then the engines.
    pub async fn stop(self) {
        self.mux.shutdown().await;
        self.builder.stop().await;
        self.local.stop().await;
    }
}

/// A stand-in for a peer sequencer's flashblocks stream (its engine-mux's outbound port): a
/// WebSocket server sending every connected subscriber the frames it is given, signed with the
/// set's secret as engine-mux signs its peer stream (binary: tag, then the flashblock JSON).
#[derive(Debug)]
pub struct PeerStreamStandIn {
    /// Where it listens.
    pub addr: SocketAddr,
    frames: tokio::sync::broadcast::Sender<Vec<u8>>,
    key: engine_mux::failover::signed::PeerKey,
    subscribers: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl PeerStreamStandIn {
    /// Listens on an ephemeral port of `host`; signs its frames with `secret`, as a peer
    /// engine-mux signs its peer stream.
    pub async fn start(host: IpAddr, secret: &JwtSecret) -> std::io::Result<Self> {
        use futures::SinkExt;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(host, 0)).await?;
        let addr = listener.local_addr()?;
        let (frames, _) = tokio::sync::broadcast::channel::<Vec<u8>>(1024);
        let (count, subscribers) = watch::channel(0usize);
        let sender = frames.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut rx = sender.subscribe();
                let count = count.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    count.send_modify(|n| *n += 1);
                    while let Ok(frame) = rx.recv().await {
                        let message = tokio_tungstenite::tungstenite::Message::Binary(frame.into());
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                    count.send_modify(|n| *n -= 1);
                });
            }
        });
        Ok(Self {
            addr,
            frames,
            key: engine_mux::failover::signed::PeerKey::new(secret),
            subscribers,
            task,
        })
    }

    /// Waits until someone subscribed (engine-mux's peer client connects with a backoff).
    pub async fn subscribed(&self) {
        let mut s = self.subscribers.clone();
        let _ = tokio::time::timeout(STEP_TIMEOUT, s.wait_for(|n| *n > 0)).await;
    }

    /// Sends a flashblock, signed, to every subscriber.
    pub fn publish(&self, fb: &OpFlashblockPayload) {
        if let Ok(text) = serde_json::to_vec(fb) {
            let _ = self.frames.send(self.key.sign(&text));
        }
    }

    /// Sends a flashblock as a stream without the set's secret would: unsigned.
    pub fn publish_unsigned(&self, fb: &OpFlashblockPayload) {
        if let Ok(text) = serde_json::to_vec(fb) {
            let _ = self.frames.send(text);
        }
    }
}

impl Drop for PeerStreamStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One op-node sequencer slot asked without waiting for the slot's end: FCU with `attributes`
/// on `parent`, getPayload right away, newPayload, FCU to the new head. Returns the sealed
/// payload's transactions and the time from the FCU being sent to the getPayload answer.
pub async fn op_node_slot(
    client: &Upstream,
    spec: &ChainSpec,
    parent: B256,
    attributes: &op_alloy_rpc_types_engine::OpPayloadAttributes,
) -> Result<(B256, Vec<alloy_primitives::Bytes>, Duration), String> {
    let state = |h| ForkchoiceState {
        head_block_hash: h,
        safe_block_hash: h,
        finalized_block_hash: h,
    };
    let timeout = Duration::from_secs(5);
    let started = tokio::time::Instant::now();
    let fcu: alloy_rpc_types_engine::ForkchoiceUpdated = client
        .call(
            "engine_forkchoiceUpdatedV3",
            &json!([state(parent), attributes]),
            timeout,
        )
        .await
        .map_err(|e| format!("forkchoiceUpdated: {e}"))?;
    let id = fcu.payload_id.ok_or("no payload id")?;
    let v4 = spec.is_isthmus(attributes.payload_attributes.timestamp);
    let method = if v4 {
        "engine_getPayloadV4"
    } else {
        "engine_getPayloadV3"
    };
    let envelope: Value = client
        .call(method, &json!([id]), timeout)
        .await
        .map_err(|e| format!("getPayload: {e}"))?;
    let elapsed = started.elapsed();
    let payload = envelope["executionPayload"].clone();
    let root = envelope["parentBeaconBlockRoot"].clone();
    let hash: B256 = serde_json::from_value(payload["blockHash"].clone())
        .map_err(|e| format!("blockHash: {e}"))?;
    let txs: Vec<alloy_primitives::Bytes> = serde_json::from_value(payload["transactions"].clone())
        .map_err(|e| format!("transactions: {e}"))?;
    let (method, params) = if v4 {
        (
            "engine_newPayloadV4",
            json!([payload, Vec::<B256>::new(), root, Vec::<String>::new()]),
        )
    } else {
        (
            "engine_newPayloadV3",
            json!([payload, Vec::<B256>::new(), root]),
        )
    };
    let status: PayloadStatus = client
        .call(method, &params, timeout)
        .await
        .map_err(|e| format!("newPayload: {e}"))?;
    if !status.status.is_valid() {
        return Err(format!("newPayload: {}", status.status));
    }
    let _: Value = client
        .call(
            "engine_forkchoiceUpdatedV3",
            &json!([state(hash), Value::Null]),
            timeout,
        )
        .await
        .map_err(|e| format!("forkchoiceUpdated: {e}"))?;
    Ok((hash, txs, elapsed))
}
