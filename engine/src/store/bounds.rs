//! The store's bounds: the eviction policy, the per-shard share of `--max-keys` and
//! `--maxmemory`, and how a shard makes room for a new key (reclaiming what is due, evicting
//! the entries nearest to decaying in batches, or refusing).
//!
//! Separate from the shard's tables because only a new key meets the bounds: a check of a
//! known key writes its slot in place and never comes here (see `Shard::gcra_store`).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::shard::{Rebuild, Shard, T_GCRA, T_WIN};
use crate::fingerprint::window_key;
use crate::wheel::{ref_index, ref_table, WheelRef};
use crate::Nanos;

/// What happens when a shard is at its bound and a new key arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Drop the keys nearest to decaying back to full: losing them changes the fewest answers.
    #[default]
    EvictNearest = 0,
    /// Keep every key; answer checks that would need a new key as allowed, without storing
    /// (fail-open).
    RefuseAllow = 1,
    /// Keep every key; deny checks that would need a new key (fail-closed).
    RefuseDeny = 2,
}

impl EvictionPolicy {
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::EvictNearest => "evict-nearest",
            EvictionPolicy::RefuseAllow => "refuse-allow",
            EvictionPolicy::RefuseDeny => "refuse-deny",
        }
    }

    pub fn from_name(name: &str) -> Option<EvictionPolicy> {
        [
            EvictionPolicy::EvictNearest,
            EvictionPolicy::RefuseAllow,
            EvictionPolicy::RefuseDeny,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    pub(super) fn from_u8(v: u8) -> EvictionPolicy {
        match v {
            1 => EvictionPolicy::RefuseAllow,
            2 => EvictionPolicy::RefuseDeny,
            _ => EvictionPolicy::EvictNearest,
        }
    }
}

/// The outcome of storing state for a key that may be new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    Stored,
    /// The shard is at its bound and the policy refuses new keys.
    Refused(EvictionPolicy),
}

/// Per-shard bounds, derived from the engine-wide ones; atomics so CONFIG SET can change them
/// while checks run.
#[derive(Debug)]
pub(crate) struct Bounds {
    pub(super) keys_per_shard: AtomicU64,
    pub(super) bytes_per_shard: AtomicU64,
    pub(super) policy: AtomicU8,
}

/// Due entries a new key at the bound may reclaim before it is refused or a live key evicted
/// (about 50 ns each: a 256-entry step is ~13 µs, paid only at the bound).
pub(super) const RECLAIM_PER_NEW_KEY: usize = 256;

impl Shard {
    fn table_full(&self, t: u32) -> bool {
        match t {
            T_GCRA => self.gcra.full(),
            T_WIN => self.win.full(),
            _ => self.cl.full(),
        }
    }

    /// Capacity and bytes table `t` would have after growing for one more key, and the bytes
    /// it has now.
    fn growth(&self, t: u32) -> (usize, usize, usize) {
        match t {
            T_GCRA => (
                self.gcra.grown_capacity(),
                self.gcra.grown_capacity() * 16,
                self.gcra.bytes(),
            ),
            T_WIN => (
                self.win.grown_capacity(),
                self.win.grown_capacity() * 32,
                self.win.bytes(),
            ),
            _ => (
                self.cl.grown_capacity(),
                self.cl.grown_capacity() * 16,
                self.cl.bytes(),
            ),
        }
    }

    /// While a check writes the windows of base fingerprint `fp` one by one, keep eviction
    /// (which a new window at the bound may start) off the windows it has written already:
    /// evicting one would charge some windows and not others. `n` = 0 ends it.
    pub fn keep_windows(&mut self, fp: u64, n: usize) {
        self.keep = (fp, n);
    }

    fn kept(&self, r: WheelRef) -> bool {
        let (fp, n) = self.keep;
        n > 0
            && matches!(ref_table(r), T_GCRA | T_WIN)
            && self
                .key_of(r)
                .is_some_and(|(_, k)| (0..n).any(|j| window_key(fp, j) == k))
    }

    /// Drop up to `n` entries nearest to decaying; returns how many were dropped.
    ///
    /// The wheel holds an entry where it was first scheduled, and hits that push its deadline
    /// later do not move it, so the earliest slot can hold a hot key that is nowhere near
    /// decaying — evicting it would hand an exhausted heavy hitter a fresh allowance. An entry
    /// found there with a later real deadline is put back at that deadline instead, up to a
    /// bound (then the next is evicted as found, so one call's work stays bounded).
    pub(super) fn evict(&mut self, n: usize) -> usize {
        let mut evicted = 0;
        let mut moves = 4 * n + 64;
        // Windows of the check being committed, taken out of the wheel and put back after.
        let mut aside = Vec::new();
        while evicted < n {
            let Some((r, slot_end)) = self.wheel.pop_nearest() else {
                break;
            };
            let Some(deadline) = self.deadline_of(r) else {
                continue;
            };
            if self.kept(r) {
                aside.push((r, deadline));
                continue;
            }
            if deadline > slot_end && moves > 0 {
                moves -= 1;
                self.wheel.schedule(r, deadline);
                continue;
            }
            if self.track {
                if let Some((t, k)) = self.key_of(r) {
                    self.mark(t, k);
                } else if let Some((k, _)) = self.kv.at(ref_index(r) as u32) {
                    let k: Box<[u8]> = k.into();
                    self.dirty_kv.push(k);
                }
            }
            self.remove_ref(r);
            evicted += 1;
        }
        for (r, deadline) in aside {
            self.wheel.schedule(r, deadline);
        }
        self.stats.evicted += evicted as u64;
        evicted
    }

