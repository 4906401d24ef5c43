//! The sharded store: per shard, fingerprint-keyed tables of rate state, a timing wheel that
//! drops state once it has decayed back to "full", and the memory bound.
//!
//! Why this shape: the memory target is <= 32 bytes per tracked GCRA key at 1M keys, so a GCRA
//! entry is a 16-byte slot (fingerprint, packed TAT) in an [`FpTable`] plus a 4-byte wheel
//! reference, with no key bytes and no per-entry allocation. Sharding bounds lock contention;
//! a lock is held only for one check's read-modify-write, or for one bounded step of expiry.
//!
//! Three tables per shard, because their states differ in size and in how the "full again"
//! deadline is read from them:
//! - `gcra`: RL state of GCRA limits, `TAT in microseconds << 12 | shape id` (see `shape.rs`);
//! - `win`: RL state of fixed and sliding limits, `[deadline_us << 12 | shape id, cur, prev]`;
//! - `cl`: CL.THROTTLE state, the TAT in nanoseconds exactly as redis-cell keeps it.
//!
//! Fingerprints are chained, seeded xxh3 hashes of a namespace tag and the key's parts (see
//! [`fingerprint`]), so distinct inputs cannot collide by concatenation (("ab","c") vs
//! ("a","bc")) and RL state can never alias CL.THROTTLE state.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::fptable::FpTable;
use crate::kv::{Item, KvError, KvTable};
use crate::shape::SHAPE_BITS;
use crate::shardlock::{ShardGuard, ShardLock};
use crate::wheel::{ref_index, ref_table, wheel_ref, Wheel, WheelRef};
use crate::Nanos;

/// A namespace tag: the xxh3 hash of its name, computed at compile time (it seeds every
/// fingerprint of the namespace, and hashing the name on every check cost a few ns).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag(u64);

impl Tag {
    const fn of(name: &[u8]) -> Tag {
        Tag(xxhash_rust::const_xxh3::xxh3_64(name))
    }
}

/// Namespace tag of RL.* state, hashed over (client, endpoint).
pub(crate) const TAG_RL: Tag = Tag::of(b"rl");
/// Namespace tag of CL.THROTTLE state, hashed over the key.
pub(crate) const TAG_CL: Tag = Tag::of(b"cl");

/// Fingerprint of `parts` under `tag`: each part is hashed with xxh3, seeded by the hash of
/// the tag and the parts before it. Seeding (rather than concatenating) keeps ("ab", "c") and
/// ("a", "bc") apart without building a buffer, and costs one short xxh3 per part.
///
/// Always inlined: every caller passes a literal array, so inlined the loop unrolls into
/// straight-line hashing of exactly those parts. Left to itself the compiler kept it a call
/// with a loop over a slice of slices (8 % of a check's samples at 1k keys); inlined, a check
/// was faster in 5 of 7 interleaved rounds at 1k keys and 4 of 7 at 1M (docs/PERFORMANCE.md).
#[inline(always)]
pub(crate) fn fingerprint(tag: Tag, parts: &[&[u8]]) -> u64 {
    // Parts are hashed last-first, so the client (the part that varies most) goes last; any
    // fixed order would do as long as it never changes.
    let mut h = tag.0;
    for p in parts.iter().rev() {
        h = xxh3_64_with_seed(p, h);
    }
    h
}

/// Key of window `i` of a multi-window state whose base fingerprint is `fp`.
///
/// Window 0 is `fp` itself; others flip the low 48 bits by a mix of (fp, i). The top 16 bits
/// — the ones that choose the shard — are kept, so every window of one check lives in the same
/// shard (one lock covers them all) and any key can be put back in its shard from the key
/// alone, as a snapshot restore does.
pub(crate) fn window_key(fp: u64, i: usize) -> u64 {
    if i == 0 {
        return fp;
    }
    let mut z = fp ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    fp ^ (z & LOW_48).max(1)
}

const LOW_48: u64 = (1 << 48) - 1;

// ---------------------------------------------------------------------------------------------
// State words

const SHAPE_MASK: u64 = (1 << SHAPE_BITS) - 1;
/// Largest microsecond time a packed word holds (2^52 us: the year 2112).
const MAX_US: u128 = (1 << (64 - SHAPE_BITS)) - 1;

