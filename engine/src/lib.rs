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

pub mod arena;
mod cell;
mod clock;
mod counting;
mod fingerprint;
mod fptable;
mod gcra;
mod kv;
mod limit;
mod packing;
mod shape;
mod shardlock;
mod slots;
mod snapshot;
mod store;
mod table;
mod wheel;

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};

pub use cell::{parse_throttle_args, CellError, ThrottleArgs, ThrottleResult, THROTTLE_USAGE};
pub use clock::{AnyClock, Clock, FakeClock, SystemClock};
pub use kv::{Item, KvError, KvTxn, KvWrite};
pub use limit::{Algorithm, EndpointPattern, Limit, LimitError, Scope, Window, MAX_WINDOWS};
pub use snapshot::SnapshotError;
pub use store::EvictionPolicy;

use fingerprint::{fingerprint, kv_fingerprint, window_key, TAG_CL, TAG_RL};
use gcra::{ceil_ms, Decision, Params};
use packing::{pack, unpack};
use shape::Shapes;
use store::{Put, Shard, Store};
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
    /// Which kind of scope supplied the limit (for metrics, whose labels must not carry ids).
    pub scope: ScopeKind,
    /// Index, in the limit's windows, of the window `limit` describes (0 when unlimited): the
    /// HTTP check names it in its RateLimit-Policy header. Two windows can share a capacity
    /// (10/1s and 10/1m), so the capacity alone does not say which one it is.
    pub window: u8,
}

/// A key's fingerprint as a prefetch worked it out ([`Engine::prefetch_check`],
/// [`Engine::prefetch_throttle`]), handed back with the check of the same key so that the key
/// is hashed once. Only the engine makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetched(u64);

/// One check of a batch ([`Engine::check_many`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckRequest<'a> {
    pub client: &'a [u8],
    pub endpoint: &'a [u8],
    pub cost: u64,
}

/// The precedence level a check's limit came from, without the ids (bounded cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    ClientEndpoint = 0,
    Client = 1,
    TierEndpoint = 2,
    Tier = 3,
    Endpoint = 4,
    Default = 5,
    /// No limit applied.
    None = 6,
}

impl ScopeKind {
    /// Every kind, in the order of their discriminants: `ALL[k as usize] == k`, so a table
    /// of counters indexed by kind can be walked with its labels.
    pub const ALL: [ScopeKind; 7] = [
        ScopeKind::ClientEndpoint,
        ScopeKind::Client,
        ScopeKind::TierEndpoint,
        ScopeKind::Tier,
        ScopeKind::Endpoint,
        ScopeKind::Default,
        ScopeKind::None,
    ];

    /// Label text, e.g. for Prometheus.
    pub fn name(self) -> &'static str {
        match self {
            ScopeKind::ClientEndpoint => "client_endpoint",
            ScopeKind::Client => "client",
            ScopeKind::TierEndpoint => "tier_endpoint",
            ScopeKind::Tier => "tier",
            ScopeKind::Endpoint => "endpoint",
            ScopeKind::Default => "default",
            ScopeKind::None => "none",
        }
    }
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

/// Sizing and bounds of an [`Engine`].
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Number of shards; rounded up to a power of two (default 256).
    pub shards: usize,
    /// Most keys held (None: unbounded). Each shard gets an equal share.
    pub max_keys: Option<u64>,
    /// Most bytes of tables and wheels (None: unbounded). Each shard gets an equal share.
    pub max_memory: Option<u64>,
    /// What to do with a new key when a shard is at its bound.
    pub policy: EvictionPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            shards: 256,
            max_keys: None,
            max_memory: None,
            policy: EvictionPolicy::EvictNearest,
        }
    }
}

/// One replicated change: the *current* state of something a write touched, read when the
/// changes are drained (so repeated writes of a hot key yield one record). A replica applies it
/// as it is; it never re-runs a decision with its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Rate state of one entry. `words` empty: the entry is gone (reset or evicted).
    /// `shape` names the window the state was written under (see `Engine::apply_change`).
    State {
        table: u8,
        key: u64,
        words: Vec<u64>,
        shape: Option<(u64, u64)>,
    },
    /// A key-value item (None: deleted).
    Item { key: Vec<u8>, item: Option<Item> },
    /// Everything was dropped (FLUSHALL); earlier changes are void.
    Flush,
}

/// A [`Change`] as the drain sees it: borrowed from the shard, so that streaming a change costs
/// no allocation (the replication pump encodes it straight into its output buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRef<'a> {
    /// See [`Change::State`].
    State {
        table: u8,
        key: u64,
        words: &'a [u64],
        shape: Option<(u64, u64)>,
    },
    /// See [`Change::Item`].
    Item {
        key: &'a [u8],
        item: Option<&'a Item>,
    },
    /// See [`Change::Flush`].
    Flush,
}

impl ChangeRef<'_> {
    pub fn to_owned(self) -> Change {
        match self {
            ChangeRef::State {
                table,
                key,
                words,
                shape,
            } => Change::State {
                table,
                key,
                words: words.to_vec(),
                shape,
            },
            ChangeRef::Item { key, item } => Change::Item {
                key: key.to_vec(),
                item: item.cloned(),
            },
            ChangeRef::Flush => Change::Flush,
        }
    }
}

impl Change {
    pub fn as_ref(&self) -> ChangeRef<'_> {
        match self {
            Change::State {
                table,
                key,
                words,
                shape,
            } => ChangeRef::State {
                table: *table,
                key: *key,
                words,
                shape: *shape,
            },
            Change::Item { key, item } => ChangeRef::Item {
                key,
                item: item.as_ref(),
            },
            Change::Flush => ChangeRef::Flush,
        }
    }
}