    /// Make room for one new key in table `t` under the bounds; the policy if it refuses.
    /// `now` (0: unknown) lets entries already due be reclaimed first.
    pub(super) fn make_room(
        &mut self,
        t: u32,
        bounds: &Bounds,
        now: Nanos,
    ) -> Result<(), EvictionPolicy> {
        let max_keys =
            usize::try_from(bounds.keys_per_shard.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let max_bytes =
            usize::try_from(bounds.bytes_per_shard.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let over = |s: &Shard| {
            // `bytes()` walks the wheel's slot vectors: only worth it when there is a byte
            // bound (a growth comes often when short-lived keys churn through a small table).
            let over_bytes = max_bytes != usize::MAX && s.table_full(t) && {
                let (_, grown_bytes, table_bytes) = s.growth(t);
                s.bytes() - table_bytes + grown_bytes > max_bytes
            };
            (s.len() >= max_keys, over_bytes)
        };
        let (mut over_keys, mut over_bytes) = over(self);
        if (over_keys || over_bytes) && now > 0 {
            // Entries whose time has come may still be held: the background expiry steps are
            // bounded and can lag behind a mass expiry. Refusing a client (or evicting a live
            // key) while the shard is full of decayed entries would be for nothing, so reclaim
            // a bounded number of those first.
            let (_, dropped) = self.expire(now, RECLAIM_PER_NEW_KEY);
            if dropped > 0 {
                (over_keys, over_bytes) = over(self);
            }
        }
        if !over_keys && !over_bytes {
            if self.table_full(t) {
                let (cap, _, _) = self.growth(t);
                self.rebuild(Rebuild::Grow(t, cap));
            }
            return Ok(());
        }
        let policy = EvictionPolicy::from_u8(bounds.policy.load(Ordering::Relaxed));
        if policy != EvictionPolicy::EvictNearest {
            self.stats.refused += 1;
            return Err(policy);
        }
        // Evict a batch (1/8 of the shard, at least one) so that a re-pack — O(shard), the
        // dominant cost of a flood at the bound — is paid once per batch, not once per new
        // key.
        let batch = (self.len() / 8).max(1);
        if over_keys {
            self.evict(batch.max(self.len() + 1 - max_keys.min(self.len())));
            if self.len() >= max_keys {
                // Nothing evictable is left (items without an expiry, the windows of the
                // check being committed): the key is not stored.
                self.stats.refused += 1;
                return Err(policy);
            }
        }
        // Table `t` may still be too full to take the key without growing. A growth that fits
        // the byte bound is made (sized by its live entries, so tombstones left by the
        // evictions do not make it grow for nothing). Otherwise each round evicts a batch and
        // re-packs every table no larger than its live entries need: evicted entries of any
        // table give their bytes back, so the growth fits after a round or two. Evicting until
        // `t` itself had room would, while the nearest entries belong to other tables, empty
        // those tables one batch after another (every exhausted client of the shard let go).
        let grow_fits = |s: &Shard| {
            let (_, grown_bytes, table_bytes) = s.growth(t);
            max_bytes == usize::MAX || s.bytes() - table_bytes + grown_bytes <= max_bytes
        };
        while self.table_full(t) && !grow_fits(self) && self.evict(batch) > 0 {
            self.rebuild(Rebuild::Shrink);
        }
        if self.table_full(t) {
            // Within the bound, or nothing left to evict (a table at its minimum size).
            let (cap, _, _) = self.growth(t);
            self.rebuild(Rebuild::Grow(t, cap));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packing::pack;
    use crate::store::Store;

    const MS: u64 = 1_000_000;

    #[test]
    fn bounds_evict_nearest_or_refuse() {
        let s = Store::new(1, 0);
        s.set_bounds(Some(100), None, EvictionPolicy::EvictNearest);
        for k in 0..1_000u64 {
            // Later keys decay later.
            let put = s
                .lock(k + 10)
                .gcra_put(k + 10, pack(u128::from((k + 1) * MS), 1));
            assert_eq!(put, Put::Stored);
            assert!(s.len() <= 100);
        }
        assert!(s.stats().evicted >= 900);
        // The survivors are the keys that decay last.
        let shard = s.lock(0);
        assert!(shard.shard.gcra_get(1_009).is_some());
        assert!(shard.shard.gcra_get(10).is_none());
        drop(shard);

        let s = Store::new(1, 0);
        s.set_bounds(Some(10), None, EvictionPolicy::RefuseDeny);
        for k in 0..10u64 {
            assert_eq!(
                s.lock(k + 10).gcra_put(k + 10, pack(1_000_000, 1)),
                Put::Stored
            );
        }
        assert_eq!(
            s.lock(99).gcra_put(99, pack(1_000_000, 1)),
            Put::Refused(EvictionPolicy::RefuseDeny)
        );
        // Updating an existing key is always possible.
        assert_eq!(s.lock(10).gcra_put(10, pack(2_000_000, 1)), Put::Stored);
        assert_eq!(s.stats().refused, 1);
    }

    #[test]
    fn memory_bound_holds_under_a_flood() {
        let s = Store::new(16, 0);
        let max = 2 << 20;
        s.set_bounds(None, Some(max), EvictionPolicy::EvictNearest);
        for k in 0..200_000u64 {
            let fp = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            s.lock(fp).gcra_put(fp, pack(u128::from(1_000 * MS + k), 1));
        }
        assert!(
            s.bytes() <= max + max / 8,
            "bytes {} > bound {max}",
            s.bytes()
        );
        assert!(
            s.len() > 50_000,
            "the bound is used, not wasted: {}",
            s.len()
        );
    }
}
