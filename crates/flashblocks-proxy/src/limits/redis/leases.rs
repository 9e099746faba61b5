//! This instance's leases as it keeps them between acquiring, renewing and releasing: shared
//! by the limiter and the keeper task behind one short-held lock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::time::Instant;

/// One connection's counts: its token in each lease set it is counted in.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    /// `<instance id>:<seq>`.
    pub(super) token: String,
    /// The lease sets it is in.
    pub(super) keys: Vec<String>,
}

/// A lease given back, queued for the keeper to remove from Redis.
#[derive(Debug)]
pub(super) struct Release {
    /// Its lease id.
    pub(super) id: u64,
    /// What to remove.
    pub(super) lease: Lease,
    /// The acquisition never got a definite answer (Redis may or may not have applied it).
    pub(super) orphan: bool,
    /// After this the lease has lapsed on its own and the release is pointless.
    pub(super) lapses: Instant,
}

/// This instance's leases that may still be in Redis, by lease id; shared with the task that
/// renews and releases them.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// Of open connections: renewed.
    pub(super) open: HashMap<u64, Lease>,
    /// Given back (or never answered) but not yet removed from Redis: kept until the keeper has
    /// applied the removal, so that a graceful shutdown, which stops the keeper first, still
    /// removes them. At most `RedisCounts::max_releasing`.
    pub(super) releasing: HashMap<u64, Lease>,
}

/// The leases, shared.
pub(super) type Held = Arc<Mutex<Leases>>;

/// The leases, locked (never across an `.await`; a poisoned lock is taken over).
pub(super) fn lock(held: &Held) -> std::sync::MutexGuard<'_, Leases> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}
