//! # ratelimitd-engine
//!
//! The rate-limit engine: where state lives, how a decision is made, which limit applies, and
//! what time it is. It knows nothing of RESP or sockets; the daemon in `src/` calls [`Engine`]
//! and turns its typed results into replies.
//!
//! ## Layout (public API fixed here; modules are the implementer's to arrange)
//! - `clock`: the [`Clock`] trait, [`SystemClock`] (monotonic, anchored to wall-clock time at
//!   start) and [`FakeClock`] for tests. No test sleeps.
//! - `limit`: [`Window`], [`Limit`], [`Scope`], [`EndpointPattern`] — validated once, at the edge
//!   ([`LimitError`] says why not).
//! - `table`: the limits and tiers table, published as an immutable snapshot through
//!   crossbeam-epoch so a check reads it without a lock; precedence resolution.
//! - `gcra`: the pure GCRA decision function (state = one theoretical arrival time).
//! - `store`: the sharded map from a 64-bit key fingerprint to its state.
//! - `cell`: `CL.THROTTLE`, with redis-cell's exact arithmetic, argument handling and errors.
//! - `tests`: engine-level tests through the public API (FakeClock only; no sleeping).

mod cell;
mod clock;
mod gcra;
mod limit;
mod store;
mod table;

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};

pub use cell::{parse_throttle_args, CellError, ThrottleArgs, ThrottleResult, THROTTLE_USAGE};
pub use clock::{Clock, FakeClock, SystemClock};
pub use limit::{EndpointPattern, Limit, LimitError, Scope, Window, MAX_WINDOWS};

use gcra::{ceil_ms, Decision, Params};
use store::{fingerprint, window_key, Store, TAG_CL, TAG_RL};
use table::Table;

/// Nanoseconds since the Unix epoch, as read from a [`Clock`].
pub type Nanos = u64;

// ---------------------------------------------------------------------------------------------
// Results

/// The answer to RL.CHECK / RL.PEEK. With several windows it describes the most restrictive
/// one (see the `check` docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResult {
    pub allowed: bool,
    /// count + burst of the reported window; -1 when no limit applies ("unlimited").
    pub limit: i64,
    /// How many more cost-1 requests would be admitted right now (after this one, if charged);
    /// -1 when unlimited.
    pub remaining: i64,
    /// -1 when allowed, and -1 when the cost can never fit (cost > capacity); otherwise the
    /// milliseconds (rounded up) after which the same check would succeed if nothing else
    /// consumed.
    pub retry_after_ms: i64,
    /// Milliseconds (rounded up) until the key is back to its full allowance in every window;
    /// 0 for a fresh or fully decayed key; -1 when unlimited.
    pub reset_after_ms: i64,
}

/// One window's state, for RL.EXPLAIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub window: Window,
    pub remaining: i64,
    pub reset_after_ms: i64,
}

/// What RL.EXPLAIN reports: the scope that applies (None: no limit, unlimited), the client's
/// tier if it has one, and each window's current state (nothing consumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub scope: Option<Scope>,
    pub tier: Option<Vec<u8>>,
    pub limit: Option<Limit>,
    pub windows: Vec<WindowState>,
}

// ---------------------------------------------------------------------------------------------
// Engine

/// Sizing of an [`Engine`].
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Number of shards; rounded up to a power of two (default 256).
    pub shards: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { shards: 256 }
    }
}

/// The store, the limits table and the clock. All methods take `&self` and are safe to call
/// from many threads; a shard lock is held only for one key's update.
pub struct Engine<C: Clock = SystemClock> {
    clock: C,
    store: Store,
    /// The current configuration snapshot. Never null. Readers pin and load it without a
    /// lock; writers replace it whole and retire the old one through the epoch collector.
    table: Atomic<Table>,
    /// Serialises writers so that two concurrent edits cannot both clone the same snapshot
    /// and lose one of the changes.
    writer: Mutex<()>,
}

/// The reply when no limit applies: allowed, and every number -1 ("unlimited").
const UNLIMITED: CheckResult = CheckResult {
    allowed: true,
    limit: -1,
    remaining: -1,
    retry_after_ms: -1,
    reset_after_ms: -1,
};

fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

impl<C: Clock> Engine<C> {
    pub fn new(clock: C, config: EngineConfig) -> Engine<C> {
        Engine {
            clock,
            store: Store::new(config.shards),
            table: Atomic::new(Table::default()),
            writer: Mutex::new(()),
        }
    }

    /// The engine's clock reading (for TIME and tests).
    pub fn now(&self) -> Nanos {
        self.clock.now()
    }

    /// Number of shards actually used (the configured count rounded up to a power of two).
    pub fn shard_count(&self) -> usize {
        self.store.shard_count()
    }

    /// The current table snapshot, valid for as long as `guard` is pinned.
    fn table<'g>(&self, guard: &'g Guard) -> &'g Table {
        let shared = self.table.load(Ordering::Acquire, guard);
        // SAFETY: `table` is initialised non-null in `new` and only ever swapped for another
        // non-null `Owned`; a replaced snapshot is destroyed through `defer_destroy`, i.e. only
        // after every guard pinned before the swap (including `guard`) is gone.
        unsafe { shared.deref() }
    }

    /// Apply `edit` to a copy of the table and publish the copy.
    fn edit_table<R>(&self, edit: impl FnOnce(&mut Table) -> R) -> R {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let guard = epoch::pin();
        let mut next = self.table(&guard).clone();
        let out = edit(&mut next);
        let old = self.table.swap(Owned::new(next), Ordering::AcqRel, &guard);
        // SAFETY: `old` was the published snapshot and is now unreachable from `self.table`;
        // readers that still hold it are pinned, and deferred destruction waits for them.
        unsafe { guard.defer_destroy(old) };
        out
    }

    /// Check-and-consume `cost` for (client, endpoint) under the limit that applies.
    /// All windows are charged or none. Allowed: the reported window is the one with the fewest
    /// `remaining` after charging. Denied: the one needing the longest wait; `retry_after_ms`
    /// is the wait after which every window fits, or -1 if some window can never fit `cost`.
    /// `reset_after_ms` is the longest over all windows. Cost 0 behaves as a peek.
    pub fn check(&self, client: &[u8], endpoint: &[u8], cost: u64) -> CheckResult {
        self.evaluate(client, endpoint, cost, true)
    }

    /// What a cost-1 check would decide, consuming nothing. `allowed` and `retry_after_ms` are
    /// the cost-1 decision; when it would be allowed, `remaining` and `reset_after_ms` describe
    /// the state as it is now (nothing charged), so a fresh key peeks as `remaining == limit`.
    /// A key decayed to full reads as fresh.
    pub fn peek(&self, client: &[u8], endpoint: &[u8]) -> CheckResult {
        let one = self.evaluate(client, endpoint, 1, false);
        if one.allowed {
            self.evaluate(client, endpoint, 0, false)
        } else {
            one
        }
    }

    /// The shared body of check and peek: decide every window under one shard lock, then
    /// commit all new TATs (only if `charge`, the cost is non-zero and every window allows).
    fn evaluate(&self, client: &[u8], endpoint: &[u8], cost: u64, charge: bool) -> CheckResult {
        let guard = epoch::pin();
        let Some(resolved) = self.table(&guard).resolve(client, endpoint) else {
            return UNLIMITED;
        };
        let windows = resolved.limit.windows();
        let mut params = [Params {
            t: 1,
            tau: 0,
            capacity: 0,
        }; MAX_WINDOWS];
        for (p, w) in params.iter_mut().zip(windows) {
            *p = Params::of(w);
        }
        let params = &params[..windows.len()];
        // The snapshot is no longer needed: the limit's numbers were copied into `params`.
        drop(guard);

        let fp = fingerprint(TAG_RL, &[client, endpoint]);
        let now = self.clock.now();
        let mut decisions = [None; MAX_WINDOWS];
        {
            let mut shard = self.store.lock(fp);
            for (i, p) in params.iter().enumerate() {
                let key = window_key(fp, i);
                let tat = match shard.get(&key) {
                    Some(&t) if t > now => Some(t),
                    Some(_) => {
                        // Decayed to full: same as absent, so drop it now.
                        shard.remove(&key);
                        None
                    }
                    None => None,
                };
                decisions[i] = Some(gcra::decide(p, tat, now, cost));
            }
            let all_allowed = decisions.iter().flatten().all(|d| d.allowed);
            if charge && cost > 0 && all_allowed {
                for (i, d) in decisions.iter().flatten().enumerate() {
                    shard.insert(window_key(fp, i), gcra::store_tat(d.new_tat));
                }
            }
        }
        summarize(params, &decisions[..params.len()])
    }

    /// Restore the full allowance of (client, endpoint). True if any state was removed.
    ///
    /// All [`MAX_WINDOWS`] window keys are cleared, not just those of the current limit: the
    /// limit may have shrunk since the state was written. Only live state counts as removed.
    pub fn reset(&self, client: &[u8], endpoint: &[u8]) -> bool {
        let fp = fingerprint(TAG_RL, &[client, endpoint]);
        let now = self.clock.now();
        let mut shard = self.store.lock(fp);
        let mut removed_live = false;
        for i in 0..MAX_WINDOWS {
            if let Some(tat) = shard.remove(&window_key(fp, i)) {
                removed_live |= tat > now;
            }
        }
        removed_live
    }

    pub fn explain(&self, client: &[u8], endpoint: &[u8]) -> Explanation {
        let guard = epoch::pin();
        let table = self.table(&guard);
        let tier = table.tier_of(client).map(<[u8]>::to_vec);
        let Some(resolved) = table.resolve(client, endpoint) else {
            return Explanation {
                scope: None,
                tier,
                limit: None,
                windows: Vec::new(),
            };
        };
        let scope = resolved.scope(client);
        let limit = resolved.limit.clone();
        drop(guard);

        let fp = fingerprint(TAG_RL, &[client, endpoint]);
        let now = self.clock.now();
        let tats: Vec<Option<Nanos>> = {
            let shard = self.store.lock(fp);
            (0..limit.windows().len())
                .map(|i| shard.get(&window_key(fp, i)).copied().filter(|&t| t > now))
                .collect()
        };
        let windows = limit
            .windows()
            .iter()
            .zip(tats)
            .map(|(w, tat)| {
                let d = gcra::decide(&Params::of(w), tat, now, 0);
                WindowState {
                    window: *w,
                    remaining: to_i64(d.remaining),
                    reset_after_ms: ceil_ms(d.reset_uncharged_ns),
                }
            })
            .collect();
        Explanation {
            scope: Some(scope),
            tier,
            limit: Some(limit),
            windows,
        }
    }

    /// Set (replace) the limit of a scope; applies to the next check.
    pub fn set_limit(&self, scope: Scope, limit: Limit) {
        self.edit_table(|t| t.set_limit(scope, limit));
    }

    pub fn get_limit(&self, scope: &Scope) -> Option<Limit> {
        let guard = epoch::pin();
        self.table(&guard).get_limit(scope).cloned()
    }

    /// True if the scope had a limit.
    pub fn del_limit(&self, scope: &Scope) -> bool {
        self.edit_table(|t| t.del_limit(scope))
    }

    /// All limits, sorted by scope (Default, then clients, tiers, endpoints, each by name).
    pub fn list_limits(&self) -> Vec<(Scope, Limit)> {
        let guard = epoch::pin();
        self.table(&guard).list()
    }

    pub fn set_tier(&self, client: &[u8], tier: &[u8]) {
        self.edit_table(|t| t.set_tier(client, tier));
    }

    pub fn get_tier(&self, client: &[u8]) -> Option<Vec<u8>> {
        let guard = epoch::pin();
        self.table(&guard).tier_of(client).map(<[u8]>::to_vec)
    }

    /// True if the client had a tier.
    pub fn del_tier(&self, client: &[u8]) -> bool {
        self.edit_table(|t| t.del_tier(client))
    }

    /// CL.THROTTLE with redis-cell's semantics (quantity 0 peeks).
    pub fn throttle(&self, key: &[u8], args: ThrottleArgs) -> Result<ThrottleResult, CellError> {
        let params = cell::CellParams::new(&args)?;
        let fp = fingerprint(TAG_CL, &[key]);
        let now = self.clock.now();
        let mut shard = self.store.lock(fp);
        let tat = shard.get(&fp).copied().filter(|&t| t > now);
        let (result, write) = cell::decide(&params, tat, now);
        match write {
            cell::Write::Store(t) => {
                shard.insert(fp, t);
            }
            cell::Write::Remove => {
                shard.remove(&fp);
            }
            cell::Write::None => {}
        }
        Ok(result)
    }

    /// Live keys (state not yet decayed to full). May purge decayed entries as it counts.
    ///
    /// A multi-window RL key counts once per window (each window is one map entry), which is
    /// also what it costs in memory.
    pub fn key_count(&self) -> u64 {
        self.store.count_live(self.clock.now())
    }

    /// Approximate bytes used by the store's tables (capacity x entry size).
    pub fn memory_bytes(&self) -> u64 {
        self.store.memory_bytes()
    }

    /// Drop all rate state (limits and tiers are kept, as they are configuration).
    pub fn flush_state(&self) {
        self.store.clear();
    }

    /// Remove up to `budget` decayed entries, scanning shards round-robin; returns how many were
    /// removed. The daemon calls this periodically so idle keys do not pile up.
    pub fn purge_decayed(&self, budget: usize) -> usize {
        self.store.purge_decayed(self.clock.now(), budget)
    }
}

