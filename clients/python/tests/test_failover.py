"""The Python client against a REAL primary and replica (``--replicaof``), not a standalone
daemon standing in for one: a limit set through the client reaches the replica by replication;
while the primary is up it answers every check; after ``kill -9`` of the primary the unpromoted
replica answers READONLY, which the client must not take as an answer (it decides from the
bounded local allowance); after ``REPLICAOF NO ONE`` the client follows the promotion, sees the
replicated rate state, and keeps using the promoted address while the old one stays dead.

Assertions are about answers and counts, never speed: every wait is a bounded poll with a
generous deadline, and the ``daemons`` fixture kills both processes at the end."""

import time

from ratelimitd_client import Client, FallbackLimit, Node, Window

HOUR = 3_600_000
LIMIT = 10
# The local allowance per key during the outage; distinct from the daemon's limit so a degraded
# answer cannot pass for a daemon's.
FALLBACK = 2
LIMIT_REPLY = [b"RATE", b"10/1h", b"BURST", 0, b"ALGO", b"gcra"]


def eventually(what, f, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not f():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.02)


def info_field(d, section, name):
    r = d.conn()
    try:
        text = r.execute_command("INFO", section)
    finally:
        r.close()
    if isinstance(text, bytes):
        text = text.decode()
    if isinstance(text, dict):  # redis-py may parse INFO into a dict
        v = text.get(name)
        return "" if v is None else str(v)
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k == name:
            return v.strip()
    return ""


def cmd(d, *args):
    r = d.conn()
    try:
        return r.execute_command(*args)
    finally:
        r.close()


def peek_remaining(d, user, ep):
    return cmd(d, "RL.PEEK", user, ep)[2]


def test_follows_a_real_replica_through_kill_and_promotion(daemons):
    user, ep = "alice", "/fo"

    # 1. A primary and a real replica of it, each with its own --dir.
    (primary,) = daemons(1)
    replica = daemons.with_args("--replicaof", primary.addr)
    eventually("replica's master_link_status:up",
               lambda: info_field(replica, "replication", "master_link_status") == "up")
    assert info_field(replica, "replication", "role") == "slave"

    c = Client([Node(primary.addr, (replica.addr,), name="shard")],
               connect_timeout=2.0, command_timeout=2.0, down_backoff=0.1,
               fallback=FallbackLimit(rate=FALLBACK, period_ms=HOUR, burst=0, max_keys=1000))
    try:
        c.set_limit(["ENDPOINT", ep], [Window(LIMIT, HOUR)])
        assert c.preferred_addresses() == [primary.addr]
        assert cmd(primary, "RL.LIMIT", "GET", "ENDPOINT", ep) == LIMIT_REPLY
        eventually("the limit replicated to the replica",
                   lambda: cmd(replica, "RL.LIMIT", "GET", "ENDPOINT", ep) == LIMIT_REPLY)

        # 2. The primary answers every check.
        for want in (9, 8, 7):
            d = c.check(user, ep)
            assert d.allowed and not d.degraded
            assert (d.limit, d.remaining) == (LIMIT, want)
            assert (d.node, d.address) == ("shard", primary.addr)
        s = c.stats()
        assert s.checks == 3
        assert s.degraded_allowed + s.degraded_denied == 0
        assert (s.failovers, s.readonly_replies, s.transport_errors) == (0, 0, 0)
        # The rate state reaches the replica before the kill (the test is about the client,
        # so it waits for the replica's acknowledgement).
        assert cmd(primary, "WAIT", 1, 5000) == 1
        eventually("the replica holds the 3 checks",
                   lambda: peek_remaining(replica, user, ep) == 7)

        # 3. kill -9 the primary. The replica is still a replica: READONLY is not an answer;
        # the checks are decided by the local allowance, within its bound.
        primary.kill()
        assert info_field(replica, "replication", "role") == "slave"
        degraded_checks = 6
        admitted = 0
        for _ in range(degraded_checks):
            d = c.check(user, ep)
            assert d.degraded and d.address is None and d.node == "shard", \
                f"a READONLY replica must not answer a check: {d}"
            assert d.limit == FALLBACK
            admitted += d.allowed
        assert admitted <= FALLBACK, f"{admitted} admitted, the local allowance is {FALLBACK}"
        s = c.stats()
        assert s.checks == 3, "no daemon answered during the outage"
        assert s.degraded_allowed == admitted
        assert s.degraded_allowed + s.degraded_denied == degraded_checks
        # Every degraded check asked the replica (READONLY puts no address in back-off).
        assert s.readonly_replies == degraded_checks
        assert s.transport_errors >= 1, "the dead primary was tried"
        assert s.failovers == 0, "READONLY must not move the preferred address"
        assert c.preferred_addresses() == [primary.addr]
        # The refused checks consumed nothing on the replica.
        assert peek_remaining(replica, user, ep) == 7

        # 4. Promote the replica, directly; the client's checks are answered by it again and
        # continue from the replicated state.
        assert cmd(replica, "REPLICAOF", "NO", "ONE") in (b"OK", "OK", True)
        deadline = time.monotonic() + 20
        degraded_while_promoting = 0
        while True:
            first = c.check(user, ep)
            if not first.degraded:
                break
            admitted += first.allowed
            degraded_while_promoting += 1
            assert time.monotonic() < deadline, "the promoted replica did not answer within 20 s"
            time.sleep(0.05)
        assert (first.node, first.address) == ("shard", replica.addr)
        assert first.allowed and first.limit == LIMIT
        assert first.remaining <= 6, \
            f"replication carries state: 3 checks before the kill, got {first.remaining}"
        # The replica had acknowledged all 3, and refused checks consume nothing: exactly 6.
        assert first.remaining == 6
        assert admitted <= FALLBACK, "local bound over the whole outage"
        assert info_field(replica, "replication", "role") == "master"
        assert c.preferred_addresses() == [replica.addr]
        s = c.stats()
        assert (s.failovers, s.checks) == (1, 4)
        assert s.degraded_allowed + s.degraded_denied == degraded_checks + degraded_while_promoting

        # 5. The old primary's address stays dead; the client keeps using the promoted one,
        # also after that address's back-off has long expired (it is not even probed).
        errors_before = s.transport_errors
        for want in (5, 4, 3):
            time.sleep(0.15)
            d = c.check(user, ep)
            assert (d.node, d.address, d.degraded) == ("shard", replica.addr, False)
            assert d.allowed and d.remaining == want
        assert peek_remaining(replica, user, ep) == 3
        s = c.stats()
        assert (s.checks, s.failovers) == (7, 1)
        assert s.transport_errors == errors_before, "the dead address was not tried"
        assert s.degraded_allowed + s.degraded_denied == degraded_checks + degraded_while_promoting
        assert c.preferred_addresses() == [replica.addr]
        assert c.get_limit(["ENDPOINT", ep]) == [Window(LIMIT, HOUR)]
    finally:
        c.close()
