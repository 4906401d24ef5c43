//! # ratelimitd-engine
//!
//! The rate-limit engine: where state lives, how a decision is made, which limit applies, and
//! what time it is. It knows nothing of RESP or sockets; the daemon in `src/` calls [`Engine`]
//! and turns its typed results into replies.
//!
//! ## Layout
//! The facade, and what it answers:
//! - `lib.rs` (this file): [`Engine`] (the store, the limits table and the clock), its
//!   construction from an [`EngineConfig`], and the re-exports that make the public API.
//! - `ops`: the engine's methods, one file per topic: `checks` (RL.CHECK, PEEK, RESET,
//!   EXPLAIN, batches), `limits` (limits, tiers and the table's publication), `throttle`
//!   (CL.THROTTLE), `kv` (key-value transactions), `changes` (the change feed and FLUSHALL),
//!   `snapshot` (save and restore) and `upkeep` (bounds, counts, expiry steps).
//! - `results`: the values a check or EXPLAIN returns ([`CheckResult`], [`ScopeKind`],
//!   [`Explanation`], [`WindowState`]), a batch's [`CheckRequest`], a prefetch's
//!   [`Prefetched`], and the counters of [`EngineStats`].
//! - `feed`: [`Change`] and [`ChangeRef`], the records of the change feed replication streams.
//! - `decision`: how per-window decisions become one reply (all windows charged or none),
//!   what a check the bound refused answers, and the debt arithmetic of rescaling.
//!
//! Deciding, as pure functions of (window, stored state, now, cost):
//! - `gcra`: the GCRA decision (state = one theoretical arrival time).
//! - `counting`: the fixed-window and sliding-window decisions.
//! - `cell`: `CL.THROTTLE`, with redis-cell's exact arithmetic, argument handling and errors.
//!
//! Configuration and time:
//! - `limit`: [`Window`], [`Limit`], [`Scope`], [`EndpointPattern`], validated once, at the
//!   edge ([`LimitError`] says why not).
//! - `table`: the limits and tiers table, published as an immutable snapshot through
//!   crossbeam-epoch so a check reads it without a lock; precedence resolution.
//! - `shape`: shape ids, which name the window a state was written under so that a changed
//!   limit rescales it.
//! - `clock`: the [`Clock`] trait, [`SystemClock`] (monotonic, anchored to wall-clock time at
//!   start), [`FakeClock`] for tests (no test sleeps), and [`AnyClock`], either one chosen
//!   at run time.
//!
//! Where state lives:
//! - `fingerprint`: the 64-bit fingerprints every piece of state is keyed by.
//! - `packing`: the packed state word (a time in microseconds and a shape id).
//! - `store`: the sharded map from a fingerprint to its state: `store::shard` (one shard's
//!   tables and timing wheel), `store::bounds` (eviction policy and making room),
//!   `store::hints` (a shard's padded lock and prefetch hints), `store::changes` (recording
//!   writes for the change feed).
//! - `fptable`: the open-addressing table, keyed by fingerprint, that holds rate state.
//! - `wheel`: the hierarchical timing wheel that finds entries decayed back to full.
//! - `shardlock`: a shard's test-and-set lock, whose release is a plain store.
//! - `slots`: a table's slot array, from the arena when large.
//! - `arena` (public, for the daemon's INFO and startup): huge-page memory for large slot
//!   arrays.
//! - `kv`: the key-value items (INCR/SET/GET, memcached) and [`KvTxn`], their transactions.
//! - `snapshot`: the snapshot format, decoded and checked whole ([`DecodedSnapshot`]) before
//!   anything is loaded ([`SnapshotError`] says why one was refused).
//! - `tests`: engine-level tests, one file per topic (FakeClock only; no sleeping).

pub mod arena;
mod cell;
mod clock;
mod counting;
mod decision;
mod feed;
mod fingerprint;
mod fptable;
mod gcra;
mod kv;
mod limit;
mod ops;
mod packing;
mod results;
mod shape;
mod shardlock;
mod slots;
mod snapshot;
mod store;
mod table;
mod wheel;

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crossbeam_epoch::{self as epoch, Atomic};

pub use cell::{parse_throttle_args, CellError, ThrottleArgs, ThrottleResult, THROTTLE_USAGE};
pub use clock::{AnyClock, Clock, FakeClock, SystemClock};
pub use feed::{Change, ChangeRef};
pub use kv::{Item, KvError, KvTxn, KvWrite};
pub use limit::{Algorithm, EndpointPattern, Limit, LimitError, Scope, Window, MAX_WINDOWS};
pub use results::{
    CheckRequest, CheckResult, EngineStats, Explanation, Prefetched, ScopeKind, WindowState,
};
pub use snapshot::{DecodedSnapshot, SnapshotError};
pub use store::EvictionPolicy;

use shape::Shapes;
use store::Store;
use table::Table;

/// Nanoseconds since the Unix epoch, as read from a [`Clock`].
pub type Nanos = u64;

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

/// The store, the limits table and the clock. All methods take `&self` and are safe to call
/// from many threads; a shard lock is held only for one key's update. The methods are in
/// `ops/`, one file per topic.
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

    /// The engine's clock reading (for TIME and tests).
    pub fn now(&self) -> Nanos {
        self.clock.now()
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

#[cfg(test)]
mod tests;
