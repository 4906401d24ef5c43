"""The memcached text protocol with pymemcache, and the key space shared with RESP."""

import socket

import pytest
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError


def test_storage_and_retrieval(daemon):
    mc = daemon.memcache()
    assert mc.set("a", b"1") is True
    assert mc.get("a") == b"1"
    assert mc.add("a", b"2", noreply=False) is False
    assert mc.add("b", b"2", noreply=False) is True
    assert mc.replace("zz", b"x", noreply=False) is False
    assert mc.append("b", b"3", noreply=False) is True
    assert mc.prepend("b", b"1", noreply=False) is True
    assert mc.get("b") == b"123"
    assert mc.get_many(["a", "b", "missing"]) == {"a": b"1", "b": b"123"}
    value, cas = mc.gets("b")
    assert value == b"123"
    assert mc.cas("b", b"9", cas) is True
    assert mc.cas("b", b"8", cas) is False
    assert mc.cas("missing", b"8", cas) is None
    assert mc.touch("b", 100, noreply=False) is True
    assert mc.touch("missing", 100, noreply=False) is False
    assert mc.get("b") == b"9"
    assert mc.delete("b", noreply=False) is True
    assert mc.delete("b", noreply=False) is False
    assert mc.version().startswith(b"1.6")
    stats = mc.stats()
    for field in (b"pid", b"uptime", b"curr_items", b"cmd_get", b"get_hits", b"get_misses",
                  b"limit_maxbytes", b"threads", b"curr_connections", b"total_items"):
        assert field in stats, field
    assert mc.flush_all(noreply=False) is True
    assert mc.get("a") is None


def test_counters_follow_memcached_rules(daemon):
    mc = daemon.memcache()
    assert mc.incr("n", 1) is None, "incr needs an existing key"
    mc.set("n", b"5")
    assert mc.incr("n", 10) == 15
    assert mc.decr("n", 100) == 0, "decr floors at 0"
    mc.set("n", str(2**64 - 1).encode())
    assert mc.incr("n", 2) == 1, "incr wraps at 2^64"
    mc.set("s", b"abc")
    with pytest.raises(MemcacheClientError):
        mc.incr("s", 1)


def test_shared_keyspace_with_resp(daemon):
    mc = daemon.memcache()
    r = daemon.redis()
    mc.set("counter", b"0")
    mc.incr("counter", 3)
    assert r.get("counter") == "3"
    r.incr("counter")
    assert mc.get("counter") == b"4"
    r.set("from-resp", "v")
    assert mc.get("from-resp") == b"v"


def test_limits(daemon):
    mc = daemon.memcache()
    with pytest.raises(MemcacheServerError, match="too large"):
        mc.set("big", b"x" * 2000, noreply=False)
    assert mc.set("ok", b"y") is True, "the connection carries on"
    with pytest.raises(MemcacheClientError):
        mc.get("k" * 251)


def test_dalli_meta_counter_raw(daemon):
    with socket.create_connection(("127.0.0.1", daemon.mc_port), timeout=5) as s:
        s.sendall(b"ma rl:py v D1 J0 N60 MI\r\nma rl:py v D1 J0 N60 MI\r\nmg rl:py v t\r\n")
        want = b"VA 1\r\n0\r\nVA 1\r\n1\r\nVA 1 t60\r\n1\r\n"
        got = b""
        while len(got) < len(want):
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
        assert got == want
