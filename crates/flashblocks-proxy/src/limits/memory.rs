//! In-memory per-IP and per-app counts (one instance, or the fallback while Redis is down under
//! `--redis-failure-policy open`).

use std::{collections::HashMap, net::IpAddr, sync::Mutex};

use crate::{auth::AppId, metrics::RejectReason};

/// Per-IP and per-app counters behind one short-held lock (never held across an `.await`).
///
/// Bounded: an entry exists only while it counts at least one open connection, so the map never
/// holds more than `--instance-connection-limit` entries.
#[derive(Debug)]
pub struct MemoryCounts {
    per_ip: Option<usize>,
    app_limits: Vec<Option<usize>>,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    ips: HashMap<IpAddr, usize>,
    apps: Vec<usize>,
}

impl MemoryCounts {
    /// Counters enforcing `per_ip` (`None` = unlimited) and the given app limits.
    pub fn new(per_ip: Option<usize>, app_limits: Vec<Option<usize>>) -> Self {
        let apps = vec![0; app_limits.len()];
        Self {
            per_ip,
            app_limits,
            inner: Mutex::new(Counts {
                ips: HashMap::new(),
                apps,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic while holding this lock cannot leave counts half-updated (each update is one
        // statement), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a connection from `ip` (of `app`) if both are under their limits; both or neither.
    pub fn try_acquire(&self, ip: IpAddr, app: Option<AppId>) -> Result<(), RejectReason> {
        let mut c = self.lock();
        if let Some(limit) = self.per_ip
            && c.ips.get(&ip).copied().unwrap_or(0) >= limit
        {
            return Err(RejectReason::Ip);
        }
        if let Some(a) = app {
            if let (Some(Some(limit)), Some(n)) = (self.app_limits.get(a), c.apps.get(a))
                && *n >= *limit
            {
                return Err(RejectReason::App);
            }
            if let Some(n) = c.apps.get_mut(a) {
                *n += 1;
            }
        }
        *c.ips.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    /// Releases what [`Self::try_acquire`] counted.
    pub fn release(&self, ip: IpAddr, app: Option<AppId>) {
        let mut c = self.lock();
        if let Some(n) = c.ips.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.ips.remove(&ip);
            }
        }
        if let Some(n) = app.and_then(|a| c.apps.get_mut(a)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Connections currently counted for `ip`.
    pub fn ip_count(&self, ip: IpAddr) -> usize {
        self.lock().ips.get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_and_app_limits_and_release() {
        let m = MemoryCounts::new(Some(2), vec![Some(1), None]);
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        let b: IpAddr = "2.2.2.2".parse().unwrap();
        m.try_acquire(a, Some(0)).unwrap();
        // The app check fails after the IP check passed: nothing is counted.
        assert_eq!(m.try_acquire(a, Some(0)), Err(RejectReason::App));
        assert_eq!(m.ip_count(a), 1);
        m.try_acquire(a, Some(1)).unwrap();
        assert_eq!(m.try_acquire(a, None), Err(RejectReason::Ip));
        m.try_acquire(b, None).unwrap();
        m.release(a, Some(0));
        m.try_acquire(a, Some(0)).unwrap();
        m.release(a, Some(0));
        m.release(a, Some(1));
        assert_eq!(m.ip_count(a), 0);
        assert!(!m.lock().ips.contains_key(&a));
    }

    #[test]
    fn no_per_ip_limit_admits_any_number_from_one_ip() {
        let m = MemoryCounts::new(None, vec![Some(1)]);
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        for _ in 0..1000 {
            m.try_acquire(a, None).unwrap();
        }
        assert_eq!(m.ip_count(a), 1000);
        // App limits still hold.
        m.try_acquire(a, Some(0)).unwrap();
        assert_eq!(m.try_acquire(a, Some(0)), Err(RejectReason::App));
    }
}