/// Pack a time (ns) and a shape id. The time is rounded *up* to the microsecond: state errs
/// on the strict side by under 1 us, never on the permissive side.
///
/// Inline, with the u128 path out of line: every charged check packs its new TAT, and as an
/// out-of-line call it was ~3 % of a check (`perf report` of `benches/engine.rs`).
#[inline]
pub(crate) fn pack(ns: u128, shape: u16) -> u64 {
    // Every real time fits u64 nanoseconds (until 2554), and a u128 division is a library
    // call that showed up as ~8 % of a check; the u128 path only serves degenerate windows.
    let us = match u64::try_from(ns) {
        Ok(ns) => u128::from(ns.div_ceil(1000)),
        Err(_) => us_wide(ns),
    };
    ((us.min(MAX_US) as u64) << SHAPE_BITS) | (u64::from(shape) & SHAPE_MASK)
}

#[cold]
fn us_wide(ns: u128) -> u128 {
    ns.div_ceil(1000)
}

/// Unpack a word made by [`pack`]: (time in ns, shape id).
pub(crate) fn unpack(w: u64) -> (Nanos, u16) {
    (
        (w >> SHAPE_BITS).saturating_mul(1000),
        (w & SHAPE_MASK) as u16,
    )
}

/// Which table a wheel reference points into.
const T_GCRA: u32 = 0;
const T_WIN: u32 = 1;
const T_CL: u32 = 2;
const T_KV: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Bounds

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

    fn from_u8(v: u8) -> EvictionPolicy {
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
    keys_per_shard: AtomicU64,
    bytes_per_shard: AtomicU64,
    policy: AtomicU8,
}

// ---------------------------------------------------------------------------------------------
// Shard

/// How [`Shard::rebuild`] sizes the tables.
#[derive(Debug, Clone, Copy)]
enum Rebuild {
    Keep,
    Fit,
    /// Each table at the smaller of its capacity and what its live entries need: gives the
    /// bytes of evicted entries back without growing any table.
    Shrink,
    Grow(u32, usize),
    /// At least these capacities for the GCRA, counting and CL.THROTTLE tables.
    AtLeast([usize; 3]),
}

/// Counters a shard keeps under its own lock (summed on read, never contended).
/// Due entries a new key at the bound may reclaim before it is refused or a live key evicted
/// (about 50 ns each: a 256-entry step is ~13 µs, paid only at the bound).
const RECLAIM_PER_NEW_KEY: usize = 256;

/// Wheel references a shard may hold beyond two per entry before it re-packs (see
/// [`Shard::schedule_another`]).
const WHEEL_SLACK: usize = 1024;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ShardStats {
    pub expired: u64,
    pub evicted: u64,
    pub refused: u64,
    /// Table re-packs (growth, tombstones, shrinking, reservations).
    pub rebuilds: u64,
}

/// `repr(C)`: the fields every RL.CHECK touches come first, so that with the lock word and
/// the prefetch hints before them they fill one cache line (see [`Padded`]).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Shard {
    gcra: FpTable<u64>,
    /// Whether writes are recorded for replication (off: no cost at all).
    track: bool,
    win: FpTable<[u64; 3]>,
    cl: FpTable<u64>,
    pub(crate) kv: KvTable,
    wheel: Wheel,
    pub stats: ShardStats,
    /// (base fingerprint, windows) of the multi-window check being committed, whose windows
    /// eviction must leave alone (0 windows: none); see [`Shard::keep_windows`].
    keep: (u64, usize),
    /// Rate-state entries written since the last drain: (table id, fingerprint).
    dirty: Vec<(u8, u64)>,
    /// Key-value keys written since the last drain.
    dirty_kv: Vec<Box<[u8]>>,
}

