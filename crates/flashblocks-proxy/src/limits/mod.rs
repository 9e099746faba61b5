//! Connection limits: per instance (always local), per client IP and per API-key app (local, or
//! shared across instances through Redis). A [`Permit`] holds every count taken for one
//! connection and releases them all when dropped, on every exit path.

pub mod memory;
pub mod redis;

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tracing::warn;

use crate::{
    auth::{ApiKeys, App, AppId},
    cli::FailurePolicy,
    config::LimitsConfig,
    metrics::{Metrics, RejectReason},
};

use self::{memory::MemoryCounts, redis::RedisCounts};

struct Inner {
    instance_limit: usize,
    active: AtomicUsize,
    memory: MemoryCounts,
    redis: Option<(RedisCounts, FailurePolicy)>,
    apps: Vec<App>,
}

/// Admission control for new subscribers.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Only the instance slot (limits not yet checked, or a check failed).
    Instance,
    /// Instance slot + local per-IP/app counts.
    Memory,
    /// Instance slot + a Redis lease counting the per-IP/app counts.
    Redis(u64),
}

/// The counts taken for one connection; released on drop.
pub struct Permit {
    inner: Arc<Inner>,
    ip: IpAddr,
    app: Option<AppId>,
    held: Held,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("ip", &self.ip)
            .field("app", &self.app)
            .field("held", &self.held)
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        match self.held {
            Held::Instance => {}
            Held::Memory => self.inner.memory.release(self.ip, self.app),
            Held::Redis(lease) => {
                if let Some((r, _)) = &self.inner.redis {
                    r.release(lease);
                }
            }
        }
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    /// Builds the limiter; with Redis configured also returns its background tasks.
    pub fn new(
        cfg: &LimitsConfig,
        keys: &ApiKeys,
        metrics: Metrics,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), redis::RedisLimitError> {
        let apps = keys.apps().to_vec();
        let memory = MemoryCounts::new(cfg.per_ip, apps.iter().map(|a| a.limit).collect());
        let (redis, tasks) = match &cfg.redis {
            Some(rc) => {
                let (r, tasks) = RedisCounts::start(rc, cfg.per_ip, cfg.instance, metrics)?;
                (Some((r, rc.failure_policy)), tasks)
            }
            None => (None, Vec::new()),
        };
        let inner = Inner {
            instance_limit: cfg.instance,
            active: AtomicUsize::new(0),
            memory,
            redis,
            apps,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            tasks,
        ))
    }

    /// Admits a connection from `ip` (of `app`) or says which limit refused it.
    pub async fn acquire(&self, ip: IpAddr, app: Option<AppId>) -> Result<Permit, RejectReason> {
        let limit = self.inner.instance_limit;
        self.inner
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| RejectReason::Instance)?;
        // From here on, dropping `permit` (a rejection, a cancelled handshake) gives everything back.
        let mut permit = Permit {
            inner: self.inner.clone(),
            ip,
            app,
            held: Held::Instance,
        };
        if let Some((redis, policy)) = &self.inner.redis {
            let app_arg = app
                .and_then(|a| self.inner.apps.get(a))
                .map(|a| (a.name.as_str(), a.limit));
            match redis.try_acquire(ip, app_arg).await {
                Ok(Ok(lease)) => {
                    permit.held = Held::Redis(lease);
                    return Ok(permit);
                }
                Ok(Err(reason)) => return Err(reason),
                Err(e) => {
                    warn!(error = %e, policy = ?policy, "connection limiter unavailable");
                    if *policy == FailurePolicy::Closed {
                        return Err(RejectReason::LimiterUnavailable);
                    }
                    // Open: still enforce what this instance can see on its own.
                }
            }
        }
        self.inner.memory.try_acquire(ip, app)?;
        permit.held = Held::Memory;
        Ok(permit)
    }

    /// Connections currently admitted on this instance.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Redis key names of this instance, when Redis is configured.
    pub fn redis_keys(&self) -> Option<&redis::Keys> {
        self.inner.redis.as_ref().map(|(r, _)| r.keys())
    }

    /// Removes the Redis leases of this instance's connections (graceful shutdown).
    pub async fn deregister(&self) {
        if let Some((r, _)) = &self.inner.redis
            && let Err(e) = r.deregister().await
        {
            warn!(error = %e, "redis deregistration failed; keys expire on their own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_release_every_count_on_drop() {
        let keys = ApiKeys::parse(&["a:k:1"]).unwrap();
        let m = Metrics::new(&[], &keys, &[]);
        let cfg = LimitsConfig {
            instance: 2,
            per_ip: Some(5),
            redis: None,
        };
        let (l, _) = Limiter::new(&cfg, &keys, m).unwrap();
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let p1 = l.acquire(ip, Some(0)).await.unwrap();
        // Rejected by the app check after the instance slot was taken: the slot comes back.
        assert_eq!(l.acquire(ip, Some(0)).await.unwrap_err(), RejectReason::App);
        assert_eq!(l.active(), 1);
        let p2 = l.acquire(ip, None).await.unwrap();
        assert_eq!(
            l.acquire(ip, None).await.unwrap_err(),
            RejectReason::Instance
        );
        drop(p1);
        drop(p2);
        assert_eq!(l.active(), 0);
        assert_eq!(l.inner.memory.ip_count(ip), 0);
        let _p = l.acquire(ip, Some(0)).await.unwrap();
    }
}
