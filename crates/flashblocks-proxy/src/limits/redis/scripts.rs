//! The key names and the Lua scripts that acquire, renew and release leases (see `mod.rs`),
//! each declaring every key it touches so the same scripts run on a Redis Cluster.

use redis::Script;

use super::leases::Lease;

/// Leases renewed or released by one script call (bounds the keys a single call declares).
pub(super) const LEASES_PER_CALL: usize = 256;

// Current Redis time in ms: one clock for every instance.
pub(super) const NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

// KEYS: the ip lease set, then the app lease set when the connection has an app.
// ARGV: token, lease ms, ip limit (-1 = none), app limit (-1 = none).
// Reply: 'ok' (token added to every set) | 'ip' | 'app' (nothing added).
pub(super) const ACQUIRE: &str = r"
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
pub(super) const RENEW: &str = r"
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
pub(super) const RELEASE: &str = r"
local removed = {}
for i, key in ipairs(KEYS) do removed[i] = redis.call('ZREM', key, ARGV[i]) end
return removed
";

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

/// An invocation of the release script removing each of `leases`' tokens from its keys.
pub(super) fn release_call<'s, 'a>(
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
