//! One shard of the store: fingerprint-keyed tables of rate state, the key-value items, and
//! a timing wheel that drops state once it has decayed back to "full".
//!
//! Three rate tables per shard, because their states differ in size and in how the "full
//! again" deadline is read from them:
//! - `gcra`: RL state of GCRA limits, `TAT in microseconds << 12 | shape id` (see `shape.rs`);
//! - `win`: RL state of fixed and sliding limits, `[deadline_us << 12 | shape id, cur, prev]`;
//! - `cl`: CL.THROTTLE state, the TAT in nanoseconds exactly as redis-cell keeps it.
//!
//! Every entry has a reference in the wheel ([`WheelRef`]: table id and slot index), so
//! re-packing a table re-schedules its entries. A shard is only ever used under its lock
//! (`store.rs`). How a new key meets the bounds is in `bounds.rs`; how writes are recorded
//! for replication, in `changes.rs`.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::fptable::FpTable;
use crate::kv::{Item, KvError, KvTable};
use crate::packing::unpack;
use crate::wheel::{ref_index, ref_table, wheel_ref, Wheel, WheelRef};
use crate::Nanos;

use super::bounds::{Bounds, EvictionPolicy, Put, RECLAIM_PER_NEW_KEY};

/// Which table a wheel reference points into.
pub(super) const T_GCRA: u32 = 0;
pub(super) const T_WIN: u32 = 1;
pub(super) const T_CL: u32 = 2;
pub(super) const T_KV: u32 = 3;

/// How [`Shard::rebuild`] sizes the tables.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rebuild {
    Keep,
    Fit,
    /// Each table at the smaller of its capacity and what its live entries need: gives the
    /// bytes of evicted entries back without growing any table.
    Shrink,
    Grow(u32, usize),
    /// At least these capacities for the GCRA, counting and CL.THROTTLE tables.
    AtLeast([usize; 3]),
}

/// Wheel references a shard may hold beyond two per entry before it re-packs (see
/// [`Shard::schedule_another`]).
const WHEEL_SLACK: usize = 1024;

/// Counters a shard keeps under its own lock (summed on read, never contended).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ShardStats {
    pub expired: u64,
    pub evicted: u64,
    pub refused: u64,
    /// Table re-packs (growth, tombstones, shrinking, reservations).
    pub rebuilds: u64,
}

/// `repr(C)`: the fields every RL.CHECK touches come first, so that with the lock word and
/// the prefetch hints before them they fill one cache line (see
/// [`Padded`](super::hints::Padded)).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Shard {
    pub(super) gcra: FpTable<u64>,
    /// Whether writes are recorded for replication (off: no cost at all).
    pub(super) track: bool,
    pub(super) win: FpTable<[u64; 3]>,
    pub(super) cl: FpTable<u64>,
    pub(crate) kv: KvTable,
    pub(super) wheel: Wheel,
    pub stats: ShardStats,
    /// (base fingerprint, windows) of the multi-window check being committed, whose windows
    /// eviction must leave alone (0 windows: none); see [`Shard::keep_windows`].
    pub(super) keep: (u64, usize),
    /// Rate-state entries written since the last drain: (table id, fingerprint).
    pub(super) dirty: Vec<(u8, u64)>,
    /// Key-value keys written since the last drain.
    pub(super) dirty_kv: Vec<Box<[u8]>>,
}

impl Shard {
    pub(super) fn new(now: Nanos) -> Shard {
        Shard {
            gcra: FpTable::default(),
            win: FpTable::default(),
            cl: FpTable::default(),
            kv: KvTable::default(),
            wheel: Wheel::new(now),
            stats: ShardStats::default(),
            track: false,
            keep: (0, 0),
            dirty: Vec::new(),
            dirty_kv: Vec::new(),
        }
    }