/// Counters for INFO and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Entries held (one per window of an RL key, one per CL.THROTTLE key).
    pub keys: u64,
    /// Entries dropped by the timing wheels because they decayed back to full.
    pub expired: u64,
    /// Entries dropped to stay within the bounds.
    pub evicted: u64,
    /// New keys refused by a refuse-* policy.
    pub refused: u64,
    /// Bytes of tables and wheels.
    pub memory_bytes: u64,
}

/// The store, the limits table and the clock. All methods take `&self` and are safe to call
/// from many threads; a shard lock is held only for one key's update.
pub struct Engine<C: Clock = SystemClock> {
    clock: C,
    store: Store,
    shapes: Shapes,
    /// Source of CAS values for key-value items (memcached's `gets`/`cas`, RESP's WATCH).
    cas: std::sync::atomic::AtomicU64,
    /// Set by FLUSHALL, taken by the next drain of changes (it must precede them). A mutex,
    /// not an atomic flag: a flush (clearing shard after shard, then setting the flag) and a
    /// drain must not interleave, or writes made after the flush on shards already cleared
    /// would be drained before the flush record and wiped by it on the replica.
    flushed: Mutex<bool>,
    /// The current configuration snapshot. Never null. Readers pin and load it without a
    /// lock; writers replace it whole and retire the old one through the epoch collector.
    table: Atomic<Table>,
    /// Serialises writers so that two concurrent edits cannot both clone the same snapshot
    /// and lose one of the changes.
    writer: Mutex<()>,
    /// [`Engine::memory_bytes`] of the empty store (see [`Engine::fixed_memory_bytes`]).
    fixed_bytes: u64,
}

/// The reply when no limit applies: allowed, and every number -1 ("unlimited").
const UNLIMITED: CheckResult = CheckResult {
    allowed: true,
    limit: -1,
    remaining: -1,
    retry_after_ms: -1,
    reset_after_ms: -1,
    scope: ScopeKind::None,
    window: 0,
};

/// A window's index as [`CheckResult::window`] holds it (a limit has at most [`MAX_WINDOWS`]).
fn window_index(i: usize) -> u8 {
    u8::try_from(i).unwrap_or(u8::MAX)
}

fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

const NANOS_PER_MS: u64 = 1_000_000;

/// The numbers of one window of the limit being applied, copied out of the table snapshot.
#[derive(Clone, Copy)]
struct Win {
    window: Window,
    shape: u16,
}

/// New state for one window, written only if every window admits the check.
#[derive(Clone, Copy)]
enum NewState {
    Gcra(u64),
    Counting([u64; 3]),
}

impl<C: Clock> Engine<C> {
    pub fn new(clock: C, config: EngineConfig) -> Engine<C> {
        let store = Store::new(config.shards, clock.now());
        store.set_bounds(config.max_keys, config.max_memory, config.policy);
        let fixed_bytes = store.bytes();
        Engine {
            fixed_bytes,
            clock,
            store,
            shapes: Shapes::default(),
            cas: std::sync::atomic::AtomicU64::new(0),
            flushed: Mutex::new(false),
            table: Atomic::new(Table::default()),
            writer: Mutex::new(()),
        }
    }

    /// Change the bounds at runtime (CONFIG SET). Keys above a lowered bound are evicted as new
    /// keys arrive, not all at once.
    pub fn set_bounds(
        &self,
        max_keys: Option<u64>,
        max_memory: Option<u64>,
        policy: EvictionPolicy,
    ) {
        self.store.set_bounds(max_keys, max_memory, policy);
    }

    /// The memory the store takes empty (each shard's wheel, lock and table headers), which
    /// counts against a `max_memory` bound: one below it refuses every new key. The daemon
    /// refuses such a bound.
    pub fn fixed_memory_bytes(&self) -> u64 {
        self.fixed_bytes
    }

