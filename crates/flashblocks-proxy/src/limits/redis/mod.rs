//! Per-IP and per-app counts shared by every instance through Redis (one server or a Redis
//! Cluster), kept as leases so that no acquisition can leak a count.
//!
//! Each limit is a sorted set (`{<prefix>}:ip:<ip>`, `{<prefix>}:app:<app>`) whose members are
//! the leases of the connections it counts: a token of their own (`<instance id>:<seq>`) scored
//! by when the lease lapses. A limit check, in one Lua script, drops the lapsed leases, counts the
//! live ones and adds this connection's token to every set it is counted in, so two instances
//! can never both take the last slot. The token is chosen before the script is sent, so an
//! acquisition whose answer never arrived (a timeout, a stalled Redis, a handshake cancelled
//! meanwhile) is undone by removing exactly that token; should the removal not get through
//! either, the lease lapses on its own, because only the leases of connections still open are
//! renewed. A crashed instance's leases lapse the same way (no `KEYS` scans, no cleanup job).
//!
//! Cluster-safe: every key carries the hash tag `{<prefix>}`, so all of them live in one slot,
//! and every script declares each key it touches.

mod conn;
mod keeper;
mod leases;
mod scripts;

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use redis::Script;
use tokio::{
    sync::mpsc::{self, error::TrySendError},
    time::Instant,
};
use tracing::warn;

use self::{
    conn::with_timeout,
    keeper::Keeper,
    leases::{Held, Lease, Release, lock},
    scripts::{ACQUIRE, LEASES_PER_CALL, NOW, RELEASE, release_call},
};
pub use self::{
    conn::{LazyCluster, RedisConn, RedisLimitError},
    scripts::Keys,
};
use crate::{
    config::RedisConfig,
    metrics::{Metrics, RejectReason},
};

/// The Redis-backed limiter of one instance.
pub struct RedisCounts {
    conn: RedisConn,
    keys: Keys,
    ttl: Duration,
    timeout: Duration,
    per_ip: Option<usize>,
    acquire: Script,
    next_lease: AtomicU64,
    held: Held,
    release_tx: mpsc::Sender<Release>,
    /// Bound of `held.releasing`: what the release queue and the keeper's own queue can hold.
    max_releasing: usize,
    metrics: Metrics,
}

/// An acquisition in flight: unless it is settled, dropping it (an error, a timeout, a cancelled
/// handshake) queues the removal of its token, since Redis may have applied it all the same.
struct InFlight<'a> {
    counts: &'a RedisCounts,
    id: u64,
    lease: Option<Lease>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.counts.queue_release(self.id, lease, true);
        }
    }
}

impl RedisCounts {
    /// Connects lazily (startup does not wait for Redis) and starts the task that renews the
    /// leases of open connections and applies releases (its queue is bounded: twice the instance
    /// limit; a release that finds it full is not lost, its lease lapses).
    pub fn start(
        cfg: &RedisConfig,
        per_ip: Option<usize>,
        instance_limit: usize,
        metrics: Metrics,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), RedisLimitError> {
        let conn = RedisConn::new(cfg)?;
        let id = format!("{:016x}", rand::random::<u64>());
        let keys = Keys::new(&cfg.key_prefix, &id);
        let capacity = instance_limit.max(1) * 2;
        let (release_tx, release_rx) = mpsc::channel(capacity);
        let held = Held::default();
        let tasks = vec![tokio::spawn(
            Keeper {
                conn: conn.clone(),
                held: held.clone(),
                ttl: cfg.instance_ttl,
                timeout: cfg.timeout,
                metrics: metrics.clone(),
                capacity,
            }
            .run(release_rx),
        )];
        let counts = Self {
            conn,
            keys,
            ttl: cfg.instance_ttl,
            timeout: cfg.timeout,
            per_ip,
            acquire: Script::new(&format!("{NOW}{ACQUIRE}")),
            next_lease: AtomicU64::new(0),
            held,
            release_tx,
            max_releasing: capacity * 2,
            metrics,
        };
        Ok((counts, tasks))
    }

    /// Key names under this instance's prefix.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Checks the per-IP and per-app limits across instances and counts the connection,
    /// atomically. `Ok(Ok(id))` is a lease to give back with [`Self::release`].
    pub async fn try_acquire(
        &self,
        ip: IpAddr,
        app: Option<(&str, Option<usize>)>,
    ) -> Result<Result<u64, RejectReason>, RedisLimitError> {
        self.acquire_once(ip, app).await.inspect_err(|_| {
            self.metrics.redis_errors.increment(1);
        })
    }

