//! The one task that talks to Redis in the background: renewals of open connections' leases and
//! the queued releases, in order on one connection.

use std::{collections::VecDeque, time::Duration};

use redis::Script;
use tokio::{sync::mpsc, time::Instant};
use tracing::warn;

use super::{
    conn::{RedisConn, RedisLimitError, with_timeout},
    leases::{Held, Lease, Release, lock},
    scripts::{LEASES_PER_CALL, NOW, RELEASE, RENEW, release_call},
};
use crate::metrics::Metrics;

/// The one task that talks to Redis in the background: renews the leases of open connections
/// every third of their lifetime and applies releases. One task for both keeps them in order on
/// the connection, so a renewal can never re-add a lease released after it.
pub(super) struct Keeper {
    pub(super) conn: RedisConn,
    pub(super) held: Held,
    /// Lease lifetime; renewals every third of it.
    pub(super) ttl: Duration,
    /// Per Redis operation.
    pub(super) timeout: Duration,
    pub(super) metrics: Metrics,
    /// Releases it holds at most.
    pub(super) capacity: usize,
}

impl Keeper {
    /// Renews and releases until the release queue closes.
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Release>) {
        let renew = Script::new(&format!("{NOW}{RENEW}"));
        let release = Script::new(RELEASE);
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: VecDeque<Release> = VecDeque::new();
        let mut retry_at: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            tokio::select! {
                _ = tick.tick() => self.renew(&renew).await,
                r = rx.recv(), if pending.len() < self.capacity => {
                    let Some(r) = r else { return };
                    pending.push_back(r);
                    while pending.len() < self.capacity {
                        let Ok(r) = rx.try_recv() else { break };
                        pending.push_back(r);
                    }
                    if retry_at.is_some() {
                        continue; // Redis failed a moment ago: wait for the retry
                    }
                }
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)),
                    if retry_at.is_some() => {}
            }
            if pending.is_empty() {
                retry_at = None;
                continue;
            }
            match self.flush(&release, &mut pending).await {
                Ok(()) => {
                    retry_at = None;
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    self.metrics.redis_errors.increment(1);
                    warn!(error = %e, pending = pending.len(), "redis release failed; retrying");
                    let now = Instant::now();
                    let before = pending.len();
                    pending.retain(|r| {
                        let live = r.lapses > now;
                        if !live {
                            lock(&self.held).releasing.remove(&r.id);
                        }
                        live
                    });
                    let lapsed = before - pending.len();
                    self.metrics.redis_releases_lapsed.increment(lapsed as u64);
                    self.metrics.redis_pending_releases.decrement(lapsed as f64);
                    retry_at = Some(now + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisLimitError> {
        let mut c = with_timeout(self.timeout, self.conn.ready()).await?;
        with_timeout(self.timeout, inv.invoke_async::<T>(&mut c)).await
    }

    /// Applies the queued releases, oldest first, until none is left or Redis fails.
    async fn flush(
        &self,
        script: &Script,
        pending: &mut VecDeque<Release>,
    ) -> Result<(), RedisLimitError> {
        while !pending.is_empty() {
            let n = pending.len().min(LEASES_PER_CALL);
            let inv = release_call(script, pending.iter().take(n).map(|r| &r.lease));
            // Which tokens were still there is not used: a removal that did apply may have
            // timed out on our side, so a retry's answer says nothing about the acquisition.
            let _: Vec<i64> = self.call(&inv).await?;
            let mut orphans = 0;
            {
                let mut held = lock(&self.held);
                for r in pending.drain(..n) {
                    held.releasing.remove(&r.id);
                    orphans += usize::from(r.orphan);
                }
            }
            // Whatever Redis had counted for acquisitions that got no answer is given back.
            self.metrics
                .redis_leases_recovered
                .increment(orphans as u64);
            self.metrics.redis_pending_releases.decrement(n as f64);
        }
        Ok(())
    }

    /// Extends the leases of every open connection (and re-adds those that lapsed while Redis
    /// was unreachable: the connections are still open, so they still count).
    async fn renew(&self, script: &Script) {
        let leases: Vec<Lease> = lock(&self.held).open.values().cloned().collect();
        for chunk in leases.chunks(LEASES_PER_CALL) {
            let mut inv = script.prepare_invoke();
            inv.arg(self.ttl.as_millis() as u64);
            for lease in chunk {
                for key in &lease.keys {
                    inv.key(key).arg(&lease.token);
                }
            }
            match self.call::<u64>(&inv).await {
                Ok(restored) => self.metrics.redis_leases_restored.increment(restored),
                Err(e) => {
                    self.metrics.redis_errors.increment(1);
                    warn!(error = %e, "redis lease renewal failed");
                    return;
                }
            }
        }
    }
}
