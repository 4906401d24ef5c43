"""The Python ring against the shared vectors in clients/vectors/ring.json — the same file the
Rust crate's tests read, so both libraries route every key to the same node."""

import json
import pathlib

from ratelimitd_client import Ring, default_route_key, fnv1a64, mix64

VECTORS = json.loads(
    (pathlib.Path(__file__).resolve().parents[2] / "vectors" / "ring.json").read_text("utf-8"))


def test_fnv1a64_vectors():
    for case in VECTORS["fnv1a64"]:
        assert fnv1a64(bytes.fromhex(case["input_hex"])) == int(case["hash"], 16), case


def test_mix64_vectors():
    for case in VECTORS["mix64"]:
        assert mix64(int(case["input"], 16)) == int(case["output"], 16), case


def test_ring_vectors():
    n = 0
    for ring in VECTORS["rings"]:
        r = Ring(ring["nodes"])
        for case in ring["cases"]:
            key = default_route_key(case["client"], case["endpoint"])
            assert key.hex() == case["key_hex"], case
            assert r.locate(key) == case["node"], (case, ring["nodes"])
            n += 1
    assert n >= 300


def test_spread_within_five_percent():
    # A smaller sample than Rust's 1M (pure Python): 60k keys over 3 and 8 nodes.
    for nodes in (3, 8):
        r = Ring([f"n{i}" for i in range(nodes)])
        counts = [0] * nodes
        keys = 60_000
        for i in range(keys):
            counts[r.locate(default_route_key(f"user{i}", "/search"))] += 1
        mean = keys / nodes
        assert max(abs(c - mean) / mean for c in counts) <= 0.05, counts
