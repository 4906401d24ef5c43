"""The RESP counter patterns with redis-py, as rate-limit libraries write them."""

import threading
import time

import pytest
import redis


def test_incr_expire_fixed_window(daemon):
    r = daemon.redis()
    assert r.incr("rl:1") == 1
    assert r.expire("rl:1", 60, nx=True) is True
    assert r.incr("rl:1") == 2
    assert r.expire("rl:1", 60, nx=True) is False
    assert 59 <= r.ttl("rl:1") <= 60
    assert r.get("rl:1") == "2"
    assert r.incrby("rl:1", 5) == 7
    assert r.decrby("rl:1", 2) == 5
    assert r.persist("rl:1") is True
    assert r.ttl("rl:1") == -1
    assert r.ttl("nope") == -2
    assert r.type("rl:1") == "string"
    assert r.type("nope") == "none"


def test_django_ratelimit_style_pipeline(daemon):
    r = daemon.redis()
    for n in range(1, 4):
        pipe = r.pipeline(transaction=True)
        pipe.incr("django:ip")
        pipe.expire("django:ip", 60, nx=True)
        count, fresh = pipe.execute()
        assert count == n
        assert fresh is (n == 1)


def test_set_nx_ex_lock(daemon):
    r = daemon.redis()
    assert r.set("lock", "me", nx=True, ex=10) is True
    assert r.set("lock", "you", nx=True, ex=10) is None
    assert r.get("lock") == "me"
    assert r.set("lock", "x", xx=True, get=True) == "me"
    assert r.getdel("lock") == "x"
    assert r.mget("lock", "other") == [None, None]
    assert r.execute_command("SETEX", "tmp", 5, "v")
    assert 0 < r.pttl("tmp") <= 5000
    assert r.exists("tmp", "lock") == 1
    assert r.delete("tmp", "lock") == 1


def test_watch_conflict(daemon):
    a = daemon.redis()
    b = daemon.redis()
    a.set("w", 1)
    with a.pipeline() as pipe:
        pipe.watch("w")
        b.incr("w")
        pipe.multi()
        pipe.incr("w")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert a.get("w") == "2"

    def bump(pipe):
        value = int(pipe.get("w"))
        pipe.multi()
        pipe.set("w", value + 10)

    a.transaction(bump, "w")
    assert a.get("w") == "12"


def test_errors(daemon):
    r = daemon.redis()
    r.set("s", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer or out of range"):
        r.incr("s")
    r.set("max", 2**63 - 1)
    with pytest.raises(redis.ResponseError, match="increment or decrement would overflow"):
        r.incr("max")
    with pytest.raises(redis.ResponseError, match="max-value-size"):
        r.set("big", "x" * 1025)
    with pytest.raises(redis.ResponseError, match="invalid expire time"):
        r.set("k", "v", ex=0)
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("INCR")


def test_concurrent_transactions_count_exactly(daemon):
    firsts = []

    def worker():
        r = daemon.redis()
        for _ in range(25):
            pipe = r.pipeline(transaction=True)
            pipe.incr("hot")
            pipe.expire("hot", 60, nx=True)
            _, fresh = pipe.execute()
            if fresh:
                firsts.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert daemon.redis().get("hot") == "100"
    assert len(firsts) == 1


def test_expiry(daemon):
    r = daemon.redis()
    r.set("short", 1, px=50)
    time.sleep(0.15)
    assert r.get("short") is None