    /// (max keys, max memory bytes, policy) as last set.
    pub fn bounds(&self) -> (Option<u64>, Option<u64>, EvictionPolicy) {
        self.store.bounds()
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

    /// The limit that applies to (client, endpoint), copied out of the snapshot.
    fn applicable(
        &self,
        client: &[u8],
        endpoint: &[u8],
    ) -> Option<(Algorithm, [Option<Win>; MAX_WINDOWS], ScopeKind)> {
        let guard = epoch::pin();
        Self::applicable_in(self.table(&guard), client, endpoint)
    }

    /// The limit that applies to (client, endpoint) in `table`, copied out of it.
    fn applicable_in(
        table: &Table,
        client: &[u8],
        endpoint: &[u8],
    ) -> Option<(Algorithm, [Option<Win>; MAX_WINDOWS], ScopeKind)> {
        let resolved = table.resolve(client, endpoint)?;
        let kind = resolved.kind();
        let limit = resolved.limit;
        let mut wins = [None; MAX_WINDOWS];
        for (i, (slot, w)) in wins.iter_mut().zip(limit.windows()).enumerate() {
            *slot = Some(Win {
                window: *w,
                shape: limit.shape(i),
            });
        }
        Some((limit.algorithm(), wins, kind))
    }

    /// Start loading the memory a check of (client, endpoint) will touch first (its key's
    /// slot). A hint only: nothing is read or changed. The daemon calls it for every check of
    /// a pipelined batch before running the first, so that at millions of keys the cache misses
    /// of the batch overlap instead of queueing one after another.
    ///
    /// Returns the key's fingerprint, for [`Engine::check_prefetched_at`] to use instead of
    /// hashing the key again.
    #[inline]
    pub fn prefetch_check(&self, client: &[u8], endpoint: &[u8]) -> Prefetched {
        let fp = fingerprint(TAG_RL, &[client, endpoint]);
        self.store.prefetch_gcra(fp);
        Prefetched(fp)
    }

    /// [`Engine::prefetch_check`] for a CL.THROTTLE of `key`; the fingerprint returned is for
    /// [`Engine::throttle_prefetched_at`].
    #[inline]
    pub fn prefetch_throttle(&self, key: &[u8]) -> Prefetched {
        let fp = fingerprint(TAG_CL, &[key]);
        self.store.prefetch_cl(fp);
        Prefetched(fp)
    }

    /// Check-and-consume each request as [`Engine::check`] would, in order, appending one
    /// result per request to `out`. The clock is read and the limits snapshot loaded once per
    /// batch (all the checks of a batch are judged at the same instant), and the slots of up to
    /// 16 keys are requested from memory before the first of them is decided.
    pub fn check_many(&self, requests: &[CheckRequest<'_>], out: &mut Vec<CheckResult>) {
        const AHEAD: usize = 16;
        out.reserve(requests.len());
        let guard = epoch::pin();
        let table = self.table(&guard);
        let now = self.clock.now();
        for chunk in requests.chunks(AHEAD) {
            let mut fps = [0u64; AHEAD];
            for (fp, r) in fps.iter_mut().zip(chunk) {
                *fp = fingerprint(TAG_RL, &[r.client, r.endpoint]);
                self.store.prefetch_gcra(*fp);
            }
            for (&fp, r) in fps.iter().zip(chunk) {
                out.push(match table.resolve(r.client, r.endpoint) {
                    Some(res) => self.decide_key(fp, res.limit, res.kind(), now, r.cost, true),
                    None => UNLIMITED,
                });
            }
        }
    }

    /// Check-and-consume `cost` for (client, endpoint) under the limit that applies.
    /// All windows are charged or none. Allowed: the reported window is the one with the fewest
    /// `remaining` after charging. Denied: the one needing the longest wait; `retry_after_ms`
    /// is the wait after which every window fits, or -1 if some window can never fit `cost`.
    /// `reset_after_ms` is the longest over all windows. Cost 0 behaves as a peek.
    pub fn check(&self, client: &[u8], endpoint: &[u8], cost: u64) -> CheckResult {
        self.evaluate(client, endpoint, cost, true, None, None)
    }

    /// [`Engine::check`] at `now`, a reading of this engine's clock ([`Engine::now`]) the
    /// caller already took: the daemon reads the clock once per command and times the command
    /// with the same reading. A reading a little in the past is harmless (it is what a check
    /// that lost the race for the shard lock sees anyway).
    pub fn check_at(&self, client: &[u8], endpoint: &[u8], cost: u64, now: Nanos) -> CheckResult {
        self.evaluate(client, endpoint, cost, true, Some(now), None)
    }

    /// [`Engine::check_at`] for a key whose [`Engine::prefetch_check`] returned `key`: the key
    /// is not hashed a second time (at a thousand keys, where the prefetch finds the table in
    /// the caches already, that second hash made the prefetch a loss). `key` must come from
    /// the prefetch of this same (client, endpoint); debug builds check it.
    pub fn check_prefetched_at(
        &self,
        key: Prefetched,
        client: &[u8],
        endpoint: &[u8],
        cost: u64,
        now: Nanos,
    ) -> CheckResult {
        self.evaluate(client, endpoint, cost, true, Some(now), Some(key))
    }

    /// What a cost-1 check would decide, consuming nothing. `allowed` and `retry_after_ms` are
    /// the cost-1 decision; when it would be allowed, `remaining` and `reset_after_ms` describe
    /// the state as it is now (nothing charged), so a fresh key peeks as `remaining == limit`.
    /// A key decayed to full reads as fresh.
    pub fn peek(&self, client: &[u8], endpoint: &[u8]) -> CheckResult {
        let one = self.evaluate(client, endpoint, 1, false, None, None);
        if one.allowed {
            self.evaluate(client, endpoint, 0, false, None, None)
        } else {
            one
        }
    }

    /// Decide every window of the limit for one (client, endpoint) under its shard lock.
    ///
    /// Returns each window's decision, its state if charged, and — for a window whose stored
    /// state was written under another limit and read rescaled — that rescaled state as it
    /// stands, uncharged. A charged check that does not write its new states writes those:
    /// left in the old limit's terms, the state would go on decaying at the old limit's pace
    /// and every later check would rescale it afresh, so a client told "retry in 100 ms"
    /// after a change from 10/1m to 10/1s would still be denied seconds later.
    #[allow(clippy::type_complexity)]
    fn decide_all(
        &self,
        shard: &Shard,
        fp: u64,
        algo: Algorithm,
        wins: &[Option<Win>; MAX_WINDOWS],
        now: Nanos,
        cost: u64,
    ) -> (
        [Option<Decision>; MAX_WINDOWS],
        [Option<NewState>; MAX_WINDOWS],
        [Option<NewState>; MAX_WINDOWS],
    ) {
        let mut decisions = [None; MAX_WINDOWS];
        let mut states = [None; MAX_WINDOWS];
        let mut rescaled = [None; MAX_WINDOWS];
        for (i, win) in wins.iter().enumerate() {
            let Some(win) = win else { break };
            let key = window_key(fp, i);
            match algo {
                Algorithm::Gcra => {
                    let p = Params::of(&win.window);
                    let stored = shard.gcra_get(key);
                    let tat = stored.and_then(|w| self.read_gcra(w, win, &p, now));
                    if let (Some(w), Some(t)) = (stored, tat) {
                        if unpack(w).1 != win.shape {
                            rescaled[i] = Some(NewState::Gcra(pack(u128::from(t), win.shape)));
                        }
                    }
                    let d = gcra::decide(&p, tat, now, cost);
                    states[i] = Some(NewState::Gcra(pack(d.new_tat, win.shape)));
                    decisions[i] = Some(d);
                }
                Algorithm::Sliding | Algorithm::Fixed => {
                    let period_ns = win.window.period_ms() * NANOS_PER_MS;
                    let stored = shard.win_get(key);
                    let counts = stored.and_then(|w| self.read_counts(w, algo, win, now));
                    let decide = if algo == Algorithm::Fixed {
                        counting::decide_fixed
                    } else {
                        counting::decide_sliding
                    };
                    let cap = win.window.capacity();
                    if let (Some(w), Some(c)) = (stored, counts) {
                        if unpack(w[0]).1 != win.shape {
                            let (d0, c0) = decide(cap, period_ns, Some(c), now, 0);
                            rescaled[i] = Some(NewState::Counting([
                                pack(d0.new_tat, win.shape),
                                c0.cur,
                                c0.prev,
                            ]));
                        }
                    }
                    let (d, c) = decide(cap, period_ns, counts, now, cost);
                    states[i] = Some(NewState::Counting([
                        pack(d.new_tat, win.shape),
                        c.cur,
                        c.prev,
                    ]));
                    decisions[i] = Some(d);
                }
            }
        }
        (decisions, states, rescaled)
    }

    /// The TAT a stored GCRA word stands for under the current window, or None if it is full.
    /// State written under another window is rescaled so the fraction of the allowance already
    /// used is kept: a raised limit never turns an allowed client into a denied one.
    fn read_gcra(&self, word: u64, win: &Win, p: &Params, now: Nanos) -> Option<Nanos> {
        let (tat, shape) = unpack(word);
        if tat <= now {
            return None;
        }
        if shape == win.shape || shape == 0 || win.shape == 0 {
            return Some(tat);
        }
        let Some((Algorithm::Gcra, old)) = self.shapes.get(shape) else {
            return Some(tat);
        };
        let old_tau = Params::of(&old).tau.max(1);
        let debt = scale_debt(tat - now, p.tau, old_tau).min(p.tau);
        if debt == 0 {
            return None;
        }
        // Rounded up to the microsecond as the store will keep it, so that the retry time
        // this check reports is measured from the TAT that is then stored (from the unrounded
        // one a retry could come up to 1 us too early).
        let tat = now.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX));
        Some(unpack(pack(u128::from(tat), 0)).0)
    }

