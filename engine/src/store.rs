//! The sharded map from a 64-bit key fingerprint to its GCRA state (one TAT, u64 ns).
//!
//! Why this shape: the project's memory target is <= 32 bytes per tracked key at 1M keys, so
//! an entry is just `(u64 fingerprint, u64 TAT)` — 16 bytes plus hashbrown's 1 control byte —
//! with no key bytes, no per-entry allocation and no TTL field (a TAT at or before now *is*
//! the expiry: such an entry is indistinguishable from an absent one). Sharding bounds lock
//! contention; a lock is held only for one check's read-modify-write of one shard.
//!
//! Fingerprints are xxh3 over a length-prefixed, namespace-tagged encoding so that distinct
//! inputs cannot collide by concatenation (("ab","c") vs ("a","bc")) and RL state can never
//! alias CL.THROTTLE state.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::Nanos;

/// Namespace tag of RL.* state, hashed over (client, endpoint).
pub(crate) const TAG_RL: &[u8] = b"rl";
/// Namespace tag of CL.THROTTLE state, hashed over the key.
pub(crate) const TAG_CL: &[u8] = b"cl";

/// Fingerprint of `parts` under `tag`: xxh3_64 of `tag || (len_u64_le || bytes)*`.
///
/// Short inputs (the common case) are encoded on the stack and hashed one-shot; longer ones
/// go through the streaming hasher, which yields the same value for the same bytes.
pub(crate) fn fingerprint(tag: &[u8], parts: &[&[u8]]) -> u64 {
    const STACK: usize = 256;
    let total = tag.len() + parts.iter().map(|p| 8 + p.len()).sum::<usize>();
    if total <= STACK {
        let mut buf = [0u8; STACK];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(tag);
        for p in parts {
            put(&(p.len() as u64).to_le_bytes());
            put(p);
        }
        xxh3_64(&buf[..total])
    } else {
        let mut h = Xxh3Default::new();
        h.update(tag);
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.digest()
    }
}

