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

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    Cmd, Pipeline, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};
use tokio::{
    sync::{
        OnceCell,
        mpsc::{self, error::TrySendError},
    },
    time::Instant,
};
use tracing::warn;

use crate::{
    config::RedisConfig,
    metrics::{Metrics, RejectReason},
};

/// A Redis operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within `--redis-timeout-ms`.
    #[error("redis operation timed out after {0:?}")]
    Timeout(Duration),
    /// The script answered something unexpected.
    #[error("unexpected script reply `{0}`")]
    Reply(String),
}

/// Leases renewed or released by one script call (bounds the keys a single call declares).
const LEASES_PER_CALL: usize = 256;

// Current Redis time in ms: one clock for every instance.
const NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

// KEYS: the ip lease set, then the app lease set when the connection has an app.
// ARGV: token, lease ms, ip limit (-1 = none), app limit (-1 = none).
// Reply: 'ok' (token added to every set) | 'ip' | 'app' (nothing added).
const ACQUIRE: &str = r"
local ttl = tonumber(ARGV[2])
local function full(key, limit)
  if limit < 0 then return false end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key) >= limit
end
if full(KEYS[1], tonumber(ARGV[3])) then return 'ip' end
if KEYS[2] and full(KEYS[2], tonumber(ARGV[4])) then return 'app' end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[1])
  redis.call('PEXPIRE', key, ttl)
end
return 'ok'
";

// KEYS: lease sets; ARGV: lease ms, then the token to renew in each key, in key order.
// Re-adds a lease that lapsed (its connection is still open); replies how many it re-added.
const RENEW: &str = r"
local ttl = tonumber(ARGV[1])
local restored = 0
for i, key in ipairs(KEYS) do
  restored = restored + redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return restored
";

// KEYS: lease sets; ARGV: the token to remove from each key, in key order. Idempotent.
// Replies, per key, whether the token was there.
const RELEASE: &str = r"
local removed = {}
for i, key in ipairs(KEYS) do removed[i] = redis.call('ZREM', key, ARGV[i]) end
return removed
";

/// A connection to one Redis server or to a Redis Cluster. Both connect lazily: startup does
/// not wait for Redis, and a failed connect is an error of the operation that needed it (the
/// next one tries again).
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting on its own.
    Single(ConnectionManager),
    /// A cluster; commands are routed by key slot.
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use.
pub struct LazyCluster {
    client: redis::cluster::ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl RedisConn {
    /// A lazy connection for `cfg`.
    pub fn new(cfg: &RedisConfig) -> Result<Self, RedisLimitError> {
        if cfg.cluster {
            let client = redis::cluster::ClusterClient::builder(
                cfg.urls.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
            )
            .connection_timeout(cfg.timeout)
            .response_timeout(cfg.timeout)
            .retries(1)
            .build()?;
            return Ok(Self::Cluster(Arc::new(LazyCluster {
                client,
                conn: OnceCell::new(),
            })));
        }
        let url = cfg.urls.first().map(|u| u.0.as_str()).unwrap_or_default();
        let client = redis::Client::open(url)?;
        let mgr_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(
            client, mgr_cfg,
        )?))
    }

    /// A handle that can run commands, connecting first if needed.
    async fn ready(&self) -> redis::RedisResult<Ready> {
        match self {
            Self::Single(c) => Ok(Ready::Single(c.clone())),
            Self::Cluster(lazy) => {
                let conn = lazy
                    .conn
                    .get_or_try_init(|| lazy.client.get_async_connection())
                    .await?;
                Ok(Ready::Cluster(conn.clone()))
            }
        }
    }
}

/// A connected handle of either kind.
enum Ready {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Ready {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Redis key names under one prefix, all in the hash slot of `{prefix}`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// This instance's id, the first part of each of its lease tokens.
    pub id: String,
    prefix: String,
}

impl Keys {
    /// Key names under `prefix` for instance `id`.
    pub fn new(prefix: &str, id: &str) -> Self {
        Self {
            id: id.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// The lease set of client IP `ip`.
    pub fn ip(&self, ip: &str) -> String {
        format!("{{{}}}:ip:{ip}", self.prefix)
    }

    /// The lease set of app `app`.
    pub fn app(&self, app: &str) -> String {
        format!("{{{}}}:app:{app}", self.prefix)
    }

    /// Whether `token` is a lease of this instance.
    pub fn owns(&self, token: &str) -> bool {
        token
            .strip_prefix(self.id.as_str())
            .is_some_and(|rest| rest.starts_with(':'))
    }
}

/// One connection's counts: its token in each lease set it is counted in.
#[derive(Debug, Clone)]
struct Lease {
    token: String,
    keys: Vec<String>,
}

#[derive(Debug)]
struct Release {
    id: u64,
    lease: Lease,
    /// The acquisition never got a definite answer (Redis may or may not have applied it).
    orphan: bool,
    /// After this the lease has lapsed on its own and the release is pointless.
    lapses: Instant,
}

/// This instance's leases that may still be in Redis, by lease id; shared with the task that
/// renews and releases them.
#[derive(Debug, Default)]
struct Leases {
    /// Of open connections: renewed.
    open: HashMap<u64, Lease>,
    /// Given back (or never answered) but not yet removed from Redis: kept until the keeper has
    /// applied the removal, so that a graceful shutdown, which stops the keeper first, still
    /// removes them. At most [`RedisCounts::max_releasing`].
    releasing: HashMap<u64, Lease>,
}

type Held = Arc<Mutex<Leases>>;

fn lock(held: &Held) -> std::sync::MutexGuard<'_, Leases> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

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

fn release_call<'s, 'a>(
    script: &'s Script,
    leases: impl Iterator<Item = &'a Lease>,
) -> redis::ScriptInvocation<'s> {
    let mut inv = script.prepare_invoke();
    for lease in leases {
        for key in &lease.keys {
            inv.key(key).arg(&lease.token);
        }
    }
    inv
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisLimitError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RedisLimitError::Timeout(timeout)),
    }
}

/// The one task that talks to Redis in the background: renews the leases of open connections
/// every third of their lifetime and applies releases. One task for both keeps them in order on
/// the connection, so a renewal can never re-add a lease released after it.
struct Keeper {
    conn: RedisConn,
    held: Held,
    ttl: Duration,
    timeout: Duration,
    metrics: Metrics,
    capacity: usize,
}

impl Keeper {
    async fn run(self, mut rx: mpsc::Receiver<Release>) {
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
