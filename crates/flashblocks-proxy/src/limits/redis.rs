//! Per-IP and per-app counts shared by every instance through Redis (one server or a Redis
//! Cluster).
//!
//! Each instance keeps its own counts in two hashes (`{<prefix>}:inst:<id>:ip`, `...:app`) that
//! expire unless its heartbeat refreshes them, and registers itself in the sorted set
//! `{<prefix>}:instances` scored by when its registration lapses. A limit check sums the hashes of
//! the live instances and increments this instance's counts in the same Lua script, so two
//! instances can never both take the last slot, and a crashed instance's counts vanish with its
//! keys (no `KEYS` scans, no cleanup job).
//!
//! Cluster-safe: every key carries the hash tag `{<prefix>}`, so all of them live in one slot,
//! and every script declares each key it touches. The other instances' hashes are passed in as
//! keys from this instance's view of who is live; the script checks that view against the
//! registry and, when it is out of date, answers with the live ids instead of deciding, and the
//! call is repeated with them (a membership change costs one extra round trip).

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{
    Cmd, Pipeline, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};
use tokio::sync::{OnceCell, mpsc};
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
    /// The set of live instances kept changing between attempts.
    #[error("instance registry kept changing over {0} attempts")]
    Unsettled(usize),
}

/// Attempts of one acquire when the script reports a changed set of live instances.
pub const ACQUIRE_ATTEMPTS: usize = 4;

// Shared by the scripts: current Redis time in ms (one clock for every instance), prune lapsed
// instances, (re)register this one. KEYS[1] = instances, ARGV[1] = id, ARGV[2] = ttl ms.
const REGISTER: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
";

// KEYS: instances, own ip hash, own app hash, then for each other instance this one believes
// live: its ip hash, its app hash.
// ARGV: instance id, ttl ms, ip, ip limit (-1 = none), app ('' = none), app limit (-1 = none),
// then the other instances' ids in the order of their keys.
// Reply: {'ok'} | {'ip'} | {'app'} | {'stale', live ids...} (a live instance's keys are missing).
const ACQUIRE: &str = r"
local hashes = { [ARGV[1]] = 2 }
for i = 7, #ARGV do hashes[ARGV[i]] = 4 + (i - 7) * 2 end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(live) do
  if not hashes[id] then
    local reply = { 'stale' }
    for _, l in ipairs(live) do table.insert(reply, l) end
    return reply
  end
end
local function total(offset, field)
  local sum = 0
  for _, id in ipairs(live) do
    local v = redis.call('HGET', KEYS[hashes[id] + offset], field)
    if v then sum = sum + tonumber(v) end
  end
  return sum
end
local ip_limit = tonumber(ARGV[4])
if ip_limit >= 0 and total(0, ARGV[3]) >= ip_limit then return { 'ip' } end
local app_limit = tonumber(ARGV[6])
if ARGV[5] ~= '' and app_limit >= 0 and total(1, ARGV[5]) >= app_limit then return { 'app' } end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return { 'ok' }
";

// KEYS: own ip hash, own app hash. ARGV: ip, app ('' = none).
const RELEASE: &str = r"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
end
return 1
";

// KEYS: instances, own ip hash, own app hash. ARGV: instance id, ttl ms.
const HEARTBEAT: &str = r"
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
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

/// Redis key names of one instance.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Sorted set of live instances.
    pub instances: String,
    /// This instance's per-IP counts.
    pub ip: String,
    /// This instance's per-app counts.
    pub app: String,
    /// Instance id.
    pub id: String,
    prefix: String,
}