    async fn acquire_once(
        &self,
        ip: IpAddr,
        app: Option<(&str, Option<usize>)>,
    ) -> Result<Result<u64, RejectReason>, RedisLimitError> {
        let limit = |l: Option<usize>| l.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
        let mut keys = vec![self.keys.ip(&ip.to_string())];
        let mut app_limit = -1;
        if let Some((name, l)) = app {
            keys.push(self.keys.app(name));
            app_limit = limit(l);
        }
        let lease = Lease {
            token: format!("{}:{id:x}", self.keys.id),
            keys,
        };
        let mut inv = self.acquire.prepare_invoke();
        for key in &lease.keys {
            inv.key(key);
        }
        inv.arg(&lease.token)
            .arg(self.ttl.as_millis() as u64)
            .arg(limit(self.per_ip))
            .arg(app_limit);
        let mut conn = with_timeout(self.timeout, self.conn.ready()).await?;
        let mut in_flight = InFlight {
            counts: self,
            id,
            lease: Some(lease),
        };
        let reply: String = with_timeout(self.timeout, inv.invoke_async(&mut conn)).await?;
        let decided = match reply.as_str() {
            "ok" => Ok(id),
            "ip" => Err(RejectReason::Ip),
            "app" => Err(RejectReason::App),
            _ => return Err(RedisLimitError::Reply(reply)),
        };
        let lease = in_flight.lease.take().expect("settled once");
        if decided.is_ok() {
            lock(&self.held).open.insert(id, lease);
            self.metrics.redis_leases.increment(1.0);
        }
        Ok(decided)
    }

    /// Gives back lease `id` from [`Self::try_acquire`]: stops renewing it and queues the removal
    /// of its token, retried until Redis takes it or the lease has lapsed anyway.
    pub fn release(&self, id: u64) {
        let Some(lease) = lock(&self.held).open.remove(&id) else {
            return; // already given back at deregistration
        };
        self.metrics.redis_leases.decrement(1.0);
        self.queue_release(id, lease, false);
    }

    fn queue_release(&self, id: u64, lease: Lease, orphan: bool) {
        {
            let mut held = lock(&self.held);
            if held.releasing.len() >= self.max_releasing {
                drop(held);
                self.release_lapses("redis release queue full; the lease lapses on its own");
                return;
            }
            // Recorded before it is queued: the keeper forgets it once applied.
            held.releasing.insert(id, lease.clone());
        }
        let r = Release {
            id,
            lease,
            orphan,
            lapses: Instant::now() + self.ttl,
        };
        self.metrics.redis_pending_releases.increment(1.0);
        match self.release_tx.try_send(r) {
            Ok(()) => {}
            // Full only while Redis is unreachable; the lease is no longer renewed, so it lapses
            // on its own.
            Err(TrySendError::Full(_)) => {
                self.metrics.redis_pending_releases.decrement(1.0);
                lock(&self.held).releasing.remove(&id);
                self.release_lapses("redis release queue full; the lease lapses on its own");
            }
            // The keeper has stopped (shutdown): the lease stays recorded for `deregister`.
            Err(TrySendError::Closed(_)) => self.metrics.redis_pending_releases.decrement(1.0),
        }
    }

    fn release_lapses(&self, why: &'static str) {
        self.metrics.redis_releases_lapsed.increment(1);
        warn!("{why}");
    }

    /// Removes every lease this instance may still have in Redis, those of open connections
    /// and those given back whose removal is not yet applied (graceful shutdown).
    pub async fn deregister(&self) -> Result<(), RedisLimitError> {
        let leases: Vec<Lease> = {
            let mut held = lock(&self.held);
            let open = std::mem::take(&mut held.open);
            let releasing = std::mem::take(&mut held.releasing);
            open.into_values().chain(releasing.into_values()).collect()
        };
        self.metrics.redis_leases.set(0.0);
        let mut conn = with_timeout(self.timeout, self.conn.ready()).await?;
        let script = Script::new(RELEASE);
        for chunk in leases.chunks(LEASES_PER_CALL) {
            let inv = release_call(&script, chunk.iter());
            with_timeout(self.timeout, inv.invoke_async::<Vec<i64>>(&mut conn)).await?;
        }
        Ok(())
    }
}
