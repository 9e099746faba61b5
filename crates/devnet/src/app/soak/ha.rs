//! Sequencer failovers during a soak: the HA pair of `devnet ha` ([`run_ha`]) runs alongside
//! the single-stack chaos, in episodes drawn from the soak's seed until the duration ends. Each
//! episode is a fresh pair (its own genesis) with one to three failovers, each after a drawn
//! flashblock of a block 6–15 blocks after the previous one; it ends once the last new leader
//! sealed the interrupted block. Fresh pairs keep the soak's memory bounded: a pair's engines
//! keep their whole chain, since a restarted stack re-syncs from genesis.

use std::{collections::HashSet, time::Duration};

use alloy_primitives::B256;

use super::schedule::Rng;
use crate::app::ha::{FailoverAt, HaConfig, HaRun, Schedule, run_ha};

/// Time an episode needs besides its blocks: two stacks starting, a restarted one re-syncing.
const EPISODE_OVERHEAD: Duration = Duration::from_secs(4);
/// The HA pair's slot is never shorter than this: two more stacks (two engines, a builder and
/// an engine-mux each) share the soak's 2 cores, so they run at 1 s blocks or slower.
pub const MIN_HA_BLOCK_TIME: Duration = Duration::from_secs(1);

/// The failovers of one episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// Failovers, heights increasing.
    pub failovers: Vec<FailoverAt>,
}

impl Episode {
    /// Slots until the last interrupted block is sealed again, plus one.
    pub fn blocks(&self) -> u64 {
        self.failovers.last().map_or(0, |f| f.block) + 1
    }
}

/// Draws the next episode: 1–3 failovers, each 6–15 blocks after the previous one (the
/// first 6–15 blocks after genesis), after flashblock 1..=`max_index`.
pub fn draw_episode(rng: &mut Rng, max_index: u64) -> Episode {
    let count = rng.range(1, 3);
    let mut block = 0;
    let failovers = (0..count)
        .map(|_| {
            block += rng.range(6, 15);
            FailoverAt {
                after_flashblock: rng.range(1, max_index.max(1)),
                block,
            }
        })
        .collect();
    Episode { failovers }
}

/// What the failovers did, summed over the episodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaTally {
    /// Episodes run (each a fresh pair).
    pub episodes: u64,
    /// Failovers done.
    pub failovers: u64,
    /// Transactions the dying leaders preconfirmed for the interrupted blocks.
    pub preconfirmed: u64,
    /// Of those, carried into the new leader's block at the same height.
    pub carried: u64,
    /// Preconfirmed transactions lost: not in the new leader's chain once it sealed the
    /// interrupted block, or published by any leader and not in the final chain.
    pub lost: u64,
    /// The first lost transactions (for the report).
    pub lost_examples: Vec<String>,
    /// Episodes that did not finish, and why (a failure: a failover that could not be done).
    pub errors: Vec<String>,
}

impl HaTally {
    /// Adds one finished episode.
    pub fn add(&mut self, run: &HaRun) {
        self.episodes += 1;
        self.failovers += run.failovers.len() as u64;
        let mut lost: HashSet<B256> = run.missing.iter().copied().collect();
        for f in &run.failovers {
            self.preconfirmed += f.preconfirmed.len() as u64;
            self.carried += f.carried as u64;
            lost.extend(f.lost.iter().copied());
        }
        self.lost += lost.len() as u64;
        for h in lost
            .into_iter()
            .take(10usize.saturating_sub(self.lost_examples.len()))
        {
            self.lost_examples.push(h.to_string());
        }
    }
}

/// How the soak runs its HA pair.
#[derive(Debug, Clone)]
pub struct HaSoakConfig {
    /// Seed (the soak's).
    pub seed: u64,
    /// The pair's slot.
    pub block_time: Duration,
    /// Time between two flashblocks.
    pub flashblocks_interval: Duration,
    /// Spammer rate to the leader.
    pub tx_rate: f64,
    /// No episode starts that would end after this.
    pub end: tokio::time::Instant,
}