impl Keys {
    /// Key names under `prefix` for instance `id`, all in the hash slot of `{prefix}`.
    pub fn new(prefix: &str, id: &str) -> Self {
        Self {
            instances: format!("{{{prefix}}}:instances"),
            ip: Self::ip_of(prefix, id),
            app: Self::app_of(prefix, id),
            id: id.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// Per-IP hash of instance `id`.
    pub fn ip_of(prefix: &str, id: &str) -> String {
        format!("{{{prefix}}}:inst:{id}:ip")
    }

    /// Per-app hash of instance `id`.
    pub fn app_of(prefix: &str, id: &str) -> String {
        format!("{{{prefix}}}:inst:{id}:app")
    }
}

#[derive(Debug)]
struct Release {
    ip: String,
    app: String,
}

/// The Redis-backed limiter of one instance.
pub struct RedisCounts {
    conn: RedisConn,
    keys: Keys,
    ttl: Duration,
    timeout: Duration,
    per_ip: Option<usize>,
    acquire: Script,
    /// The other instances this one last saw live (refreshed when the script says so).
    others: Mutex<Vec<String>>,
    release_tx: mpsc::Sender<Release>,
    metrics: Metrics,
}

impl RedisCounts {
    /// Connects lazily (startup does not wait for Redis) and starts the heartbeat and the
    /// release queue (bounded by the instance limit: each entry is a slot acquired earlier).
    pub fn start(
        cfg: &RedisConfig,
        per_ip: Option<usize>,
        instance_limit: usize,
        metrics: Metrics,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), RedisLimitError> {
        let conn = RedisConn::new(cfg)?;
        let id = format!("{:016x}", rand::random::<u64>());
        let keys = Keys::new(&cfg.key_prefix, &id);
        let (release_tx, release_rx) = mpsc::channel(instance_limit.max(1));
        let tasks = vec![
            tokio::spawn(heartbeat(
                conn.clone(),
                keys.clone(),
                cfg.instance_ttl,
                cfg.timeout,
                metrics.clone(),
            )),
            tokio::spawn(releaser(
                conn.clone(),
                keys.clone(),
                release_rx,
                cfg.timeout,
                metrics.clone(),
            )),
        ];
        let counts = Self {
            conn,
            keys,
            ttl: cfg.instance_ttl,
            timeout: cfg.timeout,
            per_ip,
            acquire: Script::new(&format!("{REGISTER}{ACQUIRE}")),
            others: Mutex::new(Vec::new()),
            release_tx,
            metrics,
        };
        Ok((counts, tasks))
    }

    /// This instance's key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn others(&self) -> Vec<String> {
        self.others
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks the per-IP and per-app limits across instances and counts the connection, atomically.
    pub async fn try_acquire(
        &self,
        ip: IpAddr,
        app: Option<(&str, Option<usize>)>,
    ) -> Result<Result<(), RejectReason>, RedisLimitError> {
        self.acquire_once(ip, app).await.inspect_err(|_| {
            self.metrics.redis_errors.increment(1);
        })
    }

    async fn acquire_once(
        &self,
        ip: IpAddr,
        app: Option<(&str, Option<usize>)>,
    ) -> Result<Result<(), RejectReason>, RedisLimitError> {
        let limit = |l: Option<usize>| l.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let (app_name, app_limit) = match app {
            Some((name, l)) => (name, limit(l)),
            None => ("", -1),
        };
        let ip = ip.to_string();
        let mut conn = with_timeout(self.timeout, self.conn.ready()).await?;
        for _ in 0..ACQUIRE_ATTEMPTS {
            let others = self.others();
            let mut inv = self.acquire.prepare_invoke();
            inv.key(&self.keys.instances)
                .key(&self.keys.ip)
                .key(&self.keys.app);
            for id in &others {
                inv.key(Keys::ip_of(&self.keys.prefix, id))
                    .key(Keys::app_of(&self.keys.prefix, id));
            }
            inv.arg(&self.keys.id)
                .arg(self.ttl.as_millis() as u64)
                .arg(&ip)
                .arg(limit(self.per_ip))
                .arg(app_name)
                .arg(app_limit);
            for id in &others {
                inv.arg(id);
            }
            let reply: Vec<String> =
                with_timeout(self.timeout, inv.invoke_async(&mut conn)).await?;
            match reply.first().map(String::as_str) {
                Some("ok") => return Ok(Ok(())),
                Some("ip") => return Ok(Err(RejectReason::Ip)),
                Some("app") => return Ok(Err(RejectReason::App)),
                Some("stale") => {
                    let live = reply[1..]
                        .iter()
                        .filter(|id| **id != self.keys.id)
                        .cloned()
                        .collect();
                    *self.others.lock().unwrap_or_else(|p| p.into_inner()) = live;
                }
                _ => return Err(RedisLimitError::Reply(reply.join(" "))),
            }
        }
        Err(RedisLimitError::Unsettled(ACQUIRE_ATTEMPTS))
    }

    /// Queues the release of a slot taken by [`Self::try_acquire`]; retried until Redis takes it.
    pub fn release(&self, ip: IpAddr, app: Option<&str>) {
        let r = Release {
            ip: ip.to_string(),
            app: app.unwrap_or_default().to_string(),
        };
        self.metrics.redis_pending_releases.increment(1.0);
        if self.release_tx.try_send(r).is_err() {
            // Cannot happen while the queue is sized to the instance limit; if it does, the
            // count is reclaimed when this instance's keys expire or it shuts down.
            self.metrics.redis_pending_releases.decrement(1.0);
            self.metrics.redis_errors.increment(1);
            warn!("redis release queue full; count leaks until this instance's keys expire");
        }
    }

    /// Removes this instance's registration and counts (graceful shutdown).
    pub async fn deregister(&self) -> Result<(), RedisLimitError> {
        let mut conn = with_timeout(self.timeout, self.conn.ready()).await?;
        let mut pipe = redis::pipe();
        pipe.zrem(&self.keys.instances, &self.keys.id)
            .del(&self.keys.ip)
            .del(&self.keys.app);
        with_timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await
    }
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

async fn heartbeat(
    conn: RedisConn,
    keys: Keys,
    ttl: Duration,
    timeout: Duration,
    metrics: Metrics,
) {
    let script = Script::new(&format!("{REGISTER}{HEARTBEAT}"));
    let mut tick = tokio::time::interval(ttl / 3);
    loop {
        tick.tick().await;
        let mut inv = script.prepare_invoke();
        inv.key(&keys.instances)
            .key(&keys.ip)
            .key(&keys.app)
            .arg(&keys.id)
            .arg(ttl.as_millis() as u64);
        let beat = async {
            let mut c = with_timeout(timeout, conn.ready()).await?;
            with_timeout(timeout, inv.invoke_async::<i64>(&mut c)).await
        };
        if let Err(e) = beat.await {
            metrics.redis_errors.increment(1);
            warn!(error = %e, "redis heartbeat failed");
        }
    }
}

async fn releaser(
    conn: RedisConn,
    keys: Keys,
    mut rx: mpsc::Receiver<Release>,
    timeout: Duration,
    metrics: Metrics,
) {
    let script = Script::new(RELEASE);
    while let Some(r) = rx.recv().await {
        let mut delay = Duration::from_millis(50);
        loop {
            let mut inv = script.prepare_invoke();
            inv.key(&keys.ip).key(&keys.app).arg(&r.ip).arg(&r.app);
            let released = async {
                let mut c = with_timeout(timeout, conn.ready()).await?;
                with_timeout(timeout, inv.invoke_async::<i64>(&mut c)).await
            };
            match released.await {
                Ok(_) => break,
                Err(e) => {
                    metrics.redis_errors.increment(1);
                    warn!(error = %e, "redis release failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics.redis_pending_releases.decrement(1.0);
    }
}
