"""Users and roles with the clients teams use: redis-py signing in as a user (HELLO/AUTH with
a username), and pymemcache signing in with memcached's text-protocol credentials."""

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from pymemcache.exceptions import MemcacheClientError

from conftest import Daemon


@pytest.fixture
def secured():
    d = Daemon("--requirepass", "adminpw")
    admin = redis.Redis(host="127.0.0.1", port=d.port, password="adminpw",
                        socket_timeout=5, decode_responses=True)
    # A checker: may ask RL.CHECK for the clients of its tenant and change nothing else.
    admin.execute_command("ACL", "SETUSER", "checker", "on", ">checkpw",
                          "+@rate_limit", "-@limits", "~acme:*")
    # A cache user: the memcached/string commands on its own keys.
    admin.execute_command("ACL", "SETUSER", "cache", "on", ">cachepw",
                          "+@string", "+del", "~c:*")
    yield d, admin
    d.kill()


def user_client(d, username, password, **kw):
    return redis.Redis(host="127.0.0.1", port=d.port, username=username, password=password,
                       socket_timeout=5, decode_responses=True, **kw)


def test_redis_py_signs_in_as_a_user_and_its_rules_hold(secured):
    d, admin = secured
    admin.execute_command("RL.LIMIT", "SET", "ENDPOINT", "/api", "RATE", "2/1m")
    checker = user_client(d, "checker", "checkpw")
    first = checker.execute_command("RL.CHECK", "acme:1", "/api")
    assert first[0] == 1, first
    # Another tenant's clients, and changing limits, are refused with Redis's errors.
    with pytest.raises(redis.exceptions.NoPermissionError):
        checker.execute_command("RL.CHECK", "globex:1", "/api")
    with pytest.raises(redis.exceptions.NoPermissionError):
        checker.execute_command("RL.LIMIT", "SET", "ENDPOINT", "/api", "RATE", "1000/1s")
    with pytest.raises(redis.exceptions.NoPermissionError):
        checker.flushall()
    # RESP3 signs in with HELLO ... AUTH.
    resp3 = user_client(d, "checker", "checkpw", protocol=3)
    second = resp3.execute_command("RL.CHECK", "acme:1", "/api")
    assert second[0] == 1 and second[2] == 0, second
    assert resp3.execute_command("RL.CHECK", "acme:1", "/api")[0] == 0, "the third is denied"
    # Wrong password, or nobody at all (without redis-py's retries, which only add time).
    once = Retry(NoBackoff(), 0)
    with pytest.raises(redis.exceptions.AuthenticationError):
        user_client(d, "checker", "nope", retry=once).ping()
    anonymous = redis.Redis(host="127.0.0.1", port=d.port, socket_timeout=5, retry=once)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()


def test_pymemcache_signs_in_with_memcached_credentials(secured):
    d, admin = secured
    mc = d.memcache()
    with pytest.raises(MemcacheClientError, match="unauthenticated"):
        mc.get("c:x")
    # memcached's text-protocol authentication: the first set carries "<user> <password>".
    with pytest.raises(MemcacheClientError, match="authentication failure"):
        mc.set("auth", b"cache wrong", noreply=False)
    assert mc.set("auth", b"cache cachepw", noreply=False) is True
    assert mc.set("c:x", b"1", noreply=False) is True
    assert mc.incr("c:x", 4) == 5
    assert admin.get("c:x") == "5", "the same key space as RESP"
    # The user's key pattern holds over memcached too.
    with pytest.raises(MemcacheClientError, match="NOPERM"):
        mc.set("other", b"1", noreply=False)
