"""The client-side ring: which daemon owns a rate-limit key.

A line-for-line port of ``client/src/ring.rs`` following docs/HASHING.md: FNV-1a 64 over the
routing key, then for each node ``mix64(key_hash XOR fnv1a64(node_name))`` (murmur3's fmix64),
the highest score wins, ties to the lower index. Pure Python (no native dependency), which is
why the hash is FNV-1a + fmix64 rather than xxh3; the shared vectors prove it matches Rust.
"""

from typing import Optional, Sequence

MASK = 0xFFFFFFFFFFFFFFFF
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64: for each byte, xor it in, then multiply by the prime modulo 2**64."""
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def mix64(x: int) -> int:
    """murmur3's 64-bit finaliser: every output bit depends on every input bit."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK
    x ^= x >> 33
    return x


def default_route_key(client: str, endpoint: str) -> bytes:
    """``u32 big-endian len(client) || client || endpoint`` (UTF-8): the (client, endpoint)
    pair owns an allowance in the daemon, so all its state must live on one node."""
    c = client.encode("utf-8")
    return min(len(c), 0xFFFFFFFF).to_bytes(4, "big") + c + endpoint.encode("utf-8")


class Ring:
    """A rendezvous ring over named nodes; ``locate`` returns an index into ``names``.

    Node names, not positions or addresses, are hashed: reordering the list or failing over
    to a replica never moves a key."""

    def __init__(self, names: Sequence[str]):
        self._seeds = [fnv1a64(n.encode("utf-8")) for n in names]

    def __len__(self) -> int:
        return len(self._seeds)

    def locate(self, key: bytes) -> Optional[int]:
        """Index of the node owning ``key``; None only for an empty ring."""
        return self.locate_hash(fnv1a64(key))

    def locate_hash(self, kh: int) -> Optional[int]:
        """``locate`` for a key whose fnv1a64 is already known."""
        best_score = -1
        best = None
        for i, seed in enumerate(self._seeds):
            s = mix64(kh ^ seed)
            if s > best_score:
                best_score, best = s, i
        return best
