//! Waiting for several builders' answers to one block: the one rule getPayload's offers and the
//! early fetch before op-node asks both follow. Every builder answered, or `grace` after the
//! first block came in (once the elected builder, if any, answered), never past the deadline.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// When to stop waiting for builders' answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    /// The index of the builder elected for flashblocks, if any: always waited for, since only
    /// its block can carry what was preconfirmed.
    pub(crate) elected: Option<usize>,
    /// How long other builders' blocks are waited for after the first block came in.
    pub(crate) grace: Duration,
    /// Never waited past.
    pub(crate) deadline: Instant,
}

/// Collects `(builder index, answer)` pairs from `answers` until `wait` says stop, in the order
/// they came in. `has_block` tells an answer carrying a block (which starts the grace) from one
/// without. Answers still running when it returns are the caller's to drop or drain.
pub(crate) async fn gather<T, S>(
    answers: &mut S,
    wait: Wait,
    has_block: impl Fn(&T) -> bool,
) -> Vec<(usize, T)>
where
    S: Stream<Item = (usize, T)> + Unpin,
{
    let mut answered: Vec<(usize, T)> = Vec::new();
    let mut stop_at = wait.deadline;
    let mut first_block_at = None;
    // Checked before every wait, so a grace already over stops at once (a ready answer and a
    // due timer would otherwise race).
    while Instant::now() < stop_at {
        let next = tokio::select! {
            next = answers.next() => next,
            () = tokio::time::sleep_until(stop_at) => None,
        };
        let Some((i, answer)) = next else { break };
        if has_block(&answer) {
            first_block_at.get_or_insert_with(Instant::now);
        }
        answered.push((i, answer));
        let elected_in = wait
            .elected
            .is_none_or(|e| answered.iter().any(|(j, _)| *j == e));
        if let Some(first) = first_block_at.filter(|_| elected_in) {
            stop_at = wait.deadline.min(first + wait.grace);
        }
    }
    answered
}

#[cfg(test)]
mod tests {
    use futures::stream::FuturesUnordered;

    use super::*;

    /// Builder `i` answers after `ms`, with a block or without.
    fn answers(
        script: &[(usize, u64, bool)],
    ) -> FuturesUnordered<impl Future<Output = (usize, bool)>> {
        script
            .iter()
            .map(|&(i, ms, block)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                (i, block)
            })
            .collect()
    }

    async fn run(script: &[(usize, u64, bool)], elected: Option<usize>, grace: u64) -> Vec<usize> {
        let start = Instant::now();
        let mut s = answers(script);
        let wait = Wait {
            elected,
            grace: Duration::from_millis(grace),
            deadline: start + Duration::from_millis(1000),
        };
        gather(&mut s, wait, |b| *b)
            .await
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    fn elapsed_ms(start: Instant) -> u128 {
        (Instant::now() - start).as_millis()
    }

    #[tokio::test(start_paused = true)]
    async fn every_builder_answered_ends_the_wait() {
        let start = Instant::now();
        let got = run(&[(0, 30, true), (1, 60, true)], None, 500).await;
        assert_eq!(got, [0, 1]);
        assert_eq!(elapsed_ms(start), 60, "no wait after the last answer");
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_after_the_first_block_cuts_off_a_slower_builder() {
        let start = Instant::now();
        let got = run(&[(0, 10, true), (1, 500, true)], None, 100).await;
        assert_eq!(got, [0], "the builder 490 ms behind is outpaced");
        assert_eq!(elapsed_ms(start), 110);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_without_a_block_does_not_start_the_grace() {
        let start = Instant::now();
        let got = run(&[(0, 10, false), (1, 300, true), (2, 900, true)], None, 100).await;
        assert_eq!(got, [0, 1]);
        assert_eq!(
            elapsed_ms(start),
            400,
            "grace from the first block, at 300 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_elected_builder_is_waited_for_past_the_grace() {
        let start = Instant::now();
        let got = run(&[(0, 10, true), (1, 400, true)], Some(1), 100).await;
        assert_eq!(
            got,
            [0, 1],
            "the elected builder's block is the one with preconfirmations"
        );
        assert_eq!(
            elapsed_ms(start),
            400,
            "the grace from the first block is over once the elected answered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_bounds_every_wait() {
        let start = Instant::now();
        let got = run(&[(0, 10, true), (1, 2000, true)], Some(1), 100).await;
        assert_eq!(got, [0]);
        assert_eq!(elapsed_ms(start), 1000);
        let start = Instant::now();
        let got = run(&[(0, 1500, true)], None, 100).await;
        assert!(got.is_empty());
        assert_eq!(elapsed_ms(start), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn no_grace_stops_as_soon_as_the_elected_builder_answered() {
        // The early fetch before op-node asks validates only the elected builder's block.
        let start = Instant::now();
        let got = run(&[(0, 50, true), (1, 50, true), (2, 80, true)], Some(0), 0).await;
        assert!(got.contains(&0));
        assert!(!got.contains(&2));
        assert_eq!(elapsed_ms(start), 50);
    }
}
