//! What `devnet ha` is told (its failover schedule) and what a run reports.

use std::{
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
    time::Duration,
};

use alloy_primitives::B256;

/// How long a dying leader's engine-mux keeps serving its subscribers after its op-node and
/// builder stopped, so frames already in flight reach them (the peer and the users alike).
pub(super) const DRAIN: Duration = Duration::from_millis(150);
/// Longest wait for one scheduled event (a flashblock, a block, a sync).
pub(super) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

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
