//! An open-addressing hash table keyed by 64-bit fingerprints, built for memory per key.
//!
//! Why not `std::collections::HashMap`: its capacity is a power of two, so at 1M keys it has
//! 2M buckets (17 bytes each with the control byte): 35.6 bytes per key before any expiry
//! bookkeeping, over the 32-byte target. Here the capacity is any number (the home slot is
//! found by multiply-shift, not by masking), the table grows by 1.25x, and a slot is just the
//! fingerprint and its value: 16 bytes for GCRA state, at 64-80 % load.
//!
//! Why linear probing with tombstones rather than Robin Hood or backward-shift deletion: slot
//! positions never move between rebuilds, so the timing wheel can refer to an entry by its
//! 4-byte slot index instead of its 8-byte fingerprint. Deletions leave a tombstone; a rebuild
//! (on growth, or when tombstones pile up, or to shrink after a mass expiry) re-packs the live
//! entries, and the owner then rebuilds its wheel from [`FpTable::iter`].
//!
//! Fingerprints 0 and 1 mark empty and deleted slots, so they are folded onto 2 and 3: two more
//! values in 2^64 that can collide, which changes nothing measurable.

use crate::slots::Slots;

/// Slot key of an empty slot.
const EMPTY: u64 = 0;
/// Slot key of a deleted slot (a tombstone): probing continues past it.
const TOMB: u64 = 1;

/// The table rebuilds before live + tombstones exceed 80 % of the slots...
const MAX_LOAD_NUM: usize = 4;
const MAX_LOAD_DEN: usize = 5;
/// ...and sizes the new table for 64 % load, so the next growth is 1.25x away.
const TARGET_LOAD_PERCENT: usize = 64;
const MIN_CAPACITY: usize = 16;

/// A fingerprint as stored: never EMPTY or TOMB.
#[inline]
fn norm(fp: u64) -> u64 {
    if fp < 2 {
        fp + 2
    } else {
        fp
    }
}

/// Home slot of `fp` in a table of `cap` slots. The fingerprint's top bits also pick the shard,
/// so they are equal for every key of a shard; multiplying by an odd constant first spreads the
/// low bits into the top ones before the multiply-shift range reduction.
#[inline]
fn home(fp: u64, cap: usize) -> usize {
    let mixed = fp.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(mixed) * cap as u128) >> 64) as usize
}

/// Ask the CPU to start loading the first slots of `fp`'s probe run in a table of `cap` slots
/// of `slot_size` bytes at `addr`. At a million keys the table is far larger than the caches
/// and this load is most of a check's cost; issued before the limit lookup, clock read and
/// lock, it overlaps with them. Two lines are asked for, the home slot's and the one holding
/// the fourth slot of the run: at 64–80 % load about one lookup in five runs past the home
/// slot's line, and at 10M keys that second, unrequested miss cost more than the extra hint
/// (batched, 174 ns per check with both lines against 235 ns with one; docs/PERFORMANCE.md). When both are the same line the second
/// hint merges with the first. A hint may be stale (the table rebuilt since): a prefetch never
/// faults, so a wrong address only wastes it.
#[inline]
pub(crate) fn prefetch(addr: usize, cap: usize, slot_size: usize, fp: u64) {
    if addr == 0 || cap == 0 {
        return;
    }
    let target = addr.wrapping_add(home(norm(fp), cap).wrapping_mul(slot_size));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache; it never dereferences in a way that can fault,
    // whatever the address, and SSE is part of the x86_64 baseline.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(target as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(target.wrapping_add(3 * slot_size) as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = target;
}

/// `repr(C)` and 32-bit counts keep the table's header in 32 bytes, so that a shard's lock
/// word, its GCRA table header and its prefetch hints share one cache line
/// (`store::hints::Padded`). A table never holds 2^32 entries: slot indices are 30 bits in
/// wheel references.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct FpTable<V: Copy> {
    slots: Slots<(u64, V)>,
    live: u32,
    tombs: u32,
}

impl<V: Copy + Default> Default for FpTable<V> {
    fn default() -> Self {
        FpTable {
            slots: Slots::new(),
            live: 0,
            tombs: 0,
        }
    }
}

impl<V: Copy + Default> FpTable<V> {
    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.live as usize
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of the slot array.
    pub fn bytes(&self) -> usize {
        self.slots.bytes()
    }

    /// Address of the slot array (for [`prefetch`] hints published outside the lock).
    pub fn slots_addr(&self) -> usize {
        self.slots.as_ptr() as usize
    }