/// Key of window `i` of a multi-window state whose base fingerprint is `fp`.
///
/// Window 0 is `fp` itself; others go through a bijective mix (xor a per-index odd constant,
/// then the splitmix64 finalizer) so distinct windows of one check get unrelated keys. The
/// shard is always chosen from the base `fp` (see [`Store::shard_of`]), so all windows of one
/// check share one shard and one lock.
pub(crate) fn window_key(fp: u64, i: usize) -> u64 {
    if i == 0 {
        return fp;
    }
    let mut z = fp ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A near-identity hasher for keys that already are good 64-bit hashes.
///
/// Why not a plain identity: hashbrown indexes buckets with the low bits and tags each slot
/// with the top 7 bits, while the shard is chosen from the top bits of the fingerprint — so
/// under a true identity every key in a shard would carry the same tag and every probe would
/// fall back to comparing keys. One multiply by an odd constant (a bijection) spreads all 64
/// bits into the top bits and leaves the (already random) low bits random.
#[derive(Default, Clone, Copy)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are ever hashed; fold anything else in so the hasher stays total.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Fingerprint -> TAT (ns). 16 bytes + 1 control byte per entry.
pub(crate) type ShardMap = HashMap<u64, Nanos, BuildHasherDefault<FingerprintHasher>>;

/// One shard, padded to its own cache lines so neighbouring locks do not false-share.
#[repr(align(128))]
struct Shard(Mutex<ShardMap>);

pub(crate) struct Store {
    shards: Box<[Shard]>,
    /// 64 - log2(shard count): the shift that turns a fingerprint's top bits into an index.
    /// `None` with a single shard (a shift by 64 would be invalid).
    shift: Option<u32>,
    /// Next shard `purge_decayed` scans, so successive calls sweep the whole store.
    purge_cursor: AtomicUsize,
}

impl Store {
    /// `shards` is rounded up to a power of two (at least 1).
    pub fn new(shards: usize) -> Store {
        let n = shards.max(1).checked_next_power_of_two().unwrap_or(1 << 16);
        let bits = n.trailing_zeros();
        Store {
            shards: (0..n)
                .map(|_| Shard(Mutex::new(ShardMap::default())))
                .collect(),
            shift: (bits > 0).then(|| 64 - bits),
            purge_cursor: AtomicUsize::new(0),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shard index from the top bits of `fp` (the map itself uses the low bits).
    fn shard_of(&self, fp: u64) -> usize {
        self.shift.map_or(0, |s| (fp >> s) as usize)
    }

    /// Lock the shard holding `fp` (and all its windows). A poisoned lock is taken over: every
    /// update is a single insert/remove, so a panic elsewhere cannot leave a half-written map.
    pub fn lock(&self, fp: u64) -> MutexGuard<'_, ShardMap> {
        self.lock_index(self.shard_of(fp))
    }

    fn lock_index(&self, i: usize) -> MutexGuard<'_, ShardMap> {
        self.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Live entries; decayed ones are dropped as they are met (one shard locked at a time).
    pub fn count_live(&self, now: Nanos) -> u64 {
        (0..self.shards.len())
            .map(|i| {
                let mut m = self.lock_index(i);
                m.retain(|_, tat| *tat > now);
                m.len() as u64
            })
            .sum()
    }

    /// Remove up to `budget` decayed entries, sweeping shards round-robin from the cursor.
    pub fn purge_decayed(&self, now: Nanos, budget: usize) -> usize {
        let n = self.shards.len();
        let mut removed = 0;
        for _ in 0..n {
            if removed >= budget {
                break;
            }
            let i = self.purge_cursor.fetch_add(1, Ordering::Relaxed) % n;
            let mut m = self.lock_index(i);
            m.retain(|_, tat| {
                if *tat <= now && removed < budget {
                    removed += 1;
                    false
                } else {
                    true
                }
            });
        }
        removed
    }

    /// Approximate bytes of the shard tables: buckets x (16-byte entry + 1 control byte), plus
    /// one control group per non-empty table.
    pub fn memory_bytes(&self) -> u64 {
        (0..self.shards.len())
            .map(|i| {
                let cap = self.lock_index(i).capacity() as u64;
                // hashbrown keeps at most 7/8 of buckets full (all but one below 8 buckets).
                let buckets = match cap {
                    0 => 0,
                    1..=7 => cap + 1,
                    _ => cap / 7 * 8,
                };
                if buckets == 0 {
                    0
                } else {
                    buckets * 17 + 16
                }
            })
            .sum::<u64>()
            + (self.shards.len() * std::mem::size_of::<Shard>()) as u64
    }

    /// Drop everything and give the memory back.
    pub fn clear(&self) {
        for i in 0..self.shards.len() {
            *self.lock_index(i) = ShardMap::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_length_prefixed_and_tagged() {
        let a = fingerprint(TAG_RL, &[b"ab", b"c"]);
        let b = fingerprint(TAG_RL, &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_ne!(fingerprint(TAG_RL, &[b"k"]), fingerprint(TAG_CL, &[b"k"]));
        assert_eq!(a, fingerprint(TAG_RL, &[b"ab", b"c"]));
    }

    #[test]
    fn long_inputs_hash_like_short_ones_would() {
        // The streaming path must equal the one-shot path over the same encoding.
        let long = vec![7u8; 1000];
        let mut enc = TAG_CL.to_vec();
        enc.extend_from_slice(&1000u64.to_le_bytes());
        enc.extend_from_slice(&long);
        assert_eq!(fingerprint(TAG_CL, &[&long]), xxh3_64(&enc));
    }

    #[test]
    fn window_keys_are_distinct_and_share_the_shard() {
        let s = Store::new(256);
        let fp = fingerprint(TAG_RL, &[b"c", b"/e"]);
        let keys: Vec<u64> = (0..8).map(|i| window_key(fp, i)).collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(keys[0], fp);
        assert!(s.shard_of(fp) < 256);
    }

    #[test]
    fn shard_count_rounds_to_power_of_two() {
        assert_eq!(Store::new(0).shard_count(), 1);
        assert_eq!(Store::new(1).shard_count(), 1);
        assert_eq!(Store::new(3).shard_count(), 4);
        assert_eq!(Store::new(256).shard_count(), 256);
        let one = Store::new(1);
        assert_eq!(one.shard_of(u64::MAX), 0);
        let four = Store::new(4);
        assert_eq!(four.shard_of(u64::MAX), 3);
        assert_eq!(four.shard_of(1), 0);
    }

    #[test]
    fn purge_respects_budget_and_sweeps_all_shards() {
        let s = Store::new(4);
        for k in 0..100u64 {
            let fp = window_key(k + 1, 1);
            s.lock(fp).insert(fp, if k < 60 { 5 } else { 50 });
        }
        assert_eq!(s.purge_decayed(10, 7), 7);
        let mut total = 7;
        while total < 60 {
            let r = s.purge_decayed(10, 7);
            assert!(r > 0);
            total += r;
        }
        assert_eq!(total, 60);
        assert_eq!(s.purge_decayed(10, 100), 0);
        assert_eq!(s.count_live(10), 40);
        assert_eq!(s.count_live(50), 0);
        assert!(s.memory_bytes() > 0);
        s.clear();
        assert_eq!(s.count_live(0), 0);
    }
}
