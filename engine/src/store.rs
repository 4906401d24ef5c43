//! The sharded store: the map from a key's fingerprint to its state, split into shards by the
//! fingerprint's top bits, each behind its own lock.
//!
//! Why this shape: memory per tracked GCRA key is held to <= 32 bytes at 1M keys, so a GCRA
//! entry is a 16-byte slot (fingerprint, packed TAT) in an `FpTable` plus a 4-byte wheel
//! reference, with no key bytes and no per-entry allocation. Sharding bounds lock contention;
//! a lock is held only for one check's read-modify-write, or for one bounded step of expiry.
//!
//! This file holds the [`Store`] (the shards, locking one or many, whole-store visits for
//! snapshots, expiry steps over the shards) and [`Locked`], a shard guard that knows the bounds.
//! The rest is by concept:
//! - `shard`: one shard's tables, its timing wheel, and the writes a check makes;
//! - `bounds`: the eviction policy and how a shard makes room for a new key;
//! - `hints`: a shard's padded place in the store and its prefetch hints;
//! - `changes`: recording writes for replication, the drain, applying replicated records.

mod bounds;
mod changes;
mod hints;
mod shard;

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

pub use bounds::EvictionPolicy;
pub(crate) use bounds::{Bounds, Put};
pub(crate) use changes::Drained;
use hints::Padded;
pub(crate) use shard::{Shard, ShardStats};

use crate::fingerprint::kv_fingerprint;
use crate::kv::Item;
use crate::shardlock::{ShardGuard, ShardLock};
use crate::Nanos;

/// Every shard, the per-shard bounds, and the cursor of the expiry steps.
pub(crate) struct Store {
    shards: Box<[Padded]>,
    /// 64 - log2(shard count): the shift that turns a fingerprint's top bits into an index.
    /// `None` with a single shard (a shift by 64 would be invalid).
    shift: Option<u32>,
    /// Next shard an expiry step starts from, so successive steps sweep the whole store.
    cursor: AtomicUsize,
    bounds: Bounds,
    /// The engine-wide bounds as last set (for INFO and CONFIG GET).
    requested: Mutex<(Option<u64>, Option<u64>, EvictionPolicy)>,
}

/// Shard guard with access to the bounds new keys must respect.
pub(crate) struct Locked<'a> {
    pub shard: ShardGuard<'a, Shard>,
    bounds: &'a Bounds,
    padded: &'a Padded,
    /// The caller's clock reading (0: none), so that a new key at the bound can first reclaim
    /// entries that are already due (see [`Shard::make_room`]).
    now: Nanos,
    /// Set by a CL.THROTTLE write: the CL table's hints are then published too. Only then,
    /// because they live on another cache line than the GCRA hints, and an RL.CHECK that
    /// stored them would write that line as well.
    cl_used: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.padded.publish_gcra(&self.shard);
        if self.cl_used {
            self.padded.publish_cl(&self.shard);
        }
    }
}

impl Locked<'_> {
    pub fn gcra_put(&mut self, key: u64, word: u64) -> Put {
        self.shard.gcra_put(key, word, self.bounds, self.now)
    }
    /// Store `word` for `key`, whose slot and word (if it has one) [`Shard::gcra_slot`] found
    /// under this same lock, without probing the table or reading the slot again.
    #[inline]
    pub fn gcra_set(&mut self, key: u64, slot: Option<(usize, u64)>, word: u64) -> Put {
        self.shard
            .gcra_store(key, slot, word, self.bounds, self.now)
    }
    pub fn win_put(&mut self, key: u64, state: [u64; 3]) -> Put {
        self.shard.win_put(key, state, self.bounds, self.now)
    }
    /// [`Locked::gcra_set`] for CL.THROTTLE: `slot` is what [`Shard::cl_slot`] found under
    /// this lock. The CL table's prefetch hints are published when this lock is released.
    #[inline]
    pub fn cl_set(&mut self, key: u64, slot: Option<(usize, Nanos)>, tat: Nanos) -> Put {
        self.cl_used = true;
        self.shard.cl_store(key, slot, tat, self.bounds, self.now)
    }
}