    /// The counts a stored fixed/sliding state stands for under the current window, rescaled
    /// (like [`Engine::read_gcra`]) when it was written under another window.
    fn read_counts(
        &self,
        words: [u64; 3],
        algo: Algorithm,
        win: &Win,
        now: Nanos,
    ) -> Option<counting::Counts> {
        let (deadline, shape) = unpack(words[0]);
        if deadline <= now {
            return None;
        }
        let (old_algo, old) = if shape == win.shape || shape == 0 || win.shape == 0 {
            (algo, win.window)
        } else {
            match self.shapes.get(shape) {
                Some((a, w)) if a != Algorithm::Gcra => (a, w),
                _ => (algo, win.window),
            }
        };
        let old_p = old.period_ms() * NANOS_PER_MS;
        let lag = if old_algo == Algorithm::Sliding { 2 } else { 1 };
        let counts = counting::Counts {
            idx: (deadline / old_p).saturating_sub(lag),
            cur: words[1],
            prev: words[2],
        };
        if old_algo == algo && old == win.window {
            return Some(counts);
        }
        let scale = |n: u64| {
            u64::try_from(
                u128::from(n) * u128::from(win.window.capacity())
                    / u128::from(old.capacity().max(1)),
            )
            .unwrap_or(u64::MAX)
        };
        let p = win.window.period_ms() * NANOS_PER_MS;
        if old_algo == algo && old_p == p {
            return Some(counting::Counts {
                idx: counts.idx,
                cur: scale(counts.cur),
                prev: scale(counts.prev),
            });
        }
        let used = counting::usage_at(old_algo == Algorithm::Sliding, old_p, counts, now);
        // Into a shorter window, the fraction used is kept, as above. Into a longer one the
        // fraction would stretch the old window's usage over the whole new window: a full
        // 10/1s raised to 72000/1h would deny for the rest of the hour where the old limit
        // denied for under a second. What the client did spend in the old window, it spent
        // in the new one too, so the count itself is carried (at most the new capacity).
        let cur = if p > old_p {
            used.min(win.window.capacity())
        } else {
            scale(used)
        };
        Some(counting::Counts {
            idx: now / p,
            cur,
            prev: 0,
        })
    }

