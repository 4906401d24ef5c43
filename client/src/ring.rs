//! The client-side ring: which daemon owns a rate-limit key.
//!
//! This is rendezvous (highest-random-weight) hashing, written down byte for byte in
//! `docs/HASHING.md` so that every client library — this crate, `clients/python/`, and any
//! later one — sends a key to the same daemon. `clients/vectors/ring.json` holds test vectors
//! that both the Rust and the Python tests check.
//!
//! Why rendezvous and not ketama or jump hash (the long form is in `docs/DESIGN.md`): over the
//! 1–16 nodes a deployment of this daemon has, scoring every node per key costs at most 16
//! multiply-xorshift rounds (nanoseconds); in exchange there are no virtual nodes to tune, the
//! spread is as even as the hash (no ±5–10% vnode lumpiness), any node can be removed (jump hash
//! can only drop the last bucket), and exactly the keys of a removed node move — no others.
//!
//! Why FNV-1a 64 plus the murmur3 finaliser, not xxh3 or SipHash: both are a dozen lines of
//! pure Python with no native dependency, fully specified, and the finaliser repairs FNV's weak
//! avalanche, which is what the spread test (1M keys, 3–16 nodes, within ±5%) checks.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 over `bytes`: for each byte, xor it in, then multiply by the prime (mod 2^64).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The murmur3 64-bit finaliser (`fmix64`): a bijection whose every output bit depends on every
/// input bit, so that keys differing in one byte get unrelated scores.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// The default routing key of a check: `u32 big-endian length of client ‖ client ‖ endpoint`
/// (UTF-8). The length prefix keeps `("ab", "c")` and `("a", "bc")` apart.
///
/// It is the (client, endpoint) pair because that is what owns an allowance in the daemon
/// (docs/API.md): all the state of one pair must live on one daemon.
pub fn default_route_key(client: &str, endpoint: &str) -> Vec<u8> {
    let c = client.as_bytes();
    let mut key = Vec::with_capacity(4 + c.len() + endpoint.len());
    // A client id longer than 4 GiB cannot reach the daemon anyway (bulk strings are capped at
    // 512 KiB); saturate rather than panic.
    let len = u32::try_from(c.len()).unwrap_or(u32::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(c);
    key.extend_from_slice(endpoint.as_bytes());
    key
}

/// A rendezvous ring over named nodes. The node *names* (not their addresses or positions)
/// are hashed, so reordering the list, changing a node's address, or failing over to a replica
/// never moves a key.
#[derive(Debug, Clone)]
pub struct Ring {
    /// `fnv1a64(name)` of each node, in the order given.
    seeds: Vec<u64>,
}

impl Ring {
    /// A ring over these node names (in this order; [`Ring::locate`] returns an index into it).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Ring {
        Ring {
            seeds: names
                .iter()
                .map(|n| fnv1a64(n.as_ref().as_bytes()))
                .collect(),
        }
    }

    /// How many nodes the ring has.
    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    /// Whether the ring has no node at all.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// The score of node `seed` for a key whose hash is `key_hash`:
    /// `mix64(key_hash XOR fnv1a64(node name))`.
    fn score(key_hash: u64, seed: u64) -> u64 {
        mix64(key_hash ^ seed)
    }

    /// The index of the node that owns `key`: the highest score wins; on an exact tie (about
    /// one key in 2^64), the lower index. `None` only for an empty ring.
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        self.locate_hash(fnv1a64(key))
    }

    /// [`Ring::locate`] for a key whose `fnv1a64` is already known (the measurement tests hash
    /// a million keys once and place them on many rings).
    pub fn locate_hash(&self, kh: u64) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (i, &seed) in self.seeds.iter().enumerate() {
            let s = Ring::score(kh, seed);
            match best {
                Some((b, _)) if s <= b => {}
                _ => best = Some((s, i)),
            }
        }
        best.map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_published_values() {
        // From the FNV reference test suite (isthe.com/chongo/tech/comp/fnv).
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn route_key_layout() {
        assert_eq!(
            default_route_key("ab", "c"),
            b"\x00\x00\x00\x02abc".to_vec()
        );
        assert_ne!(default_route_key("ab", "c"), default_route_key("a", "bc"));
    }

    #[test]
    fn empty_ring_locates_nothing() {
        let r = Ring::new::<&str>(&[]);
        assert_eq!(r.locate(b"x"), None);
        assert!(r.is_empty());
    }

    #[test]
    fn node_order_does_not_matter() {
        let a = Ring::new(&["n1", "n2", "n3"]);
        let b = Ring::new(&["n3", "n1", "n2"]);
        let names_a = ["n1", "n2", "n3"];
        let names_b = ["n3", "n1", "n2"];
        for i in 0..1000 {
            let k = format!("key{i}");
            let na = names_a[a.locate(k.as_bytes()).unwrap_or(0)];
            let nb = names_b[b.locate(k.as_bytes()).unwrap_or(0)];
            assert_eq!(na, nb);
        }
    }
}