/// One key-value item as [`Store::for_each_kv`] visits it, borrowed from a copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvEntry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    pub expires_at: Option<Nanos>,
}

impl Store {
    /// `shards` is rounded up to a power of two (at least 1).
    pub fn new(shards: usize, now: Nanos) -> Store {
        let n = shards.max(1).checked_next_power_of_two().unwrap_or(1 << 16);
        let bits = n.trailing_zeros();
        Store {
            shards: (0..n)
                .map(|_| Padded {
                    lock: ShardLock::new(Shard::new(now)),
                    gcra_addr: AtomicUsize::new(0),
                    gcra_cap: AtomicUsize::new(0),
                    cl_addr: AtomicUsize::new(0),
                    cl_cap: AtomicUsize::new(0),
                })
                .collect(),
            shift: (bits > 0).then(|| 64 - bits),
            cursor: AtomicUsize::new(0),
            bounds: Bounds {
                keys_per_shard: AtomicU64::new(u64::MAX),
                bytes_per_shard: AtomicU64::new(u64::MAX),
                policy: AtomicU8::new(0),
            },
            requested: Mutex::new((None, None, EvictionPolicy::EvictNearest)),
        }
    }

    /// (max keys, max bytes, policy) as last set.
    pub fn bounds(&self) -> (Option<u64>, Option<u64>, EvictionPolicy) {
        *self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Set the engine-wide bounds (None: unbounded); each shard gets an equal share.
    pub fn set_bounds(
        &self,
        max_keys: Option<u64>,
        max_bytes: Option<u64>,
        policy: EvictionPolicy,
    ) {
        let n = self.shards.len() as u64;
        let share = |v: Option<u64>| v.map_or(u64::MAX, |v| v.div_ceil(n).max(1));
        self.bounds
            .keys_per_shard
            .store(share(max_keys), Ordering::Relaxed);
        self.bounds
            .bytes_per_shard
            .store(share(max_bytes), Ordering::Relaxed);
        self.bounds.policy.store(policy as u8, Ordering::Relaxed);
        *self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (max_keys, max_bytes, policy);
    }

    /// Shard index from the top bits of `fp` (the tables use all the bits).
    fn shard_of(&self, fp: u64) -> usize {
        self.shift.map_or(0, |s| (fp >> s) as usize)
    }

    /// Lock the shard holding `fp` (and all its windows). A poisoned lock is taken over: every
    /// update is a single slot write, so a panic elsewhere cannot leave a half-written table.
    pub fn lock(&self, fp: u64) -> Locked<'_> {
        self.lock_at(fp, 0)
    }