    /// The shared body of check and peek: decide every window under one shard lock, then
    /// commit all new states (only if `charge`, the cost is non-zero and every window allows).
    /// `key`: the fingerprint a prefetch of this (client, endpoint) already worked out.
    fn evaluate(
        &self,
        client: &[u8],
        endpoint: &[u8],
        cost: u64,
        charge: bool,
        now: Option<Nanos>,
        key: Option<Prefetched>,
    ) -> CheckResult {
        let fp = match key {
            Some(key) => {
                debug_assert_eq!(key.0, fingerprint(TAG_RL, &[client, endpoint]));
                key.0
            }
            None => {
                // Fingerprint first and start loading the key's slot, so that the limit lookup
                // and the clock read below overlap with what is, at millions of keys, a miss.
                let fp = fingerprint(TAG_RL, &[client, endpoint]);
                self.store.prefetch_gcra(fp);
                fp
            }
        };
        let guard = epoch::pin();
        let Some(resolved) = self.table(&guard).resolve(client, endpoint) else {
            return UNLIMITED;
        };
        let now = now.unwrap_or_else(|| self.clock.now());
        self.decide_key(fp, resolved.limit, resolved.kind(), now, cost, charge)
    }

    /// Decide (and if `charge`, consume) one key under `rule` at `now`, under its shard lock.
    /// The limit is borrowed from the table snapshot (the caller keeps it pinned): copying
    /// its windows out for every check was a tenth of the check's time.
    fn decide_key(
        &self,
        fp: u64,
        limit: &Limit,
        kind: ScopeKind,
        now: Nanos,
        cost: u64,
        charge: bool,
    ) -> CheckResult {
        let algo = limit.algorithm();
        if let ([window], Algorithm::Gcra) = (limit.windows(), algo) {
            // The common case, without the per-window arrays: one GCRA window, its slot found
            // once and, if the check is charged, written in place.
            let win = Win {
                window: *window,
                shape: limit.shape(0),
            };
            let p = Params::of(window);
            let mut locked = self.store.lock_at(fp, now);
            let slot = locked.shard.gcra_slot(fp);
            let tat = slot.and_then(|(_, w)| self.read_gcra(w, &win, &p, now));
            let d = gcra::decide(&p, tat, now, cost);
            let mut result = summarize_one(p.capacity, &d);
            result.scope = kind;
            if charge && cost > 0 && d.allowed {
                let word = pack(d.new_tat, win.shape);
                if let Put::Refused(policy) = locked.gcra_set(fp, slot, word) {
                    result = refused(result, policy, d.reset_uncharged_ns);
                }
            } else if let (true, Some((i, w)), Some(tat)) = (charge, slot, tat) {
                if unpack(w).1 != win.shape {
                    // Read rescaled (written under another limit): keep it rescaled, see
                    // `decide_all`.
                    locked.gcra_set(fp, Some((i, w)), pack(u128::from(tat), win.shape));
                }
            }
            return result;
        }
        let mut wins = [None; MAX_WINDOWS];
        for (i, (slot, w)) in wins.iter_mut().zip(limit.windows()).enumerate() {
            *slot = Some(Win {
                window: *w,
                shape: limit.shape(i),
            });
        }
        let n = limit.windows().len();
        let mut locked = self.store.lock_at(fp, now);
        let (decisions, states, rescaled) =
            self.decide_all(&locked.shard, fp, algo, &wins, now, cost);
        let mut result = summarize(&wins[..n], &decisions[..n], cost);
        result.scope = kind;
        if charge && cost > 0 && result.allowed {
            if let Err(policy) = self.commit(&mut locked, fp, &states[..n]) {
                let uncharged = decisions[..n].iter().flatten();
                let reset = uncharged.map(|d| d.reset_uncharged_ns).max().unwrap_or(0);
                result = refused(result, policy, reset);
            }
        } else if charge {
            for (i, state) in rescaled[..n].iter().enumerate() {
                // Existing keys only: these writes never meet the bounds.
                match state {
                    Some(NewState::Gcra(w)) => locked.gcra_put(window_key(fp, i), *w),
                    Some(NewState::Counting(s)) => locked.win_put(window_key(fp, i), *s),
                    None => Put::Stored,
                };
            }
        }
        result
    }

    /// Write every window's new state; if the bound refuses a new key part-way, put the earlier
    /// windows back as they were, so the check charges all windows or none.
    fn commit(
        &self,
        locked: &mut store::Locked<'_>,
        fp: u64,
        states: &[Option<NewState>],
    ) -> Result<(), EvictionPolicy> {
        locked.shard.keep_windows(fp, states.len());
        let r = self.commit_windows(locked, fp, states);
        locked.shard.keep_windows(fp, 0);
        r
    }

    fn commit_windows(
        &self,
        locked: &mut store::Locked<'_>,
        fp: u64,
        states: &[Option<NewState>],
    ) -> Result<(), EvictionPolicy> {
        let mut before: [Option<Option<NewState>>; MAX_WINDOWS] = [None; MAX_WINDOWS];
        for (i, state) in states.iter().enumerate() {
            let key = window_key(fp, i);
            let put = match state {
                Some(NewState::Gcra(w)) => {
                    before[i] = Some(locked.shard.gcra_get(key).map(NewState::Gcra));
                    locked.gcra_put(key, *w)
                }
                Some(NewState::Counting(s)) => {
                    before[i] = Some(locked.shard.win_get(key).map(NewState::Counting));
                    locked.win_put(key, *s)
                }
                None => Put::Stored,
            };
            if let Put::Refused(policy) = put {
                let now = self.clock.now();
                for (j, old) in before.iter().enumerate().take(i) {
                    let key = window_key(fp, j);
                    match old {
                        Some(Some(state)) => locked.shard.roll_back(key, *state),
                        Some(None) => {
                            locked.shard.gcra_remove(key, now);
                            locked.shard.win_remove(key, now);
                        }
                        None => {}
                    }
                }
                return Err(policy);
            }
        }
        Ok(())
    }