    /// The fingerprint of the entry behind a wheel reference (for recording evictions).
    pub(super) fn key_of(&self, r: WheelRef) -> Option<(u32, u64)> {
        let i = ref_index(r);
        match ref_table(r) {
            T_GCRA => self.gcra.at(i).map(|(k, _)| (T_GCRA, k)),
            T_WIN => self.win.at(i).map(|(k, _)| (T_WIN, k)),
            T_CL => self.cl.at(i).map(|(k, _)| (T_CL, k)),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.gcra.len() + self.win.len() + self.cl.len() + self.kv.len()
    }

    pub fn bytes(&self) -> usize {
        self.gcra.bytes()
            + self.win.bytes()
            + self.cl.bytes()
            + self.kv.bytes()
            + self.wheel.bytes()
    }

    /// The moment the entry behind `r` is full again, if it is live.
    pub(super) fn deadline_of(&self, r: WheelRef) -> Option<Nanos> {
        let i = ref_index(r);
        match ref_table(r) {
            T_GCRA => self.gcra.at(i).map(|(_, w)| unpack(w).0),
            T_WIN => self.win.at(i).map(|(_, w)| unpack(w[0]).0),
            T_CL => self.cl.at(i).map(|(_, t)| t),
            T_KV => self.kv.at(i as u32).and_then(|(_, item)| item.expires_at),
            _ => None,
        }
    }

    pub(super) fn remove_ref(&mut self, r: WheelRef) {
        let i = ref_index(r);
        match ref_table(r) {
            T_GCRA => self.gcra.remove_at(i),
            T_WIN => self.win.remove_at(i),
            T_CL => self.cl.remove_at(i),
            T_KV => self.kv.remove_at(i as u32),
            _ => {}
        }
    }

    /// Re-pack every table and re-schedule every entry, since slot indices change. `Keep`
    /// keeps each table's capacity (after evictions), `Fit` sizes each for its live entries
    /// (to give memory back after a mass expiry), `Grow` gives one table the capacity asked.
    pub(super) fn rebuild(&mut self, how: Rebuild) {
        self.stats.rebuilds += 1;
        let cap = |t: u32, current: usize, live: usize| match how {
            Rebuild::Grow(g, c) if g == t => c,
            Rebuild::Fit => FpTable::<u64>::capacity_for(live),
            Rebuild::Shrink => current.min(FpTable::<u64>::capacity_for(live)),
            Rebuild::AtLeast(caps) => current.max(caps[t as usize]),
            _ => current,
        };
        // A table never allocated stays so unless it is the one growing: re-packing it would
        // give it its minimum size, memory taken from the bound for nothing.
        let cap = |t: u32, current: usize, live: usize| {
            let asked = match how {
                Rebuild::Grow(g, _) => g == t,
                Rebuild::AtLeast(caps) => caps[t as usize] > 0,
                _ => false,
            };
            (current > 0 || live > 0 || asked).then(|| cap(t, current, live))
        };
        if let Some(c) = cap(T_GCRA, self.gcra.capacity(), self.gcra.len()) {
            self.gcra.rebuild(c);
        }
        if let Some(c) = cap(T_WIN, self.win.capacity(), self.win.len()) {
            self.win.rebuild(c);
        }
        if let Some(c) = cap(T_CL, self.cl.capacity(), self.cl.len()) {
            self.cl.rebuild(c);
        }
        self.wheel.clear();
        for (i, _, w) in self.gcra.iter() {
            self.wheel.schedule(wheel_ref(T_GCRA, i), unpack(w).0);
        }
        for (i, _, w) in self.win.iter() {
            self.wheel.schedule(wheel_ref(T_WIN, i), unpack(w[0]).0);
        }
        for (i, _, t) in self.cl.iter() {
            self.wheel.schedule(wheel_ref(T_CL, i), t);
        }
        for (i, _, item) in self.kv.iter() {
            if let Some(at) = item.expires_at {
                self.wheel.schedule(wheel_ref(T_KV, i as usize), at);
            }
        }
    }

    /// One bounded step of expiry: look at up to `budget` entries whose wheel slot came due;
    /// drop those that are full again, re-schedule the others by their real deadline.
    /// Returns (entries looked at, entries dropped).
    pub fn expire(&mut self, now: Nanos, budget: usize) -> (usize, usize) {
        self.wheel.collect_due(now);
        let mut removed = 0;
        let mut looked = 0;
        while looked < budget {
            let Some(r) = self.wheel.pop_pending() else {
                break;
            };
            looked += 1;
            match self.deadline_of(r) {
                None => {} // Deleted or moved since it was scheduled.
                Some(d) if d <= now => {
                    self.remove_ref(r);
                    removed += 1;
                }
                Some(d) => self.wheel.schedule(r, d),
            }
        }
        self.stats.expired += removed as u64;
        if removed > 0
            && !self.wheel.has_pending()
            && (self.gcra.sparse() || self.win.sparse() || self.cl.sparse())
        {
            // Give memory back after a mass expiry.
            self.rebuild(Rebuild::Fit);
        }
        (looked, removed)
    }

    /// Put back the state `key` had before a multi-window check wrote it, when a later window
    /// of the same check was refused. The entry's wheel reference still stands for that older
    /// deadline, so this writes the slot only: scheduling as for a deadline moved earlier
    /// would add a reference per refused check, and each lives as long as the entry.
    pub fn roll_back(&mut self, key: u64, state: crate::decision::NewState) {
        match state {
            crate::decision::NewState::Gcra(w) => {
                if let Some(i) = self.gcra.find(key) {
                    self.mark(T_GCRA, key);
                    self.gcra.set_at(i, w);
                }
            }
            crate::decision::NewState::Counting(words) => {
                if let Some(i) = self.win.find(key) {
                    self.mark(T_WIN, key);
                    self.win.set_at(i, words);
                }
            }
        }
    }

    /// After an existing entry of table `t` at slot `i` was rewritten from deadline `old` to
    /// `new`: a deadline moved earlier (state rescaled to a shorter window, a replicated or
    /// restored write) gets a wheel reference of its own. The one the entry has fires at the
    /// old deadline, and until then the decayed entry would hold memory and count as a key
    /// (DBSIZE, `--max-keys`) — up to 30 days. A later deadline needs nothing: the old
    /// reference finds it when it fires (the common case: a hit). The extra reference is
    /// harmless: whichever of the two fires second finds the entry gone or re-schedules it.
    #[inline]
    fn schedule_if_earlier(&mut self, t: u32, i: usize, old: Option<Nanos>, new: Nanos) {
        if old.is_some_and(|old| new < old) {
            self.schedule_another(wheel_ref(t, i), new);
        }
    }

    /// Schedule a reference that may be an entry's second: a deadline moved earlier, or a new
    /// entry in a slot whose removed entry's reference is still in the wheel (removals leave
    /// theirs, to be found stale when they fire). A reference that fires before its entry's
    /// deadline is re-scheduled, so such duplicates live as long as the entry: a client
    /// alternating RL.RESET and RL.CHECK added one per round, without bound and outside
    /// `--maxmemory`. Past twice the entries (and some slack, so that small shards do not
    /// re-pack often), the shard is re-packed, which schedules every entry exactly once: O(shard)
    /// after at least as many additions, so O(1) per addition.
    #[inline(never)]
    fn schedule_another(&mut self, r: WheelRef, deadline: Nanos) {
        self.wheel.schedule(r, deadline);
        if self.wheel.len() > 2 * self.len() + WHEEL_SLACK {
            self.rebuild(Rebuild::Keep);
        }
    }

    // -- GCRA table --------------------------------------------------------------------------

    /// The packed GCRA word of `key`, live or decayed.
    pub fn gcra_get(&self, key: u64) -> Option<u64> {
        self.gcra.get(key)
    }

    /// The slot of `key` and its packed GCRA word, for a check that may then overwrite it in
    /// place ([`Locked::gcra_set`](super::Locked::gcra_set)) without probing the table a second time.
    #[inline]
    pub fn gcra_slot(&self, key: u64) -> Option<(usize, u64)> {
        let i = self.gcra.find(key)?;
        self.gcra.at(i).map(|(_, w)| (i, w))
    }

    pub fn gcra_put(&mut self, key: u64, word: u64, bounds: &Bounds, now: Nanos) -> Put {
        let slot = self.gcra_slot(key);
        self.gcra_store(key, slot, word, bounds, now)
    }

    /// Store `word` for `key`, whose slot and word there (None: absent) were found under the
    /// same lock: an existing key is written in place, a new one goes through the bounds.
    ///
    /// Only the write in place, which every check of a known key makes, is inlined into the
    /// check; a new key's way through the bounds stays a call. As one function, the compiler
    /// keeps the whole store out of line, and that call with its saved registers costs a check
    /// 27 instructions: 463 per check against 436.7 (`benches/icount.sh`; docs/PERFORMANCE.md).
    #[inline(always)]
    pub(super) fn gcra_store(
        &mut self,
        key: u64,
        slot: Option<(usize, u64)>,
        word: u64,
        bounds: &Bounds,
        now: Nanos,
    ) -> Put {
        match slot {
            Some((i, old)) => {
                self.mark(T_GCRA, key);
                self.gcra.set_at(i, word);
                self.schedule_if_earlier(T_GCRA, i, Some(unpack(old).0), unpack(word).0);
                Put::Stored
            }
            None => self.gcra_store_new(key, word, bounds, now),
        }
    }

    #[inline(never)]
    fn gcra_store_new(&mut self, key: u64, word: u64, bounds: &Bounds, now: Nanos) -> Put {
        self.mark(T_GCRA, key);
        if let Err(p) = self.make_room(T_GCRA, bounds, now) {
            return Put::Refused(p);
        }
        self.forget_other_algorithm(T_GCRA, key, now);
        let i = self.gcra.insert_new(key, word);
        self.schedule_another(wheel_ref(T_GCRA, i), unpack(word).0);
        Put::Stored
    }

    /// A key new to table `t` (GCRA, or fixed/sliding) that the other one holds: its limit
    /// switched algorithm, and state of one kind cannot be read as the other, so the switch
    /// starts the key afresh. The other table's entry goes, or a switch back would find it
    /// and rescale it as if the time spent under the other algorithm had not happened (10/1h
    /// used up, an hour under fixed, then 1000/1h GCRA: denied). Only new keys pay this probe,
    /// and only while the other table holds anything.
    fn forget_other_algorithm(&mut self, t: u32, key: u64, now: Nanos) {
        if t == T_GCRA && !self.win.is_empty() {
            self.win_remove(key, now);
        } else if t == T_WIN && !self.gcra.is_empty() {
            self.gcra_remove(key, now);
        }
    }

    /// Remove `key`; true if it held live state at `now`.
    pub fn gcra_remove(&mut self, key: u64, now: Nanos) -> bool {
        match self.gcra.find(key) {
            Some(i) => {
                self.mark(T_GCRA, key);
                let live = self.gcra.at(i).is_some_and(|(_, w)| unpack(w).0 > now);
                self.gcra.remove_at(i);
                live
            }
            None => false,
        }
    }

    // -- counting-algorithm table --------------------------------------------------------------

    pub fn win_get(&self, key: u64) -> Option<[u64; 3]> {
        self.win.get(key)
    }

    pub fn win_put(&mut self, key: u64, state: [u64; 3], bounds: &Bounds, now: Nanos) -> Put {
        self.mark(T_WIN, key);
        if let Some(i) = self.win.find(key) {
            let old = self.win.at(i).map(|(_, w)| unpack(w[0]).0);
            self.win.set_at(i, state);
            self.schedule_if_earlier(T_WIN, i, old, unpack(state[0]).0);
            return Put::Stored;
        }
        if let Err(p) = self.make_room(T_WIN, bounds, now) {
            return Put::Refused(p);
        }
        self.forget_other_algorithm(T_WIN, key, now);
        let i = self.win.insert_new(key, state);
        self.schedule_another(wheel_ref(T_WIN, i), unpack(state[0]).0);
        Put::Stored
    }

    pub fn win_remove(&mut self, key: u64, now: Nanos) -> bool {
        match self.win.find(key) {
            Some(i) => {
                self.mark(T_WIN, key);
                let live = self.win.at(i).is_some_and(|(_, w)| unpack(w[0]).0 > now);
                self.win.remove_at(i);
                live
            }
            None => false,
        }
    }

    // -- CL.THROTTLE table ---------------------------------------------------------------------

    /// Slot index and stored TAT of a CL.THROTTLE key, if present (see [`Shard::gcra_slot`]).
    #[inline]
    pub fn cl_slot(&self, key: u64) -> Option<(usize, Nanos)> {
        let i = self.cl.find(key)?;
        self.cl.at(i).map(|(_, t)| (i, t))
    }

    pub fn cl_put(&mut self, key: u64, tat: Nanos, bounds: &Bounds, now: Nanos) -> Put {
        let slot = self.cl_slot(key);
        self.cl_store(key, slot, tat, bounds, now)
    }

    /// [`Shard::gcra_store`] for CL.THROTTLE's table: the in-place write inlined, a new key's
    /// way through the bounds a call.
    #[inline(always)]
    pub(super) fn cl_store(
        &mut self,
        key: u64,
        slot: Option<(usize, Nanos)>,
        tat: Nanos,
        bounds: &Bounds,
        now: Nanos,
    ) -> Put {
        match slot {
            Some((i, old)) => {
                self.mark(T_CL, key);
                self.cl.set_at(i, tat);
                self.schedule_if_earlier(T_CL, i, Some(old), tat);
                Put::Stored
            }
            None => self.cl_store_new(key, tat, bounds, now),
        }
    }

    #[inline(never)]
    fn cl_store_new(&mut self, key: u64, tat: Nanos, bounds: &Bounds, now: Nanos) -> Put {
        self.mark(T_CL, key);
        if let Err(p) = self.make_room(T_CL, bounds, now) {
            return Put::Refused(p);
        }
        let i = self.cl.insert_new(key, tat);
        self.schedule_another(wheel_ref(T_CL, i), tat);
        Put::Stored
    }

    pub fn cl_remove(&mut self, key: u64) {
        if let Some(i) = self.cl.find(key) {
            self.mark(T_CL, key);
            self.cl.remove_at(i);
        }
    }

    // -- key-value items -----------------------------------------------------------------------

    /// The item of `key` if it is live at `now` (an expired one reads as absent).
    pub fn kv_get(&self, key: &[u8], now: Nanos) -> Option<&Item> {
        let idx = self.kv.slot(key)?;
        let (_, item) = self.kv.at(idx)?;
        match item.expires_at {
            Some(at) if at <= now => None,
            _ => Some(item),
        }
    }

    /// Store (or replace) `key`'s item, scheduling its expiry. A new key must fit the bounds.
    pub fn kv_put(
        &mut self,
        key: &[u8],
        item: Item,
        now: Nanos,
        bounds: &Bounds,
    ) -> Result<(), KvError> {
        self.mark_kv(key);
        let expires_at = item.expires_at;
        match self.kv.slot(key) {
            Some(idx) => {
                let old_expiry = self.kv.at(idx).and_then(|(_, i)| i.expires_at);
                self.kv.replace(idx, item);
                // A later expiry is found when the old slot fires; an earlier or new one needs
                // its own wheel entry.
                if let Some(at) = expires_at {
                    if old_expiry.is_none_or(|old| at < old || old <= now) {
                        self.schedule_another(wheel_ref(T_KV, idx as usize), at);
                    }
                }
            }
            None => {
                let max_keys = usize::try_from(bounds.keys_per_shard.load(Ordering::Relaxed))
                    .unwrap_or(usize::MAX);
                let max_bytes = usize::try_from(bounds.bytes_per_shard.load(Ordering::Relaxed))
                    .unwrap_or(usize::MAX);
                let cost = item.cost(key.len());
                // The slab's growth is part of the cost, worked out afresh after evictions:
                // evicted items free slab slots, and an emptied slab starts over from none.
                // (`bytes()` walks the wheel's slot vectors: only with a byte bound.)
                let room = |s: &Shard| {
                    s.len() < max_keys
                        && (max_bytes == usize::MAX
                            || s.bytes() + cost + s.kv.insert_growth() <= max_bytes)
                };
                if !room(self) {
                    let policy = EvictionPolicy::from_u8(bounds.policy.load(Ordering::Relaxed));
                    if now > 0 {
                        // As for rate state (`make_room`): what is already due goes first.
                        self.expire(now, RECLAIM_PER_NEW_KEY);
                    }
                    if !room(self) && policy == EvictionPolicy::EvictNearest {
                        if self.len() >= max_keys {
                            self.evict(self.len() + 1 - max_keys);
                        }
                        // Evicted rate entries give their bytes back only when their table
                        // is re-packed: evict by batches, each followed by a re-pack. One
                        // entry at a time, nothing came back and every entry of the shard
                        // was evicted before the item was refused all the same.
                        let batch = (self.len() / 8).max(1);
                        while !room(self) && self.evict(batch) > 0 {
                            self.rebuild(Rebuild::Shrink);
                        }
                    }
                    if !room(self) {
                        self.stats.refused += 1;
                        return Err(KvError::OutOfMemory);
                    }
                }
                let idx = self.kv.insert(key, item);
                if let Some(at) = expires_at {
                    self.schedule_another(wheel_ref(T_KV, idx as usize), at);
                }
            }
        }
        Ok(())
    }

    pub fn kv_delete(&mut self, key: &[u8]) -> bool {
        match self.kv.slot(key) {
            Some(idx) => {
                self.mark_kv(key);
                self.kv.remove_at(idx);
                true
            }
            None => false,
        }
    }

    /// Every live entry, for snapshots: (table id, fingerprint, words).
    pub fn for_each(&self, mut f: impl FnMut(u8, u64, &[u64])) {
        for (_, k, w) in self.gcra.iter() {
            f(T_GCRA as u8, k, &[w]);
        }
        for (_, k, w) in self.win.iter() {
            f(T_WIN as u8, k, &w);
        }
        for (_, k, t) in self.cl.iter() {
            f(T_CL as u8, k, &[t]);
        }
    }

    /// Make room for `more` new entries in the GCRA, counting and CL.THROTTLE tables at once,
    /// before a snapshot is loaded.
    ///
    /// Why: a snapshot lists each shard's entries in slot order, i.e. sorted by the position
    /// their fingerprints hash to. Loaded into tables that grow as they fill, the first half
    /// of the entries all hash into the first half of a table sized for them: one run of
    /// occupied slots as long as the table, which every insertion and every re-pack probes
    /// to its end. Loading 3M keys into a replica took minutes of CPU that way. Sized for
    /// the whole load first, the entries spread over the table as they arrive.
    pub fn reserve(&mut self, more: [usize; 3]) {
        let need = |t: u32, len: usize, cap: usize| {
            let want = FpTable::<u64>::capacity_for(len + more[t as usize]);
            if more[t as usize] > 0 && want > cap {
                want
            } else {
                0
            }
        };
        let caps = [
            need(T_GCRA, self.gcra.len(), self.gcra.capacity()),
            need(T_WIN, self.win.len(), self.win.capacity()),
            need(T_CL, self.cl.len(), self.cl.capacity()),
        ];
        if caps.iter().any(|&c| c > 0) {
            self.rebuild(Rebuild::AtLeast(caps));
        }
    }

    /// Insert an entry read from a snapshot (ignoring bounds: a snapshot was within them).
    pub fn restore(&mut self, table: u8, key: u64, words: &[u64]) -> bool {
        let unbounded = Bounds {
            keys_per_shard: AtomicU64::new(u64::MAX),
            bytes_per_shard: AtomicU64::new(u64::MAX),
            policy: AtomicU8::new(0),
        };
        match (u32::from(table), words) {
            (T_GCRA, &[w]) => self.gcra_put(key, w, &unbounded, 0) == Put::Stored,
            (T_WIN, &[a, b, c]) => self.win_put(key, [a, b, c], &unbounded, 0) == Put::Stored,
            (T_CL, &[t]) => self.cl_put(key, t, &unbounded, 0) == Put::Stored,
            _ => false,
        }
    }

    pub(super) fn clear(&mut self, now: Nanos) {
        let (stats, track) = (self.stats, self.track);
        *self = Shard::new(now);
        self.stats = stats;
        self.track = track;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packing::pack;

    /// Random churn on one shard (puts, updates, deletes, expiry steps, and evictions under a
    /// key bound) against what the wheel relies on: every live entry has a wheel reference to
    /// its slot, and no entry is lost or altered. Slots must never move between re-packs, and
    /// a delete may turn tombstones back into empty slots: this checks that neither strands an
    /// entry without its reference.
    #[test]
    fn churn_keeps_every_live_entry_and_its_wheel_reference() {
        const TICK: u64 = 1 << 22;
        for seed in 1..9u64 {
            for bounded in [false, true] {
                let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let mut now: u64 = 1_000 * TICK;
                let mut shard = Shard::new(now);
                let bounds = Bounds {
                    keys_per_shard: AtomicU64::new(if bounded { 300 } else { u64::MAX }),
                    bytes_per_shard: AtomicU64::new(u64::MAX),
                    policy: AtomicU8::new(0),
                };
                let keys: Vec<u64> = (0..600).map(|_| next() | 4).collect();
                let mut model: std::collections::HashMap<u64, u64> = Default::default();
                for step in 0..5_000 {
                    let k = keys[(next() % keys.len() as u64) as usize];
                    match next() % 10 {
                        0..=5 => {
                            let dl = now + (next() % 200) * TICK;
                            let w = pack(u128::from(dl), 1);
                            assert_eq!(shard.gcra_put(k, w, &bounds, 0), Put::Stored);
                            model.insert(k, w);
                        }
                        6..=7 => {
                            shard.gcra_remove(k, now);
                            model.remove(&k);
                        }
                        _ => {
                            now += (next() % 20) * TICK;
                            shard.expire(now, 1_000_000);
                        }
                    }
                    // Entries the shard dropped by itself: expiry (decayed) or eviction.
                    let ev = shard.stats.evicted;
                    model.retain(|k, w| match shard.gcra.get(*k) {
                        Some(got) => {
                            assert_eq!(got, *w, "seed {seed} step {step}: altered");
                            true
                        }
                        None => {
                            assert!(
                                unpack(*w).0 <= now || (bounded && ev > 0),
                                "seed {seed} step {step}: live entry lost"
                            );
                            false
                        }
                    });
                    assert_eq!(shard.gcra.len(), model.len());
                    if step % 97 == 0 {
                        let refs: std::collections::HashSet<WheelRef> =
                            shard.wheel.all_refs().into_iter().collect();
                        for (i, _, _) in shard.gcra.iter() {
                            assert!(
                                refs.contains(&wheel_ref(T_GCRA, i)),
                                "seed {seed} step {step}: live slot {i} has no wheel ref"
                            );
                        }
                    }
                }
            }
        }
    }
}