impl<C: Clock> Drop for Engine<C> {
    /// Free the last published snapshot (earlier ones were handed to the epoch collector).
    fn drop(&mut self) {
        let table = std::mem::replace(&mut self.table, Atomic::null());
        // SAFETY: `&mut self` means no reader or writer of this engine is left, so nothing can
        // still reference the snapshot; it was allocated by `Atomic::new`/`Owned::new`.
        unsafe {
            let shared = table.load(Ordering::Relaxed, epoch::unprotected());
            if !shared.is_null() {
                drop(shared.into_owned());
            }
        }
    }
}

/// Combine per-window decisions into one reply (see [`Engine::check`]).
fn summarize(params: &[Params], decisions: &[Option<Decision>]) -> CheckResult {
    let mut all_allowed = true;
    let mut reset_allowed: u128 = 0; // max reset if charged
    let mut reset_denied: u128 = 0; // max reset uncharged
                                    // Allowed: (remaining, window index) with the fewest remaining.
    let mut tightest: Option<(u64, usize)> = None;
    // Denied: the window with the longest wait; `None` wait = never fits (longest of all).
    let mut worst: Option<(Option<u128>, usize)> = None;
    for (i, d) in decisions.iter().enumerate() {
        let Some(d) = d else { continue };
        reset_allowed = reset_allowed.max(d.reset_if_charged_ns);
        reset_denied = reset_denied.max(d.reset_uncharged_ns);
        if d.allowed {
            let fewer = match tightest {
                None => true,
                Some((r, _)) => d.remaining < r,
            };
            if fewer {
                tightest = Some((d.remaining, i));
            }
        } else {
            all_allowed = false;
            let longer = match worst {
                None => true,
                Some((None, _)) => false,
                Some((Some(w), _)) => match d.retry_after_ns {
                    None => true,
                    Some(r) => r > w,
                },
            };
            if longer {
                worst = Some((d.retry_after_ns, i));
            }
        }
    }
    if all_allowed {
        let Some((remaining, i)) = tightest else {
            return UNLIMITED; // No windows: cannot happen for a valid Limit.
        };
        CheckResult {
            allowed: true,
            limit: to_i64(params[i].capacity),
            remaining: to_i64(remaining),
            retry_after_ms: -1,
            reset_after_ms: ceil_ms(reset_allowed),
        }
    } else {
        let Some((wait, i)) = worst else {
            return UNLIMITED; // Unreachable: some window denied.
        };
        let remaining = decisions[i].map_or(0, |d| d.remaining);
        CheckResult {
            allowed: false,
            limit: to_i64(params[i].capacity),
            remaining: to_i64(remaining),
            retry_after_ms: wait.map_or(-1, ceil_ms),
            reset_after_ms: ceil_ms(reset_denied),
        }
    }
}

#[cfg(test)]
mod tests;