    /// Slot index of `fp`, if present.
    #[inline]
    pub fn find(&self, fp: u64) -> Option<usize> {
        let cap = self.slots.len();
        if cap == 0 {
            return None;
        }
        let fp = norm(fp);
        let mut i = home(fp, cap);
        // The load bound guarantees an EMPTY slot, so this loop ends; the counter is a guard.
        for _ in 0..cap {
            let k = self.slots[i].0;
            if k == fp {
                return Some(i);
            }
            if k == EMPTY {
                return None;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
        None
    }

    #[inline]
    pub fn get(&self, fp: u64) -> Option<V> {
        self.find(fp).map(|i| self.slots[i].1)
    }

    /// The live entry at `idx`, if any (wheel entries refer to slots by index).
    #[inline]
    pub fn at(&self, idx: usize) -> Option<(u64, V)> {
        match self.slots.get(idx) {
            Some(&(k, v)) if k > TOMB => Some((k, v)),
            _ => None,
        }
    }

    #[inline]
    pub fn set_at(&mut self, idx: usize, v: V) {
        if let Some(slot) = self.slots.get_mut(idx) {
            if slot.0 > TOMB {
                slot.1 = v;
            }
        }
    }

    /// True if inserting one new key would exceed the load bound (call [`FpTable::rebuild`]
    /// with [`FpTable::grown_capacity`] first).
    #[inline]
    pub fn full(&self) -> bool {
        (self.live as usize + self.tombs as usize + 1) * MAX_LOAD_DEN
            > self.slots.len() * MAX_LOAD_NUM
    }

    /// The capacity a rebuild should use to hold `live` entries at the target load.
    pub fn capacity_for(live: usize) -> usize {
        (live * 100 / TARGET_LOAD_PERCENT + 1).max(MIN_CAPACITY)
    }

    /// Capacity for one more key than now.
    pub fn grown_capacity(&self) -> usize {
        Self::capacity_for(self.len() + 1)
    }

    /// Insert a key known to be absent (after `find` returned None) into the first empty or
    /// deleted slot of its probe sequence. Returns the slot index. The caller has made room
    /// (`!self.full()`).
    pub fn insert_new(&mut self, fp: u64, v: V) -> usize {
        let cap = self.slots.len();
        debug_assert!(cap > 0 && !self.full());
        let fp = norm(fp);
        let mut i = home(fp, cap);
        loop {
            let k = self.slots[i].0;
            if k == EMPTY || k == TOMB {
                if k == TOMB {
                    self.tombs -= 1;
                }
                self.slots[i] = (fp, v);
                self.live += 1;
                return i;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }

    /// Delete the live entry at `idx`. It becomes a tombstone, unless the slot after it is
    /// empty: then no probe run passes through `idx` (a run stops at an empty slot), so it is
    /// emptied instead, and so are the tombstones right before it, which no run needs either
    /// any more. No live entry moves, so slot indices held elsewhere (the wheel) stay valid.
    ///
    /// Why: keys that decay and come back (a client seen every few seconds under a short
    /// window) delete and insert at the same rate, and every tombstone brings the next re-pack
    /// closer; a re-pack costs O(shard) and re-schedules the shard's wheel. At 64–80 % load
    /// the next slot is empty about a quarter of the time, and each such delete also clears
    /// the tombstones that piled up just before it.
    pub fn remove_at(&mut self, idx: usize) {
        let cap = self.slots.len();
        if !matches!(self.slots.get(idx), Some(&(k, _)) if k > TOMB) {
            return;
        }
        self.live -= 1;
        let after = if idx + 1 == cap { 0 } else { idx + 1 };
        if self.slots[after].0 != EMPTY {
            self.slots[idx] = (TOMB, V::default());
            self.tombs += 1;
            return;
        }
        self.slots[idx] = (EMPTY, V::default());
        let mut i = idx;
        loop {
            i = if i == 0 { cap - 1 } else { i - 1 };
            if self.slots[i].0 != TOMB {
                break;
            }
            self.slots[i] = (EMPTY, V::default());
            self.tombs -= 1;
        }
    }

    /// Re-pack the live entries into `cap` slots (at least what they need). Slot indices
    /// change: the owner must rebuild anything that refers to them.
    pub fn rebuild(&mut self, cap: usize) {
        let cap = cap
            .max(self.len() * MAX_LOAD_DEN / MAX_LOAD_NUM + 1)
            .max(MIN_CAPACITY);
        // Large arrays come from the huge-page arena (src/arena.rs), small ones from malloc.
        let old = std::mem::replace(&mut self.slots, Slots::filled(cap, (EMPTY, V::default())));
        self.live = 0;
        self.tombs = 0;
        for &(k, v) in old.iter() {
            if k > TOMB {
                self.insert_new(k, v);
            }
        }
    }

    /// True when the table is mostly empty or mostly tombstones and worth re-packing smaller.
    pub fn sparse(&self) -> bool {
        let cap = self.slots.len();
        cap > MIN_CAPACITY * 4 && (self.len() * 5 < cap || self.tombs as usize * 2 > cap)
    }

    /// Live entries as (slot index, fingerprint, value).
    pub fn iter(&self) -> impl Iterator<Item = (usize, u64, V)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (k, _))| *k > TOMB)
            .map(|(i, &(k, v))| (i, k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(t: &mut FpTable<u64>, fp: u64, v: u64) -> usize {
        if let Some(i) = t.find(fp) {
            t.set_at(i, v);
            return i;
        }
        if t.full() {
            t.rebuild(t.grown_capacity());
        }
        t.insert_new(fp, v)
    }

    #[test]
    fn insert_find_remove_and_reuse() {
        let mut t = FpTable::<u64>::default();
        assert_eq!(t.get(5), None);
        for k in 1..=1000u64 {
            insert(&mut t, k.wrapping_mul(0x1234_5678_9abc_def1), k);
        }
        assert_eq!(t.len(), 1000);
        for k in 1..=1000u64 {
            assert_eq!(t.get(k.wrapping_mul(0x1234_5678_9abc_def1)), Some(k));
        }
        // Keys 0 and 1 are legal fingerprints.
        insert(&mut t, 0, 7);
        insert(&mut t, 1, 8);
        assert_eq!((t.get(0), t.get(1)), (Some(7), Some(8)));
        for k in 1..=500u64 {
            let i = t.find(k.wrapping_mul(0x1234_5678_9abc_def1)).unwrap();
            t.remove_at(i);
        }
        assert_eq!(t.len(), 502);
        for k in 1..=1000u64 {
            let want = if k <= 500 { None } else { Some(k) };
            assert_eq!(t.get(k.wrapping_mul(0x1234_5678_9abc_def1)), want);
        }
        assert!(t.sparse() || t.capacity() < 2000);
        t.rebuild(0);
        assert_eq!(t.len(), 502);
        assert_eq!(t.get(999u64.wrapping_mul(0x1234_5678_9abc_def1)), Some(999));
    }

    #[test]
    fn memory_per_key_stays_under_28_bytes_through_growth() {
        let mut t = FpTable::<u64>::default();
        let mut worst: f64 = 0.0;
        for k in 1..=200_000u64 {
            insert(&mut t, k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x55, k);
            if k > 1000 {
                worst = worst.max(t.bytes() as f64 / k as f64);
            }
        }
        // 16-byte slots at no less than 64 % load right after a rebuild (25 B), plus, for
        // arrays from the huge-page arena, at most 63 bytes of rounding to a cache line.
        assert!(worst <= 25.5, "worst bytes/key {worst}");
        // Past 32 KiB the slots live in the huge-page arena: every key is still found there.
        assert!(t.bytes() >= crate::arena::MIN_BYTES);
        for k in 1..=200_000u64 {
            assert_eq!(t.get(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x55), Some(k));
        }
    }

    proptest::proptest! {
        /// Inserts and deletes at random (few distinct keys, small tables, so probe runs wrap
        /// around and deletes empty runs of tombstones) against a map: every key present is
        /// found with its value, no deleted key is, and the counts match the slots.
        #[test]
        fn deletes_keep_every_probe_run_intact(
            ops in proptest::collection::vec((0u64..48, proptest::bool::ANY), 1..400)
        ) {
            let mut t = FpTable::<u64>::default();
            let mut model = std::collections::HashMap::new();
            for (n, (k, put)) in ops.into_iter().enumerate() {
                // Spread keys over the table, and make some share a home slot.
                let fp = (k % 24).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k / 24);
                if put {
                    insert(&mut t, fp, n as u64);
                    model.insert(fp, n as u64);
                } else if let Some(i) = t.find(fp) {
                    t.remove_at(i);
                    model.remove(&fp);
                }
                for (&fp, &v) in &model {
                    proptest::prop_assert_eq!(t.get(fp), Some(v));
                }
                for k in 0..48u64 {
                    let fp = (k % 24).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k / 24);
                    if !model.contains_key(&fp) {
                        proptest::prop_assert_eq!(t.get(fp), None);
                    }
                }
                let tombs = t.slots.iter().filter(|s| s.0 == TOMB).count();
                proptest::prop_assert_eq!(t.len(), model.len());
                proptest::prop_assert_eq!(t.tombs as usize, tombs);
            }
        }
    }

    /// Keys that decay and come back: delete a random key, insert a new one, 200k times over
    /// 4,000 live keys, counting re-packs. Deterministic (a fixed xorshift stream). With every
    /// delete leaving a tombstone this re-packed 131 times (each moving ~4,000 entries, and in
    /// the store re-scheduling as many wheel entries); emptying what no probe run needs makes
    /// it 76.
    #[test]
    fn churn_re_packs_less_than_with_a_tombstone_per_delete() {
        let mut t = FpTable::<u64>::default();
        let mut x = 0x1234_5678u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x | 4
        };
        let mut keys: Vec<u64> = (0..4000).map(|_| next()).collect();
        for &k in &keys {
            insert(&mut t, k, 1);
        }
        let mut re_packs = 0;
        for _ in 0..200_000 {
            let j = (next() % keys.len() as u64) as usize;
            let i = t.find(keys[j]).expect("live");
            t.remove_at(i);
            keys[j] = next();
            if t.full() {
                re_packs += 1;
                t.rebuild(t.grown_capacity());
            }
            t.insert_new(keys[j], 1);
        }
        println!("re-packs: {re_packs}");
        assert!(re_packs <= 100, "{re_packs} re-packs");
        assert_eq!(t.len(), 4000);
    }

    #[test]
    fn a_delete_before_an_empty_slot_leaves_no_tombstones_behind() {
        let mut t = FpTable::<u64>::default();
        t.rebuild(16);
        // Three keys with the same home slot: a run of three, then an empty slot.
        let fps: Vec<u64> = (2..u64::MAX)
            .filter(|&f| home(f, 16) == 5)
            .take(3)
            .collect();
        let at: Vec<usize> = fps.iter().map(|&f| t.insert_new(f, 1)).collect();
        assert_eq!(at, [5, 6, 7]);
        t.remove_at(5);
        t.remove_at(6);
        assert_eq!(
            t.tombs, 2,
            "slots 5 and 6 are passed through on the way to 7"
        );
        t.remove_at(7);
        assert_eq!(t.tombs, 0, "with 7 gone no run needs 5 and 6");
        assert!(t.slots.iter().all(|s| s.0 == EMPTY));
    }

    /// Random puts and deletes on a 16-slot table, with keys chosen by home slot and most of
    /// them homed around the wrap (13–15 and 0–2), checking the probe invariant itself: for
    /// every live entry at p with home h, no slot in [h, p) is empty.
    #[test]
    fn probe_runs_stay_unbroken_across_the_wrap() {
        for seed in 1..500u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut t = FpTable::<u64>::default();
            t.rebuild(16);
            let cap = t.capacity();
            assert_eq!(cap, 16);
            let homes = [13usize, 14, 15, 0, 1, 2, 7];
            let mut pool: Vec<u64> = Vec::new();
            for &h in &homes {
                pool.extend((2..u64::MAX).filter(|&f| home(f, cap) == h).take(3));
            }
            let mut model = std::collections::HashMap::new();
            for step in 0..200 {
                let fp = pool[(next() % pool.len() as u64) as usize];
                let op = next() % 3;
                if op != 0 {
                    if let Some(i) = t.find(fp) {
                        t.set_at(i, step);
                    } else if !t.full() {
                        t.insert_new(fp, step);
                    } else {
                        continue;
                    }
                    model.insert(fp, step);
                } else if let Some(i) = t.find(fp) {
                    t.remove_at(i);
                    model.remove(&fp);
                }
                for (p, s) in t.slots.iter().enumerate() {
                    if s.0 > TOMB {
                        let mut i = home(s.0, cap);
                        while i != p {
                            assert_ne!(t.slots[i].0, EMPTY, "seed {seed} step {step}");
                            i = (i + 1) % cap;
                        }
                    }
                }
                for &fp in &pool {
                    assert_eq!(
                        t.get(fp),
                        model.get(&fp).copied(),
                        "seed {seed} step {step}"
                    );
                }
                assert_eq!(t.len(), model.len());
                assert_eq!(
                    t.tombs as usize,
                    t.slots.iter().filter(|s| s.0 == TOMB).count()
                );
            }
        }
    }

