//! The store as a whole: its bounds (set at run time), what it holds (keys, bytes, counters
//! for INFO and metrics), and the expiry steps that drop decayed state.

use crate::{Clock, Engine, EngineStats, EvictionPolicy};

impl<C: Clock> Engine<C> {
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

    /// Number of shards actually used (the configured count rounded up to a power of two).
    pub fn shard_count(&self) -> usize {
        self.store.shard_count()
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
}