/// Starts of a pair that lost a port to another socket, before the episode counts as failed.
const PORT_RACE_TRIES: u32 = 3;

/// Runs episodes until the next would not end in time; returns the tally.
pub async fn run_episodes(config: HaSoakConfig) -> HaTally {
    // Another stream than the builder fault schedule's, from the same seed.
    let mut rng = Rng::new(config.seed ^ 0x4841_5f66_6169_6c73);
    let max_index = (config.block_time.as_nanos() / config.flashblocks_interval.as_nanos().max(1))
        .saturating_sub(2)
        .max(1) as u64;
    let mut tally = HaTally::default();
    loop {
        let episode = draw_episode(&mut rng, max_index);
        let needs = config.block_time * episode.blocks() as u32 + EPISODE_OVERHEAD;
        if tokio::time::Instant::now() + needs > config.end {
            break;
        }
        tracing::info!(?episode, "soak: HA episode");
        let mut run;
        let mut tries = 0;
        loop {
            run = run_ha(HaConfig {
                block_time: config.block_time,
                flashblocks_interval: config.flashblocks_interval,
                tx_rate: config.tx_rate,
                schedule: Schedule::Fixed(episode.failovers.clone()),
                print: false,
                ..HaConfig::default()
            })
            .await;
            // The pair's ports are picked free and bound a moment later: with the rest of the
            // soak opening and closing sockets, another may take one in between. That is the
            // harness's race, not a failure of the pair: start it again on other ports.
            tries += 1;
            match &run {
                Err(e)
                    if tries < PORT_RACE_TRIES
                        && e.to_string().contains("Address already in use") =>
                {
                    tracing::info!(%e, "soak: HA pair lost a port race; starting it on other ports");
                }
                _ => break,
            }
        }
        match run {
            Ok(run) => tally.add(&run),
            Err(e) => {
                tracing::warn!(%e, "soak: HA episode failed");
                tally.errors.push(e.to_string());
                // A broken pair is not retried at once (it would fail the same way).
                tokio::time::sleep(config.block_time * 5).await;
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_are_seeded_and_their_failovers_spaced() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| draw_episode(&mut rng, 3))
                .collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
        for e in &a {
            assert!((1..=3).contains(&e.failovers.len()), "{e:?}");
            let mut last = 0;
            for f in &e.failovers {
                assert!((6..=15).contains(&(f.block - last)), "{e:?}");
                assert!((1..=3).contains(&f.after_flashblock), "{e:?}");
                last = f.block;
            }
            assert_eq!(e.blocks(), last + 1);
        }
        let counts: HashSet<usize> = a.iter().map(|e| e.failovers.len()).collect();
        assert_eq!(counts.len(), 3, "one to three failovers an episode");
    }

    #[test]
    fn the_tally_counts_carried_and_lost_preconfirmations() {
        use crate::app::ha::FailoverOutcome;
        let h = |n: u8| B256::with_last_byte(n);
        let outcome = |preconfirmed: Vec<B256>, carried: usize, lost: Vec<B256>| FailoverOutcome {
            block: 7,
            after_flashblock: 2,
            dead: "a",
            leader: "b",
            preconfirmed,
            new_block: vec![],
            carried,
            lost,
        };
        let mut tally = HaTally::default();
        tally.add(&HaRun {
            failovers: vec![
                outcome(vec![h(1), h(2)], 2, vec![]),
                outcome(vec![h(3), h(4)], 1, vec![h(4)]),
            ],
            published: vec![h(1), h(2), h(3), h(4), h(5)],
            // Lost at the failover and never landed: counted once.
            missing: vec![h(4), h(5)],
            head: 20,
            metrics: vec![],
        });
        assert_eq!(
            (
                tally.episodes,
                tally.failovers,
                tally.preconfirmed,
                tally.carried,
                tally.lost
            ),
            (1, 2, 4, 3, 2)
        );
        assert_eq!(tally.lost_examples.len(), 2);
    }
}
