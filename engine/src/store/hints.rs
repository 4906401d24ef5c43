//! A shard's place in the store: its lock, padded to cache lines of its own, beside the
//! prefetch hints for its GCRA and CL.THROTTLE tables.
//!
//! A check hashes its key and asks for the key's slot to be loaded before it takes the lock
//! ([`Store::prefetch_gcra`]); to know where that slot is without the lock it reads the table
//! address and capacity published here. Separate from the shard itself because these are
//! the only fields of a shard read without its lock, and because their layout with the lock
//! word is part of a check's cost (see [`Padded`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::shard::Shard;
use super::Store;
use crate::shardlock::ShardLock;

/// One shard, padded to its own cache lines so neighbouring locks do not false-share, with the
/// address and capacity of its GCRA and CL.THROTTLE tables published for prefetch hints (see
/// [`crate::fptable::prefetch`]); the GCRA ones are refreshed whenever the shard is unlocked,
/// the CL ones after a CL.THROTTLE write and after every expiry step or re-pack. A stale hint
/// (the table re-packed by a write of another kind since) only wastes that prefetch.
///
/// Field order is fixed (`repr(C)`) so that what a check reads and writes — the hints, the
/// lock word, the GCRA table's header and the tracking flag — sits in the first 64 bytes:
/// at millions of keys the table slots stream through the caches and push these lines out,
/// and each extra line a check touches was one more wait (asserted in a test below).
#[repr(C, align(128))]
pub(super) struct Padded {
    pub(super) gcra_addr: AtomicUsize,
    pub(super) gcra_cap: AtomicUsize,
    pub(super) lock: ShardLock<Shard>,
    pub(super) cl_addr: AtomicUsize,
    pub(super) cl_cap: AtomicUsize,
}

impl Padded {
    pub(super) fn publish(&self, shard: &Shard) {
        self.publish_gcra(shard);
        self.publish_cl(shard);
    }

    #[inline]
    pub(super) fn publish_gcra(&self, shard: &Shard) {
        self.gcra_addr
            .store(shard.gcra.slots_addr(), Ordering::Relaxed);
        self.gcra_cap
            .store(shard.gcra.capacity(), Ordering::Relaxed);
    }

    pub(super) fn publish_cl(&self, shard: &Shard) {
        self.cl_addr.store(shard.cl.slots_addr(), Ordering::Relaxed);
        self.cl_cap.store(shard.cl.capacity(), Ordering::Relaxed);
    }
}

impl Store {
    /// Start loading the GCRA slot `fp` would live in (see [`crate::fptable::prefetch`]).
    #[inline]
    pub fn prefetch_gcra(&self, fp: u64) {
        let p = &self.shards[self.shard_of(fp)];
        crate::fptable::prefetch(
            p.gcra_addr.load(Ordering::Relaxed),
            p.gcra_cap.load(Ordering::Relaxed),
            16,
            fp,
        );
    }

    /// Start loading the CL.THROTTLE slot `fp` would live in.
    #[inline]
    pub fn prefetch_cl(&self, fp: u64) {
        let p = &self.shards[self.shard_of(fp)];
        crate::fptable::prefetch(
            p.cl_addr.load(Ordering::Relaxed),
            p.cl_cap.load(Ordering::Relaxed),
            16,
            fp,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fptable::FpTable;
    use crate::packing::pack;
    use crate::store::Put;

    #[test]
    fn what_a_check_touches_fits_in_the_first_cache_line_of_a_shard() {
        let store = Store::new(4, 0);
        let padded = &store.shards[1];
        let base = padded as *const Padded as usize;
        assert_eq!(base % 64, 0);
        let guard = padded.lock.lock();
        let shard: &Shard = &guard;
        let ends = [
            padded.gcra_addr.as_ptr() as usize + 8,
            padded.gcra_cap.as_ptr() as usize + 8,
            &shard.gcra as *const FpTable<u64> as usize + std::mem::size_of::<FpTable<u64>>(),
            &shard.track as *const bool as usize + 1,
        ];
        for end in ends {
            assert!(end - base <= 64, "a hot field ends at byte {}", end - base);
        }
    }

    #[test]
    fn a_throttle_write_publishes_the_cl_tables_hints_and_a_check_leaves_them() {
        let store = Store::new(1, 0);
        let hints = |s: &Store| {
            let p = &s.shards[0];
            (
                p.cl_addr.load(Ordering::Relaxed),
                p.cl_cap.load(Ordering::Relaxed),
            )
        };
        // Enough keys that the CL table grows (and moves) several times.
        for k in 2..5_000u64 {
            let fp = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut locked = store.lock_at(fp, 1);
            let slot = locked.shard.cl_slot(fp);
            assert_eq!(locked.cl_set(fp, slot, 1_000_000_000), Put::Stored);
            drop(locked);
            let shard = store.shards[0].lock.lock();
            assert_eq!(hints(&store), (shard.cl.slots_addr(), shard.cl.capacity()));
        }
        // An RL.CHECK write does not store them (their line stays untouched)...
        store.shards[0].cl_addr.store(7, Ordering::Relaxed);
        let mut locked = store.lock_at(3, 1);
        locked.gcra_set(3, None, pack(2_000_000_000, 0));
        drop(locked);
        assert_eq!(hints(&store).0, 7);
        // ...and an expiry step publishes every hint.
        store.expire(1, 16, 1);
        let shard = store.shards[0].lock.lock();
        assert_eq!(hints(&store), (shard.cl.slots_addr(), shard.cl.capacity()));
    }
}