    /// Restore the full allowance of (client, endpoint). True if any state was removed.
    ///
    /// All [`MAX_WINDOWS`] window keys of both state tables are cleared, not just those of the
    /// current limit: the limit may have changed since the state was written. Only live state
    /// counts as removed.
    pub fn reset(&self, client: &[u8], endpoint: &[u8]) -> bool {
        let fp = fingerprint(TAG_RL, &[client, endpoint]);
        let now = self.clock.now();
        let mut locked = self.store.lock(fp);
        let mut removed_live = false;
        for i in 0..MAX_WINDOWS {
            let key = window_key(fp, i);
            removed_live |= locked.shard.gcra_remove(key, now);
            removed_live |= locked.shard.win_remove(key, now);
        }
        removed_live
    }

    pub fn explain(&self, client: &[u8], endpoint: &[u8]) -> Explanation {
        let (scope, tier, limit) = {
            let guard = epoch::pin();
            let table = self.table(&guard);
            let tier = table.tier_of(client).map(<[u8]>::to_vec);
            match table.resolve(client, endpoint) {
                Some(r) => (Some(r.scope(client)), tier, Some(r.limit.clone())),
                None => (None, tier, None),
            }
        };
        let mut windows = Vec::new();
        if let Some((algo, wins, _)) = limit
            .as_ref()
            .and_then(|_| self.applicable(client, endpoint))
        {
            let fp = fingerprint(TAG_RL, &[client, endpoint]);
            let now = self.clock.now();
            let locked = self.store.lock(fp);
            let (decisions, _, _) = self.decide_all(&locked.shard, fp, algo, &wins, now, 0);
            drop(locked);
            for (w, d) in wins.iter().zip(decisions) {
                if let (Some(w), Some(d)) = (w, d) {
                    windows.push(WindowState {
                        window: w.window,
                        remaining: to_i64(d.remaining),
                        reset_after_ms: ceil_ms(d.reset_uncharged_ns),
                    });
                }
            }
        }
        Explanation {
            scope,
            tier,
            limit,
            windows,
        }
    }

    /// Set (replace) the limit of a scope; applies to the next check.
    pub fn set_limit(&self, scope: Scope, mut limit: Limit) {
        let algo = limit.algorithm();
        // Interned under the writer lock, against the table about to be published, so that no
        // other limit change recycles these ids before this limit is in force; the ids already
        // given to this limit's earlier windows are in force too.
        self.edit_table(|t| {
            let mut ids: Vec<u16> = Vec::with_capacity(limit.windows().len());
            for w in limit.windows() {
                let id = self.shapes.intern(algo, w, || {
                    let mut v = ids.clone();
                    t.for_each_limit(|l| v.extend_from_slice(&l.shapes));
                    v
                });
                ids.push(id);
            }
            limit.shapes = ids;
            t.set_limit(scope, limit)
        });
    }