    /// [`Store::lock`] for a write at `now` (a reading of the engine's clock): a new key at
    /// the bound may then reclaim entries already due before anything is refused or evicted.
    pub fn lock_at(&self, fp: u64, now: Nanos) -> Locked<'_> {
        let i = self.shard_of(fp);
        Locked {
            shard: self.lock_index(i),
            bounds: &self.bounds,
            padded: &self.shards[i],
            now,
            cl_used: false,
        }
    }

    /// The shard index of a fingerprint (for multi-shard transactions).
    pub fn index_of(&self, fp: u64) -> usize {
        self.shard_of(fp)
    }

    /// Lock shards by index (the caller passes them sorted and deduplicated, so that two
    /// transactions always lock in the same order and cannot deadlock).
    pub fn lock_many(&self, indices: &[usize]) -> Vec<(usize, ShardGuard<'_, Shard>)> {
        indices.iter().map(|&i| (i, self.lock_index(i))).collect()
    }

    pub fn bounds_ref(&self) -> &Bounds {
        &self.bounds
    }

    fn lock_index(&self, i: usize) -> ShardGuard<'_, Shard> {
        self.shards[i].lock.lock()
    }

    /// Entries held (live until the wheel drops them, at most one tick after they decay).
    pub fn len(&self) -> u64 {
        (0..self.shards.len())
            .map(|i| self.lock_index(i).len() as u64)
            .sum()
    }

    /// One expiry step: visit `visit` shards, round-robin from where the last step stopped,
    /// looking at no more than `budget` due entries in all, so one step is short (about 50 ns
    /// an entry) whatever is due. Returns entries dropped.
    pub fn expire(&self, now: Nanos, budget: usize, visit: usize) -> usize {
        let n = self.shards.len();
        let start = self.cursor.load(Ordering::Relaxed);
        let (mut left, mut removed) = (budget, 0);
        let visit = visit.clamp(1, n);
        for k in 0..visit {
            let i = (start + k) % n;
            let mut shard = self.lock_index(i);
            let (looked, dropped) = shard.expire(now, left);
            self.shards[i].publish(&shard);
            removed += dropped;
            left -= looked;
            if left == 0 {
                // Resume here next time: this shard may have more due.
                self.cursor.store(i, Ordering::Relaxed);
                return removed;
            }
        }
        self.cursor.store((start + visit) % n, Ordering::Relaxed);
        removed
    }

    /// An expiry step over every shard (tests, and callers that want a full sweep).
    #[cfg(test)]
    pub fn expire_all(&self, now: Nanos, budget: usize) -> usize {
        self.expire(now, budget, self.shards.len())
    }

    /// Bytes of the tables and wheels, plus the fixed shard array.
    pub fn bytes(&self) -> u64 {
        (0..self.shards.len())
            .map(|i| self.lock_index(i).bytes() as u64)
            .sum::<u64>()
            + (self.shards.len() * std::mem::size_of::<Padded>()) as u64
    }

    pub fn stats(&self) -> ShardStats {
        let mut total = ShardStats::default();
        for i in 0..self.shards.len() {
            let s = self.lock_index(i).stats;
            total.expired += s.expired;
            total.evicted += s.evicted;
            total.refused += s.refused;
        }
        total
    }

    /// Visit every live entry, one shard at a time.
    ///
    /// Each shard's entries are copied out under its lock and `f` runs after the lock is
    /// released. Why: the snapshot's `f` appends to one growing buffer of all entries, and a
    /// growth step of that buffer (a realloc copying tens of megabytes at a million keys) or a
    /// first touch of its fresh pages, taken under a shard lock, kept every check of that shard
    /// waiting: a BGSAVE of ~1M keys took the worst RL.CHECK latency from 3–5 ms to 8–31 ms
    /// (docs/PERFORMANCE.md). The copy is a plain read of the shard's slots into a buffer
    /// reused from shard to shard, so a lock is held for about as long as one re-pack.
    pub fn for_each(&self, mut f: impl FnMut(u8, u64, &[u64])) {
        let mut scratch: Vec<(u8, u64, [u64; 3], u8)> = Vec::new();
        for i in 0..self.shards.len() {
            // Room for a quarter more than the last shard held (shards are about equal in
            // size), made before the lock, so the copy rarely grows the buffer while holding it.
            let last = scratch.len();
            scratch.clear();
            scratch.reserve(last + last / 4);
            let shard = self.lock_index(i);
            shard.for_each(|table, key, words| {
                let mut w = [0u64; 3];
                let n = words.len().min(3);
                w[..n].copy_from_slice(&words[..n]);
                scratch.push((table, key, w, n as u8));
            });
            drop(shard);
            for (table, key, words, n) in &scratch {
                f(*table, *key, &words[..usize::from(*n)]);
            }
        }
    }

    pub fn restore(&self, table: u8, key: u64, words: &[u64]) -> bool {
        self.lock(key).shard.restore(table, key, words)
    }

    /// [`Shard::reserve`] for every shard: `more[i]` new entries per table for shard `i`.
    pub fn reserve(&self, more: &[[usize; 3]]) {
        for (i, m) in more.iter().enumerate().take(self.shards.len()) {
            let mut shard = self.lock_index(i);
            shard.reserve(*m);
            self.shards[i].publish(&shard);
        }
    }

    /// Table re-packs so far, over all shards.
    #[cfg(test)]
    pub fn rebuilds(&self) -> u64 {
        (0..self.shards.len())
            .map(|i| self.lock_index(i).stats.rebuilds)
            .sum()
    }

    /// Drop every key-value item, leaving rate state alone (memcached's flush_all). Each delete
    /// is recorded like any other, so replicas follow.
    pub fn clear_kv(&self) {
        for i in 0..self.shards.len() {
            let mut shard = self.lock_index(i);
            let keys: Vec<Box<[u8]>> = shard.kv.iter().map(|(_, k, _)| k.into()).collect();
            for k in keys {
                shard.kv_delete(&k);
            }
        }
    }

    /// Key-value items held.
    pub fn kv_len(&self) -> u64 {
        (0..self.shards.len())
            .map(|i| self.lock_index(i).kv.len() as u64)
            .sum()
    }

    /// Every live key-value item, one shard at a time: copied out under the shard's lock and
    /// visited after it is released, for the reason given at [`Store::for_each`]. Keys and
    /// values are copied into one byte buffer reused from shard to shard, not cloned item by
    /// item: a million counters would otherwise be two allocations each under a lock.
    pub fn for_each_kv(&self, now: Nanos, mut f: impl FnMut(KvEntry<'_>)) {
        // Per item: where its key and value start in `bytes`, their lengths, and the rest.
        type Meta = (usize, usize, usize, u32, u64, Option<Nanos>);
        let (mut bytes, mut meta): (Vec<u8>, Vec<Meta>) = (Vec::new(), Vec::new());
        for i in 0..self.shards.len() {
            // As in `for_each`: room for a quarter more than the last shard, before the lock.
            let (last_bytes, last_meta) = (bytes.len(), meta.len());
            bytes.clear();
            meta.clear();
            bytes.reserve(last_bytes + last_bytes / 4);
            meta.reserve(last_meta + last_meta / 4);
            let shard = self.lock_index(i);
            for (_, k, item) in shard.kv.iter() {
                if item.expires_at.is_none_or(|at| at > now) {
                    meta.push((
                        bytes.len(),
                        k.len(),
                        item.value.len(),
                        item.flags,
                        item.cas,
                        item.expires_at,
                    ));
                    bytes.extend_from_slice(k);
                    bytes.extend_from_slice(&item.value);
                }
            }
            drop(shard);
            for &(at, key_len, value_len, flags, cas, expires_at) in &meta {
                let (key, rest) = bytes[at..].split_at(key_len);
                f(KvEntry {
                    key,
                    value: &rest[..value_len],
                    flags,
                    cas,
                    expires_at,
                });
            }
        }
    }

    /// Put back an item read from a snapshot (ignoring bounds: the snapshot was within them).
    pub fn restore_kv(&self, key: &[u8], item: Item, now: Nanos) -> bool {
        let unbounded = Bounds {
            keys_per_shard: AtomicU64::new(u64::MAX),
            bytes_per_shard: AtomicU64::new(u64::MAX),
            policy: AtomicU8::new(0),
        };
        let idx = self.shard_of(kv_fingerprint(key));
        self.lock_index(idx)
            .kv_put(key, item, now, &unbounded)
            .is_ok()
    }

    /// Drop everything and give the memory back.
    pub fn clear(&self, now: Nanos) {
        for i in 0..self.shards.len() {
            self.lock_index(i).clear(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{fingerprint, window_key, TAG_RL};
    use crate::packing::pack;
    use shard::T_GCRA;

    #[test]
    fn visitors_run_with_no_shard_locked() {
        let store = Store::new(4, 0);
        let keys: Vec<u64> = (1..=64u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for &k in &keys {
            assert!(store.restore(T_GCRA as u8, k, &[u64::MAX >> 1]));
        }
        assert!(store.restore_kv(b"item", Item::default(), 0));
        let free = |fp: u64| !store.shards[store.shard_of(fp)].lock.is_held();
        let mut seen = 0;
        store.for_each(|_, key, words| {
            assert!(free(key), "visiting {key:#x} with its shard locked");
            assert_eq!(words, &[u64::MAX >> 1]);
            seen += 1;
        });
        assert_eq!(seen, keys.len());
        let mut items = 0;
        store.for_each_kv(0, |item| {
            assert!(
                free(kv_fingerprint(item.key)),
                "visiting an item with its shard locked"
            );
            items += 1;
        });
        assert_eq!(items, 1);
    }

    #[test]
    fn window_keys_are_distinct_and_share_the_shard() {
        let s = Store::new(1 << 16, 0);
        for n in 0..1000u64 {
            let fp = fingerprint(TAG_RL, &[&n.to_le_bytes(), b"/e"]);
            let keys: Vec<u64> = (0..8).map(|i| window_key(fp, i)).collect();
            for (i, a) in keys.iter().enumerate() {
                assert_eq!(s.shard_of(*a), s.shard_of(fp));
                for b in &keys[i + 1..] {
                    assert_ne!(a, b);
                }
            }
            assert_eq!(keys[0], fp);
        }
    }

    #[test]
    fn shard_count_rounds_to_power_of_two() {
        assert_eq!(Store::new(0, 0).shard_count(), 1);
        assert_eq!(Store::new(1, 0).shard_count(), 1);
        assert_eq!(Store::new(3, 0).shard_count(), 4);
        assert_eq!(Store::new(256, 0).shard_count(), 256);
        let one = Store::new(1, 0);
        assert_eq!(one.shard_of(u64::MAX), 0);
        let four = Store::new(4, 0);
        assert_eq!(four.shard_of(u64::MAX), 3);
        assert_eq!(four.shard_of(1), 0);
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn the_wheel_drops_decayed_entries_in_bounded_steps() {
        let s = Store::new(4, 0);
        for k in 0..10_000u64 {
            let fp = fingerprint(TAG_RL, &[&k.to_le_bytes()]);
            // Half decay at 1 s, half at 10 s.
            let deadline = if k % 2 == 0 { 1_000 * MS } else { 10_000 * MS };
            assert_eq!(
                s.lock(fp).gcra_put(fp, pack(u128::from(deadline), 1)),
                Put::Stored
            );
        }
        assert_eq!(s.len(), 10_000);
        // Nothing is due before its deadline.
        assert_eq!(s.expire_all(900 * MS, usize::MAX), 0);
        // At most `budget` entries looked at per step, over all shards.
        let first = s.expire_all(1_010 * MS, 100);
        assert!(first > 0 && first <= 100, "{first}");
        let mut total = first;
        while total < 5_000 {
            let n = s.expire_all(1_010 * MS, 100);
            assert!(n > 0);
            total += n;
        }
        assert_eq!(s.len(), 5_000);
        assert_eq!(s.expire_all(1_010 * MS, usize::MAX), 0);
        assert_eq!(s.stats().expired, 5_000);
        let mut t = 1_010 * MS;
        while s.len() > 0 {
            t += 100 * MS;
            s.expire_all(t, usize::MAX);
            assert!(t < 20_000 * MS, "all gone by then");
        }
        assert!(t >= 10_000 * MS);
        // The tables were re-packed small again.
        assert!(s.bytes() < 100_000, "{}", s.bytes());
    }

    #[test]
    fn a_moved_deadline_is_rescheduled_not_dropped() {
        let s = Store::new(1, 0);
        let fp = 42;
        s.lock(fp).gcra_put(fp, pack(u128::from(100 * MS), 1));
        // A hit pushes the deadline to 5 s; the wheel still holds the 100 ms slot.
        s.lock(fp).gcra_put(fp, pack(u128::from(5_000 * MS), 1));
        s.expire_all(200 * MS, usize::MAX);
        assert_eq!(s.len(), 1);
        s.expire_all(5_100 * MS, usize::MAX);
        assert_eq!(s.len(), 0);
    }
}
