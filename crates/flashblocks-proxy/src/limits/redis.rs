//! Per-IP and per-app counts shared by every instance through Redis.
//!
//! Each instance keeps its own counts in two hashes (`<prefix>:inst:<id>:ip`, `...:app`) that
//! expire unless its heartbeat refreshes them, and registers itself in the sorted set
//! `<prefix>:instances` scored by when its registration lapses. A limit check sums the hashes of
//! the live instances and increments this instance's counts in the same Lua script, so two
//! instances can never both take the last slot, and a crashed instance's counts vanish with its
//! keys (no `KEYS` scans, no cleanup job).

use std::{net::IpAddr, time::Duration};

use redis::{Script, aio::ConnectionManager};
use tokio::sync::mpsc;
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

// Shared by the scripts: current Redis time in ms (one clock for every instance), prune lapsed
// instances, (re)register this one.
const REGISTER: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
";

// KEYS: instances, own ip hash, own app hash.
// ARGV: instance id, ttl ms, key prefix, ip, ip limit, app ('' = none), app limit (-1 = none).
const ACQUIRE: &str = r"
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local function total(suffix, field)
  local sum = 0
  for _, id in ipairs(live) do
    local v = redis.call('HGET', ARGV[3] .. ':inst:' .. id .. suffix, field)
    if v then sum = sum + tonumber(v) end
  end
  return sum
end
if total(':ip', ARGV[4]) >= tonumber(ARGV[5]) then return 'ip' end
local app_limit = tonumber(ARGV[7])
if ARGV[6] ~= '' and app_limit >= 0 and total(':app', ARGV[6]) >= app_limit then return 'app' end
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return 'ok'
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
    /// Key names under `prefix` for instance `id`.
    pub fn new(prefix: &str, id: &str) -> Self {
        Self {
            instances: format!("{prefix}:instances"),
            ip: format!("{prefix}:inst:{id}:ip"),
            app: format!("{prefix}:inst:{id}:app"),
            id: id.to_string(),
            prefix: prefix.to_string(),
        }
    }
}

#[derive(Debug)]
struct Release {
    ip: String,
    app: String,
}

/// The Redis-backed limiter of one instance.
pub struct RedisCounts {
    conn: ConnectionManager,
    keys: Keys,
    ttl: Duration,
    timeout: Duration,
    per_ip: usize,
    acquire: Script,
    release_tx: mpsc::Sender<Release>,
    metrics: Metrics,
}

impl RedisCounts {
    /// Connects lazily (startup does not wait for Redis) and starts the heartbeat and the
    /// release queue (bounded by the instance limit: each entry is a slot acquired earlier).
    pub fn start(
        cfg: &RedisConfig,
        per_ip: usize,
        instance_limit: usize,
        metrics: Metrics,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), RedisLimitError> {
        let client = redis::Client::open(cfg.url.0.as_str())?;
        let mgr_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, mgr_cfg)?;
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
            release_tx,
            metrics,
        };
        Ok((counts, tasks))
    }

    /// This instance's key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Checks the per-IP and per-app limits across instances and counts the connection, atomically.
    pub async fn try_acquire(
        &self,
        ip: IpAddr,
        app: Option<(&str, Option<usize>)>,
    ) -> Result<Result<(), RejectReason>, RedisLimitError> {
        let (app_name, app_limit) = match app {
            Some((name, limit)) => (
                name,
                limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
            ),
            None => ("", -1),
        };
        let mut conn = self.conn.clone();
        let mut inv = self.acquire.prepare_invoke();
        inv.key(&self.keys.instances)
            .key(&self.keys.ip)
            .key(&self.keys.app)
            .arg(&self.keys.id)
            .arg(self.ttl.as_millis() as u64)
            .arg(&self.keys.prefix)
            .arg(ip.to_string())
            .arg(self.per_ip)
            .arg(app_name)
            .arg(app_limit);
        let reply: String = with_timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .inspect_err(|_| {
                self.metrics.redis_errors.increment(1);
            })?;
        match reply.as_str() {
            "ok" => Ok(Ok(())),
            "ip" => Ok(Err(RejectReason::Ip)),
            "app" => Ok(Err(RejectReason::App)),
            _ => Err(RedisLimitError::Reply(reply)),
        }
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
        let mut conn = self.conn.clone();
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
    mut conn: ConnectionManager,
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
        if let Err(e) = with_timeout(timeout, inv.invoke_async::<i64>(&mut conn)).await {
            metrics.redis_errors.increment(1);
            warn!(error = %e, "redis heartbeat failed");
        }
    }
}

async fn releaser(
    mut conn: ConnectionManager,
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
            match with_timeout(timeout, inv.invoke_async::<i64>(&mut conn)).await {
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
