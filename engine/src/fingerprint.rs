//! Key fingerprints: the 64-bit names under which the store keeps every piece of state.
//!
//! Rate state keeps no key bytes (a GCRA entry is 16 bytes, see `store.rs`), so a key is known
//! only by its fingerprint: a chained, seeded xxh3 hash of a namespace tag and the key's parts
//! (see [`fingerprint`]). Distinct inputs cannot collide by concatenation (("ab","c") vs
//! ("a","bc")), and RL state can never alias CL.THROTTLE state. The top bits of a fingerprint
//! choose its shard, which is why the keys of one check's windows ([`window_key`]) keep them.
//!
//! Separate from the store because the engine hashes before it locks anything (the daemon
//! prefetches a key's slot from its fingerprint), and because fingerprints are persisted in
//! snapshots and replication records: this file is the whole of their definition.

use xxhash_rust::xxh3::xxh3_64_with_seed;

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

/// The shard a key-value key lives in is chosen from this fingerprint of it.
pub(crate) fn kv_fingerprint(key: &[u8]) -> u64 {
    fingerprint(TAG_KV, &[key])
}

/// Namespace tag of key-value keys (only used to pick their shard).
const TAG_KV: Tag = Tag::of(b"kv");

#[cfg(test)]
mod tests {
    use super::*;

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
}
