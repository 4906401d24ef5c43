//! [`Stats`]: what the client did (checks answered, degraded decisions, failovers, errors), and
//! the atomic counters behind it. Every call path bumps a counter with a relaxed add; a reader
//! gets a snapshot with [`Client::stats`].

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(doc)]
use crate::Client;

/// Counters of what the client did, read with [`Client::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Checks answered by a daemon.
    pub checks: u64,
    /// Checks decided locally and admitted (degraded mode).
    pub degraded_allowed: u64,
    /// Checks decided locally and denied (degraded mode), including `degraded_table_full`.
    pub degraded_denied: u64,
    /// Of those denials, the ones due to the local key table being full.
    pub degraded_table_full: u64,
    /// Times a node's preferred address changed because another one accepted a write; for a
    /// Sentinel node, times the Sentinels named a different primary than the one in use.
    pub failovers: u64,
    /// Requests that failed on an address by I/O error or timeout.
    pub transport_errors: u64,
    /// Requests an address refused with READONLY (or LOADING / MASTERDOWN).
    pub readonly_replies: u64,
    /// Sentinel nodes: rounds of asking the Sentinels that got a primary's address.
    pub discoveries: u64,
    /// Sentinel nodes: Sentinel queries that failed (refused, timed out, unknown master name,
    /// unexpected reply).
    pub sentinel_errors: u64,
}

/// The live counterpart of [`Stats`]: one atomic per field, bumped where the event happens.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) checks: AtomicU64,
    pub(crate) degraded_allowed: AtomicU64,
    pub(crate) degraded_denied: AtomicU64,
    pub(crate) degraded_table_full: AtomicU64,
    pub(crate) failovers: AtomicU64,
    pub(crate) transport_errors: AtomicU64,
    pub(crate) readonly_replies: AtomicU64,
    pub(crate) discoveries: AtomicU64,
    pub(crate) sentinel_errors: AtomicU64,
}

/// Counts one event.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The counters' current values.
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            checks: get(&self.checks),
            degraded_allowed: get(&self.degraded_allowed),
            degraded_denied: get(&self.degraded_denied),
            degraded_table_full: get(&self.degraded_table_full),
            failovers: get(&self.failovers),
            transport_errors: get(&self.transport_errors),
            readonly_replies: get(&self.readonly_replies),
            discoveries: get(&self.discoveries),
            sentinel_errors: get(&self.sentinel_errors),
        }
    }
}