    /// The local shape id of a window that state arrived under (replication, snapshots).
    ///
    /// A window already interned is looked up without the writer lock. A new one is interned
    /// under it, like [`Engine::set_limit`] does: a limit change holds that lock from interning
    /// its windows until its table is published, so the ids it was just given are always
    /// either in the published table or not yet handed out, and recycling here cannot take
    /// one of them.
    fn intern_for_state(&self, algo: Algorithm, w: &Window) -> u16 {
        if let Some(id) = self.shapes.find(algo, w) {
            return id;
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.shapes.intern(algo, w, || self.shapes_in_force())
    }

    /// The shape ids the limits in force use, which [`shape::Shapes::intern`] must not hand
    /// to another window.
    fn shapes_in_force(&self) -> Vec<u16> {
        let guard = epoch::pin();
        let mut ids = Vec::new();
        self.table(&guard)
            .for_each_limit(|l| ids.extend_from_slice(&l.shapes));
        ids
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

    /// All (client, tier) assignments, sorted by client (for persistence and replication).
    pub fn list_tiers(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let guard = epoch::pin();
        self.table(&guard).tiers()
    }

    /// CL.THROTTLE with redis-cell's semantics (quantity 0 peeks).
    pub fn throttle(&self, key: &[u8], args: ThrottleArgs) -> Result<ThrottleResult, CellError> {
        self.throttle_at(key, args, self.clock.now())
    }

    /// [`Engine::throttle`] at `now`, a reading of this engine's clock the caller already took
    /// (see [`Engine::check_at`]).
    pub fn throttle_at(
        &self,
        key: &[u8],
        args: ThrottleArgs,
        now: Nanos,
    ) -> Result<ThrottleResult, CellError> {
        self.throttle_fp(fingerprint(TAG_CL, &[key]), args, now)
    }

    /// [`Engine::throttle_at`] for a key whose [`Engine::prefetch_throttle`] returned `hint`
    /// (see [`Engine::check_prefetched_at`]).
    pub fn throttle_prefetched_at(
        &self,
        hint: Prefetched,
        key: &[u8],
        args: ThrottleArgs,
        now: Nanos,
    ) -> Result<ThrottleResult, CellError> {
        debug_assert_eq!(hint.0, fingerprint(TAG_CL, &[key]));
        self.throttle_fp(hint.0, args, now)
    }

    fn throttle_fp(
        &self,
        fp: u64,
        args: ThrottleArgs,
        now: Nanos,
    ) -> Result<ThrottleResult, CellError> {
        let params = cell::CellParams::new(&args)?;
        let mut locked = self.store.lock_at(fp, now);
        // Probed once: the write goes to the slot this read found.
        let slot = locked.shard.cl_slot(fp);
        let tat = slot.map(|(_, t)| t).filter(|&t| t > now);
        let (mut result, write) = cell::decide(&params, tat, now);
        match write {
            cell::Write::Store(t) => {
                if let Put::Refused(policy) = locked.cl_set(fp, slot, t) {
                    if policy == EvictionPolicy::RefuseDeny {
                        result.limited = true;
                        result.retry_after_s = -1;
                    }
                }
            }
            cell::Write::Remove => locked.shard.cl_remove(fp),
            cell::Write::None => {}
        }
        Ok(result)
    }

    /// Run `f` with every key of `keys` locked: reads and writes in `f` are atomic together
    /// (one key: INCR, SET NX, memcached's cas; several: EXEC). Keys outside `keys` read as
    /// absent inside `f`. Shards are locked in index order, so transactions cannot deadlock.
    pub fn kv_txn<R>(&self, keys: &[&[u8]], f: impl FnOnce(&mut KvTxn<'_>) -> R) -> R {
        let mut idx: Vec<usize> = keys
            .iter()
            .map(|k| self.store.index_of(kv_fingerprint(k)))
            .collect();
        idx.sort_unstable();
        idx.dedup();
        let mut txn = KvTxn {
            guards: self.store.lock_many(&idx),
            store: &self.store,
            now: self.clock.now(),
            cas: &self.cas,
            writes: 0,
        };
        f(&mut txn)
    }

    /// Drop every key-value item and keep rate state (memcached's `flush_all`).
    pub fn kv_flush(&self) {
        self.store.clear_kv();
    }

    /// Key-value items held (memcached's `curr_items`).
    pub fn kv_count(&self) -> u64 {
        self.store.kv_len()
    }

    /// The live item of one key (a copy).
    pub fn kv_get(&self, key: &[u8]) -> Option<Item> {
        self.kv_txn(&[key], |t| t.get(key).cloned())
    }

    /// Entries held: one per window of each RL key, one per CL.THROTTLE key. An entry is
    /// dropped by the timing wheel within a few milliseconds of decaying back to full (later
    /// under an expiry backlog, which the bounded steps work through).
    pub fn key_count(&self) -> u64 {
        self.store.len()
    }

    /// Bytes of the store's tables and wheels.
    pub fn memory_bytes(&self) -> u64 {
        self.store.bytes()
    }

    pub fn stats(&self) -> EngineStats {
        let s = self.store.stats();
        EngineStats {
            keys: self.store.len(),
            expired: s.expired,
            evicted: s.evicted,
            refused: s.refused,
            memory_bytes: self.store.bytes(),
        }
    }

    /// Drop all rate state (limits and tiers are kept, as they are configuration).
    pub fn flush_state(&self) {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        self.store.clear(self.clock.now());
        *flushed = true;
    }

    /// Start or stop recording writes for replication ([`Engine::drain_changes`]). Off by
    /// default, and then a write costs nothing extra.
    pub fn set_change_tracking(&self, on: bool) {
        self.store.set_tracking(on);
    }

    /// Append the changes recorded since the last call to `out` (see
    /// [`Engine::drain_changes_with`]).
    pub fn drain_changes(&self, out: &mut Vec<Change>) {
        self.drain_changes_with(|c| out.push(c.to_owned()));
    }

    /// Hand every change recorded since the last call to `visit`: a `Flush` first if FLUSHALL
    /// ran, then the current state of every key written (one record per key, however often it
    /// was written). Nothing is allocated per record; `visit` runs under a shard lock, so it
    /// should only copy the change somewhere.
    pub fn drain_changes_with(&self, mut visit: impl FnMut(ChangeRef<'_>)) {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut *flushed) {
            visit(ChangeRef::Flush);
        }
        self.store.drain(|drained| match drained {
            store::Drained::Rate(table, key, Some((w, n))) => {
                let shape = if u32::from(table) == 2 {
                    None
                } else {
                    self.shapes
                        .get(unpack(w[0]).1)
                        .map(|(a, win)| shape::encode(a, &win))
                };
                visit(ChangeRef::State {
                    table,
                    key,
                    words: &w[..n],
                    shape,
                });
            }
            store::Drained::Rate(table, key, None) => visit(ChangeRef::State {
                table,
                key,
                words: &[],
                shape: None,
            }),
            store::Drained::Kv(key, item) => visit(ChangeRef::Item { key, item }),
        });
    }

    /// Apply a change drained on a primary. Shape ids are local to a process, so a state's
    /// window travels with it and is re-interned here.
    pub fn apply_change(&self, change: &Change) {
        match change {
            Change::Flush => self.store.clear(self.clock.now()),
            Change::State {
                table,
                key,
                words,
                shape,
            } => {
                if words.is_empty() {
                    self.store.apply(*table, *key, None);
                    return;
                }
                let mut w = words.clone();
                if u32::from(*table) != 2 {
                    let id = shape
                        .and_then(|(a, b)| shape::decode(a, b))
                        .map_or(0, |(algo, win)| self.intern_for_state(algo, &win));
                    let (t, _) = unpack(w[0]);
                    w[0] = pack(u128::from(t), id);
                }
                self.store.apply(*table, *key, Some(&w));
            }
            Change::Item { key, item } => {
                if let Some(item) = item {
                    // CAS values go on from the primary's: a promoted replica must not hand
                    // out again a value a client already holds for an item it kept.
                    self.cas
                        .fetch_max(item.cas, std::sync::atomic::Ordering::Relaxed);
                }
                self.store.apply_kv(key, item.clone(), self.clock.now())
            }
        }
    }

    /// Expiry over every shard: look at no more than `budget` due entries in all; returns how
    /// many entries were dropped. Tests and tools call this; the daemon calls
    /// [`Engine::expire_step`].
    pub fn purge_decayed(&self, budget: usize) -> usize {
        self.store.expire(self.clock.now(), budget, usize::MAX)
    }

    /// One background expiry step, as the daemon runs it every millisecond: an eighth of the
    /// shards (so every shard is visited every 8 steps, and a step takes 32 locks, not 256),
    /// looking at no more than `budget` due entries in all. The bound keeps each step, and each
    /// shard lock, short, so no request waits behind a mass expiry. Locking every shard every
    /// millisecond cost about 5 % of a busy worker under redis-benchmark.
    pub fn expire_step(&self, budget: usize) -> usize {
        let visit = self.store.shard_count().div_ceil(8);
        self.store.expire(self.clock.now(), budget, visit)
    }

    /// Serialise every live entry (see `snapshot.rs` for the format). Shards are visited one at
    /// a time, so checks go on meanwhile; the snapshot is consistent per key, not across keys.
    pub fn snapshot_state(&self) -> Vec<u8> {
        snapshot::write(&self.store, &self.shapes, self.clock.now())
    }

    /// Load a snapshot made by [`Engine::snapshot_state`] into the store (entries that decayed
    /// since are skipped). Returns the number of entries restored. A corrupt or truncated
    /// snapshot is refused whole, before anything is loaded.
    pub fn restore_state(&self, bytes: &[u8]) -> Result<usize, SnapshotError> {
        snapshot::read(
            bytes,
            &self.store,
            &|algo, w| self.intern_for_state(algo, w),
            &self.cas,
            self.clock.now(),
        )
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

/// `ahead * new_tau / old_tau`, the debt `ahead` ns under a window of `old_tau` stands for
/// under one of `new_tau`. Valid windows keep tau under 30 years (~2^60 ns), so the product
/// fits u128; should it not, both taus lose their low bits alike, which keeps their ratio to
/// ~64 significant bits, rather than overflow.
fn scale_debt(ahead: u64, new_tau: u128, old_tau: u128) -> u128 {
    match u128::from(ahead).checked_mul(new_tau) {
        Some(x) => x / old_tau,
        None => {
            let shift = 64 - new_tau.leading_zeros();
            u128::from(ahead) * (new_tau >> shift) / (old_tau >> shift).max(1)
        }
    }
}

/// A check the bound refused to store: fail-open keeps it allowed (nothing recorded),
/// fail-closed denies it with no retry time to offer.
fn refused(mut r: CheckResult, policy: EvictionPolicy, reset_uncharged_ns: u128) -> CheckResult {
    if policy == EvictionPolicy::RefuseDeny {
        // Nothing was charged, and nothing is admitted while the bound refuses new keys: no
        // remaining, the reset of the state as it stands (0 for a key never stored), and no
        // wait that would be known to help (-1).
        r.allowed = false;
        r.remaining = 0;
        r.retry_after_ms = -1;
        r.reset_after_ms = ceil_ms(reset_uncharged_ns);
    }
    r
}

/// Combine per-window decisions into one reply (see [`Engine::check`]).
/// [`summarize`] for a single window (the common case), without the scans.
#[inline]
fn summarize_one(capacity: u64, d: &Decision) -> CheckResult {
    if d.allowed {
        CheckResult {
            allowed: true,
            limit: to_i64(capacity),
            remaining: to_i64(d.remaining),
            retry_after_ms: -1,
            reset_after_ms: ceil_ms(d.reset_if_charged_ns),
            scope: ScopeKind::None,
            window: 0,
        }
    } else {
        CheckResult {
            allowed: false,
            limit: to_i64(capacity),
            remaining: to_i64(d.remaining),
            retry_after_ms: d.retry_after_ns.map_or(-1, ceil_ms),
            reset_after_ms: ceil_ms(d.reset_uncharged_ns),
            scope: ScopeKind::None,
            window: 0,
        }
    }
}

/// `cost` is the check's: a window that would have admitted it reports its `remaining` after
/// charging, and a denied check's `remaining` is as things stand.
fn summarize(wins: &[Option<Win>], decisions: &[Option<Decision>], cost: u64) -> CheckResult {
    let capacity = |i: usize| wins[i].map_or(0, |w| w.window.capacity());
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
            limit: to_i64(capacity(i)),
            remaining: to_i64(remaining),
            retry_after_ms: -1,
            reset_after_ms: ceil_ms(reset_allowed),
            scope: ScopeKind::None,
            window: window_index(i),
        }
    } else {
        let Some((wait, i)) = worst else {
            return UNLIMITED; // Unreachable: some window denied.
        };
        // How many cost-1 checks would be admitted now: the fewest of any window, not those
        // of the window reported, which another window may undercut. Windows that would have
        // admitted this check report their remaining after it, every algorithm's being the
        // uncharged one less the cost.
        let remaining = decisions
            .iter()
            .flatten()
            .map(|d| {
                if d.allowed {
                    d.remaining.saturating_add(cost)
                } else {
                    d.remaining
                }
            })
            .min()
            .unwrap_or(0);
        CheckResult {
            allowed: false,
            limit: to_i64(capacity(i)),
            remaining: to_i64(remaining),
            retry_after_ms: wait.map_or(-1, ceil_ms),
            reset_after_ms: ceil_ms(reset_denied),
            scope: ScopeKind::None,
            window: window_index(i),
        }
    }
}

#[cfg(test)]
mod tests;