impl Shard {
    fn new(now: Nanos) -> Shard {
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

    #[inline]
    fn mark(&mut self, table: u32, key: u64) {
        if self.track {
            self.dirty.push((table as u8, key));
        }
    }

    #[inline]
    fn mark_kv(&mut self, key: &[u8]) {
        if self.track {
            self.dirty_kv.push(key.into());
        }
    }

    /// The fingerprint of the entry behind a wheel reference (for recording evictions).
    fn key_of(&self, r: WheelRef) -> Option<(u32, u64)> {
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
    fn deadline_of(&self, r: WheelRef) -> Option<Nanos> {
        let i = ref_index(r);
        match ref_table(r) {
            T_GCRA => self.gcra.at(i).map(|(_, w)| unpack(w).0),
            T_WIN => self.win.at(i).map(|(_, w)| unpack(w[0]).0),
            T_CL => self.cl.at(i).map(|(_, t)| t),
            T_KV => self.kv.at(i as u32).and_then(|(_, item)| item.expires_at),
            _ => None,
        }
    }

    fn remove_ref(&mut self, r: WheelRef) {
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
    fn rebuild(&mut self, how: Rebuild) {
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
    fn evict(&mut self, n: usize) -> usize {
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
    pub fn roll_back(&mut self, key: u64, state: crate::NewState) {
        match state {
            crate::NewState::Gcra(w) => {
                if let Some(i) = self.gcra.find(key) {
                    self.mark(T_GCRA, key);
                    self.gcra.set_at(i, w);
                }
            }
            crate::NewState::Counting(words) => {
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

    /// Make room for one new key in table `t` under the bounds; the policy if it refuses.
    /// `now` (0: unknown) lets entries already due be reclaimed first.
    fn make_room(&mut self, t: u32, bounds: &Bounds, now: Nanos) -> Result<(), EvictionPolicy> {
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

    // -- GCRA table --------------------------------------------------------------------------

    /// The packed GCRA word of `key`, live or decayed.
    pub fn gcra_get(&self, key: u64) -> Option<u64> {
        self.gcra.get(key)
    }

    /// The slot of `key` and its packed GCRA word, for a check that may then overwrite it in
    /// place ([`Locked::gcra_set`]) without probing the table a second time.
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
    /// kept the whole store out of line, and that call with its saved registers cost 27 of a
    /// check's 463 instructions (`benches/icount.sh`; docs/PERFORMANCE.md).
    #[inline(always)]
    fn gcra_store(
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
    fn cl_store(
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

    fn clear(&mut self, now: Nanos) {
        let (stats, track) = (self.stats, self.track);
        *self = Shard::new(now);
        self.stats = stats;
        self.track = track;
    }

    /// The words of a rate-state entry as they are now (None: absent).
    fn words_of(&self, table: u8, key: u64) -> Option<([u64; 3], usize)> {
        match u32::from(table) {
            T_GCRA => self.gcra.get(key).map(|w| ([w, 0, 0], 1)),
            T_WIN => self.win.get(key).map(|w| (w, 3)),
            T_CL => self.cl.get(key).map(|t| ([t, 0, 0], 1)),
            _ => None,
        }
    }
}

/// The shard a key-value key lives in is chosen from this fingerprint of it.
pub(crate) fn kv_fingerprint(key: &[u8]) -> u64 {
    fingerprint(TAG_KV, &[key])
}

/// Namespace tag of key-value keys (only used to pick their shard).
const TAG_KV: Tag = Tag::of(b"kv");

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
struct Padded {
    gcra_addr: AtomicUsize,
    gcra_cap: AtomicUsize,
    lock: ShardLock<Shard>,
    cl_addr: AtomicUsize,
    cl_cap: AtomicUsize,
}

impl Padded {
    fn publish(&self, shard: &Shard) {
        self.publish_gcra(shard);
        self.publish_cl(shard);
    }

    #[inline]
    fn publish_gcra(&self, shard: &Shard) {
        self.gcra_addr
            .store(shard.gcra.slots_addr(), Ordering::Relaxed);
        self.gcra_cap
            .store(shard.gcra.capacity(), Ordering::Relaxed);
    }

    fn publish_cl(&self, shard: &Shard) {
        self.cl_addr.store(shard.cl.slots_addr(), Ordering::Relaxed);
        self.cl_cap.store(shard.cl.capacity(), Ordering::Relaxed);
    }
}

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
/// One recorded write as [`Store::drain`] reads it back.
pub(crate) enum Drained<'a> {
    /// Rate state of (table, key): its words and how many are used, or None if it is gone.
    Rate(u8, u64, Option<([u64; 3], usize)>),
    /// A key-value item, or None if it was deleted.
    Kv(&'a [u8], Option<&'a Item>),
}

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

    /// Start or stop recording writes for replication.
    pub fn set_tracking(&self, on: bool) {
        for i in 0..self.shards.len() {
            let mut s = self.lock_index(i);
            s.track = on;
            if !on {
                s.dirty = Vec::new();
                s.dirty_kv = Vec::new();
            }
        }
    }

    /// Take every shard's recorded writes and read the entries' current state: one record per
    /// key however often it was written since the last drain (a hot key coalesces). The
    /// shard's dirty list is kept (emptied, not freed) so that steady writes do not allocate.
    pub fn drain(&self, mut visit: impl FnMut(Drained<'_>)) {
        for i in 0..self.shards.len() {
            let mut s = self.lock_index(i);
            if s.dirty.is_empty() && s.dirty_kv.is_empty() {
                continue;
            }
            let mut dirty = std::mem::take(&mut s.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for &(t, k) in &dirty {
                let words = s.words_of(t, k);
                visit(Drained::Rate(t, k, words));
            }
            dirty.clear();
            s.dirty = dirty;
            if !s.dirty_kv.is_empty() {
                let mut dirty_kv = std::mem::take(&mut s.dirty_kv);
                dirty_kv.sort_unstable();
                dirty_kv.dedup();
                for k in &dirty_kv {
                    let item = s.kv.slot(k).and_then(|i| s.kv.at(i)).map(|(_, it)| it);
                    visit(Drained::Kv(k, item));
                }
            }
        }
    }

    /// Apply a replicated rate-state record (None: delete), ignoring bounds as a restore does.
    pub fn apply(&self, table: u8, key: u64, words: Option<&[u64]>) {
        let mut locked = self.lock(key);
        let shard = &mut locked.shard;
        match words {
            Some(w) => {
                shard.restore(table, key, w);
            }
            None => match u32::from(table) {
                T_GCRA => {
                    shard.gcra_remove(key, 0);
                }
                T_WIN => {
                    shard.win_remove(key, 0);
                }
                T_CL => shard.cl_remove(key),
                _ => {}
            },
        }
    }

    /// Apply a replicated key-value record (None: delete).
    pub fn apply_kv(&self, key: &[u8], item: Option<Item>, now: Nanos) {
        let idx = self.shard_of(kv_fingerprint(key));
        let mut shard = self.lock_index(idx);
        match item {
            Some(item) => {
                let unbounded = Bounds {
                    keys_per_shard: AtomicU64::new(u64::MAX),
                    bytes_per_shard: AtomicU64::new(u64::MAX),
                    policy: AtomicU8::new(0),
                };
                let _ = shard.kv_put(key, item, now, &unbounded);
            }
            None => {
                shard.kv_delete(key);
            }
        }
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

    /// Random churn on one shard (puts, updates, deletes, expiry steps, and evictions under a
    /// key bound) against what the wheel relies on: every live entry has a wheel reference to
    /// its slot, and no entry is lost or altered. Slots must never move between re-packs, and
    /// deletes now turn tombstones back into empty slots: this is the check that neither
    /// strands an entry without its reference.
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
    fn tags_are_the_runtime_hashes_of_their_names() {
        use xxhash_rust::xxh3::xxh3_64;
        // Fingerprints are persisted (snapshots, replication): the compile-time hash must be
        // the very function the tags were hashed with before.
        for (tag, name) in [(TAG_RL, &b"rl"[..]), (TAG_CL, b"cl"), (TAG_KV, b"kv")] {
            assert_eq!(tag.0, xxh3_64(name));
        }
    }

    #[test]
    fn fingerprint_is_length_prefixed_and_tagged() {
        let a = fingerprint(TAG_RL, &[b"ab", b"c"]);
        let b = fingerprint(TAG_RL, &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_ne!(fingerprint(TAG_RL, &[b"k"]), fingerprint(TAG_CL, &[b"k"]));
        assert_eq!(a, fingerprint(TAG_RL, &[b"ab", b"c"]));
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

    #[test]
    fn pack_rounds_up_to_the_microsecond() {
        assert_eq!(unpack(pack(1_500, 7)), (2_000, 7));
        assert_eq!(unpack(pack(2_000, 4095)), (2_000, 4095));
        assert_eq!(unpack(pack(u128::MAX, 1)).1, 1);
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
