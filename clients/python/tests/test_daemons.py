"""The Python client against several real ratelimitd daemons on loopback: keys land where the
ring says, management reaches every node, a killed node triggers degraded mode within the local
bound, a restarted node is used again, and a killed primary fails over to its replica.

Timeouts are generous (the defaults are for production, not a loaded CI box); the only waits
are bounded polls."""

import time

import pytest

from ratelimitd_client import Client, FallbackLimit, Node, PartialError, Window

HOUR = 3_600_000


def make_client(nodes):
    return Client(nodes, connect_timeout=2.0, command_timeout=2.0, down_backoff=0.1,
                  fallback=FallbackLimit(rate=5, period_ms=HOUR, burst=0, max_keys=1000))


def pairs(n):
    return [(f"user{i}", f"/ep{i % 7}") for i in range(n)]


def test_keys_land_where_the_ring_says(daemons):
    ds = daemons(3)
    c = make_client([Node(d.addr) for d in ds])
    c.set_limit("DEFAULT", [Window(1000, HOUR)])
    per_node = [0, 0, 0]
    for user, ep in pairs(300):
        d = c.check(user, ep)
        owner = c.node_for(user, ep)
        per_node[owner] += 1
        assert d.allowed and d.limit == 1000 and d.remaining == 999
        assert d.address == ds[owner].addr and not d.degraded
    for user, ep in pairs(60):
        owner = c.node_for(user, ep)
        for i, dm in enumerate(ds):
            remaining = dm.conn().execute_command("RL.PEEK", user, ep)[2]
            assert remaining == (999 if i == owner else 1000), (user, ep, i)
    for i, dm in enumerate(ds):
        assert dm.conn().dbsize() == per_node[i]
        assert per_node[i] > 50
    assert c.stats().checks == 300


def test_check_and_increment_and_management(daemons):
    ds = daemons(2)
    c = make_client([Node(d.addr) for d in ds])
    scope = ["CLIENT", "acme", "ENDPOINT", "/upload"]
    windows = [Window(10, 500, 2), Window(1000, HOUR)]
    c.set_limit(scope, windows)
    assert c.get_limit(scope) == windows
    for dm in ds:
        # Two windows of RATE/BURST pairs, then ALGO gcra.
        assert len(dm.conn().execute_command("RL.LIMIT", "GET", *scope)) == 10
    results = [c.check_and_increment("acme", "/upload") for _ in range(15)]
    assert results.count(True) == 12
    c.set_tier("acme", "gold")
    assert c.get_tier("acme") == "gold"
    assert c.del_tier("acme") and c.get_tier("acme") is None
    assert c.del_limit(scope) and not c.del_limit(scope)
    assert c.get_limit(scope) is None
    ds[1].kill()
    with pytest.raises(PartialError) as e:
        c.set_limit("DEFAULT", [Window(5, 1000)])
    assert len(e.value.failed) == 1


def test_killed_node_degrades_within_bound_and_restart_is_used(daemons):
    ds = daemons(3)
    c = make_client([Node(d.addr) for d in ds])
    c.set_limit("DEFAULT", [Window(1000, HOUR)])
    ps = pairs(120)
    for user, ep in ps:
        assert not c.check(user, ep).degraded
    victim = 1
    port = ds[victim].port
    ds[victim].kill()
    admitted = {}
    victim_keys = [p for p in ps if c.node_for(*p) == victim]
    assert len(victim_keys) > 10
    for _ in range(20):
        for user, ep in ps:
            d = c.check(user, ep)
            if c.node_for(user, ep) == victim:
                assert d.degraded and d.limit == 5
                admitted[(user, ep)] = admitted.get((user, ep), 0) + d.allowed
            else:
                assert not d.degraded and d.allowed
    assert all(n <= 5 for n in admitted.values()), admitted
    s = c.stats()
    assert s.degraded_allowed == sum(admitted.values())
    assert s.degraded_allowed + s.degraded_denied == 20 * len(victim_keys)

    restarted = daemons.on(port)
    user, ep = victim_keys[0]
    deadline = time.monotonic() + 10
    while True:
        d = c.check(user, ep)
        if not d.degraded:
            assert d.limit is None  # the fresh process has no limits yet: unlimited
            break
        assert time.monotonic() < deadline, "restarted daemon not used again within 10 s"
        time.sleep(0.05)
    c.set_limit("DEFAULT", [Window(1000, HOUR)])
    c.check(user, ep)
    assert restarted.conn().execute_command("RL.PEEK", user, ep)[2] == 999


def test_primary_killed_fails_over_to_replica_and_stays(daemons):
    primary, replica, other = daemons(3)
    c = make_client([Node(primary.addr, (replica.addr,), name="shard-a"),
                     Node(other.addr, name="shard-b")])
    user, ep = next(p for p in pairs(200) if c.node_for(*p) == 0)
    assert c.check(user, ep).address == primary.addr
    port = primary.port
    primary.kill()
    d = c.check(user, ep)
    assert d.address == replica.addr and not d.degraded
    assert c.preferred_addresses()[0] == replica.addr
    assert c.stats().failovers == 1
    daemons.on(port)
    time.sleep(0.3)
    assert c.check(user, ep).address == replica.addr