    /// Fifteen tombstones and one live key: deleting the key must end (every slot after it is a
    /// tombstone, so it becomes one too) and leave a table in which lookups still end.
    #[test]
    fn a_table_of_tombstones_only_still_answers() {
        let mut t = FpTable::<u64>::default();
        t.rebuild(16);
        let fp = (2..u64::MAX).find(|&f| home(f, 16) == 0).unwrap();
        let i = t.insert_new(fp, 1);
        for j in 0..16 {
            if j != i {
                t.slots[j] = (TOMB, 0);
                t.tombs += 1;
            }
        }
        t.remove_at(i);
        assert_eq!(t.tombs, 16);
        assert_eq!(t.find(fp), None);
    }

    #[test]
    fn tombstones_do_not_hide_keys_and_full_is_honoured() {
        let mut t = FpTable::<u64>::default();
        t.rebuild(16);
        let mut n = 0;
        while !t.full() {
            t.insert_new(100 + n, n);
            n += 1;
        }
        assert!(n * 5 <= 16 * 4);
        let first = t.find(100).unwrap();
        t.remove_at(first);
        assert_eq!(t.get(100), None);
        for k in 1..n {
            assert_eq!(
                t.get(100 + k),
                Some(k),
                "key behind a tombstone is still found"
            );
        }
    }
}
