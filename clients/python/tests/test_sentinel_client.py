"""Sentinel-backed nodes (``Node.from_sentinel``) in the Python client.

- ``test_sentinel_node_identity_is_its_master_name``: the declaration and its ring name (no
  process).
- ``test_unreachable_sentinels_mean_degraded_mode``: no Sentinel answers -> local decisions.
- ``test_sentinel_node_follows_a_demoted_primary`` / ``test_password_reaches_the_daemons``: real
  daemons, with what "the Sentinels" answer set by the test (``Sentinel.discover_master``
  replaced), to reach the READONLY path and AUTH deterministically.
- ``test_sentinel_failover_drill_through_the_client``: everything real, described below.

``test_sentinel_failover_drill_through_the_client`` is the drill of tests/python/test_sentinel.py
with OUR client driving the load: two shards, each a real ratelimitd primary with two real
replicas (``--replicaof``), watched by three stock ``redis-sentinel`` processes under the master
names ``shard-a`` and ``shard-b`` (quorum 2, down-after-milliseconds 1000, failover-timeout
10000). Limits and a tier are set through the client (RL.LIMIT SET / RL.TIER SET on each shard's
primary) and replicate; one loader thread sends RL.CHECK for 10 keys per shard through one
``Client`` of two Sentinel-backed nodes; shard-a's primary is ``kill -9``ed. Asserted:

- the Sentinels promote a replica of shard-a (waiting until all three agree: with down-after
  1000 ms, Sentinel sometimes fails over twice), the other replica follows it;
- the client's shard-a checks go on, answered by the promoted primary; once it has answered, no
  check is decided locally any more (the degraded counter stops growing);
- shard-b is never disturbed and no key changes node (ring names are the master names);
- every limit and the tier are intact on the new primary (read directly and through the client);
- per shard-a key, admitted <= LIMIT + GCRA refill over the run + the local allowance
  (FALLBACK + its refill) + what the old primary admitted in its last REPL_WINDOW + what a
  primary Sentinel promoted and then replaced admitted (a second failover; see ``bound``).

The drill prints what it measured (kill to first non-degraded answer, over-admission): run
pytest with ``-s`` to see it. Every wait is a bounded poll with a generous deadline; nothing is
asserted about speed. Every process started is killed at the end; on failure the tail of each
process's log is printed. Needs ``redis-sentinel`` and the daemon binary ($RATELIMITD_BIN): the
tests fail, never skip, without them.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import NamedTuple, Optional

import pytest
import redis
from redis.sentinel import Sentinel

from ratelimitd_client import Client, FallbackLimit, Node, Ring, Window, default_route_key
from ratelimitd_testing import binary, free_port, sentinel_binary

HOUR = 3_600_000
EP = "/drill"
LIMIT = 200          # RL.LIMIT SET ENDPOINT /drill RATE 200/1h: one refill every 18 s
FALLBACK = 3         # the client's local allowance per key and hour while a shard is unreachable
KEYS_PER_SHARD = 10
SHARDS = ("shard-a", "shard-b")
DEADLINE = 60.0
# Replication is asynchronous (drained every millisecond): admissions the dead primary made
# just before the kill may never reach the replicas, and the new primary admits them again.
# The bound allows, per key, every admission the old primary answered in the last REPL_WINDOW
# seconds before the kill (at least one): on loopback the stream lags by milliseconds, so
# 100 ms is generous even on a loaded machine, and a lag beyond it is a failure worth seeing.
REPL_WINDOW = 0.1


class Event(NamedTuple):
    """One check of the drill's load: sent at ``t0``, answered at ``t1`` (monotonic s)."""

    t0: float
    t1: float
    shard: int
    user: str
    allowed: bool
    degraded: bool
    node: str
    address: Optional[str]


# ---- processes (as in tests/python/test_sentinel.py) ----

def wait_for(what, f, secs=DEADLINE, every=0.05, check=None):
    deadline = time.monotonic() + secs
    last = None
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:
            last = f()
            if last:
                return last
        except (redis.RedisError, OSError) as e:
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {secs}s waiting for {what} (last: {last!r})")


def cmd(port, *args):
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2,
                     decode_responses=True, protocol=2) as r:
        return r.execute_command(*args)


def replication(port) -> dict:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2,
                     decode_responses=True, protocol=2) as r:
        return r.info("replication")


def as_dict(flat):
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2]))


class Daemon:
    """One ratelimitd on a fixed loopback port, its own --dir, its log in that dir."""

    def __init__(self, root, name, replicaof=None):
        self.name = name
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        args = [binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--threads", "1",
                "--dir", self.dir]
        if replicaof is not None:
            args += ["--replicaof", f"127.0.0.1:{replicaof}"]
        self.log = open(os.path.join(self.dir, "ratelimitd.log"), "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        wait_for(f"{name} on port {self.port}", lambda: cmd(self.port, "PING"), secs=20)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class SentinelProc:
    """One stock redis-sentinel monitoring every shard's primary, in its own directory (it
    rewrites its conf)."""

    def __init__(self, root, name, masters):
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        conf = os.path.join(self.dir, "sentinel.conf")
        lines = [f"port {self.port}", "bind 127.0.0.1", "daemonize no", f"dir {self.dir}",
                 f"logfile {self.dir}/sentinel.log"]
        for master, port in masters.items():
            lines += [f"sentinel monitor {master} 127.0.0.1 {port} 2",
                      f"sentinel down-after-milliseconds {master} 1000",
                      f"sentinel failover-timeout {master} 10000",
                      f"sentinel parallel-syncs {master} 1"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([sentinel_binary(), conf, "--sentinel"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(f"sentinel on port {self.port}", lambda: cmd(self.port, "PING"), secs=20)

    def master(self, name) -> dict:
        return as_dict(cmd(self.port, "SENTINEL", "MASTER", name))

    def master_port(self, name):
        addr = cmd(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
        return int(addr[1]) if addr else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def dump_logs(root):
    for dirpath, _, files in sorted(os.walk(root)):
        for name in files:
            if name.endswith(".log"):
                path = os.path.join(dirpath, name)
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-40:]
                print(f"==== {path}\n" + "".join(tail))


def bound(elapsed_s: float, lost: int) -> int:
    """Most admissions one key can get over ``elapsed_s`` seconds of the drill.

    - The daemons' GCRA (RATE LIMIT/1h, BURST 0): LIMIT, then one more per 3600/LIMIT s since
      the key's first check, +1 for rounding between the daemon's clock and ours. The new
      primary continues from the replicated state, so this holds across the failover, except
      for ``lost`` admissions that died with the old primary (see REPL_WINDOW).
    - The client's local allowance (FallbackLimit: FALLBACK per hour, burst 0): FALLBACK, then
      one more per 3600/FALLBACK s, over all of the key's degraded decisions (the local table
      is not reset between outages, e.g. by a second failover).
    """
    daemon = LIMIT + int(elapsed_s / (3600.0 / LIMIT)) + 1
    local = FALLBACK + int(elapsed_s / (3600.0 / FALLBACK))
    return daemon + local + lost


# ---- tests ----

def test_sentinel_node_identity_is_its_master_name():
    """No process needed: the declaration, and routing by master name (never an address)."""
    s = [("127.0.0.1", 26379), "127.0.0.2:26380", "[::1]:26381"]
    n = Node.from_sentinel(s, "shard-a", password="node-pw", sentinel_password="sentinel-pw")
    assert n.is_sentinel and n.ring_name == "shard-a" and n.primary == ""
    assert n.sentinels == (("127.0.0.1", 26379), ("127.0.0.2", 26380), ("::1", 26381))
    assert "node-pw" not in repr(n) and "sentinel-pw" not in repr(n)
    assert Node.from_sentinel(s, "shard-a", name="east").ring_name == "east"
    assert not Node("127.0.0.1:7001").is_sentinel
    assert Node("127.0.0.1:7001").ring_name == "127.0.0.1:7001"
    with pytest.raises(ValueError):
        Node.from_sentinel([], "shard-a")
    with pytest.raises(ValueError):
        Node.from_sentinel(s, "")
    with pytest.raises(ValueError):
        Node("127.0.0.1:7001", sentinels=(("127.0.0.1", 26379),), master_name="m")
    with pytest.raises(ValueError):
        Node("127.0.0.1:7001", sentinel_password="x")

    # Constructing the client contacts nobody; keys route by the master names exactly as a
    # ring of those names does (so also as fixed nodes named "shard-a"/"shard-b" would).
    c = Client([Node.from_sentinel(s, "shard-a"), Node.from_sentinel(s, "shard-b")])
    try:
        assert c.node_names() == ["shard-a", "shard-b"]
        ring = Ring(["shard-a", "shard-b"])
        fixed = Client([Node("127.0.0.1:1", name="shard-a"), Node("127.0.0.1:2", name="shard-b")])
        for i in range(500):
            u = f"user{i}"
            want = ring.locate(default_route_key(u, EP))
            assert c.node_for(u, EP) == want == fixed.node_for(u, EP)
        fixed.close()
        mixed = Client([Node("127.0.0.1:1", name="fixed"), Node.from_sentinel(s, "shard-a")])
        assert mixed.node_names() == ["fixed", "shard-a"]
        mixed.close()
        assert c.preferred_addresses() == ["primary of 'shard-a' (via Sentinel)",
                                           "primary of 'shard-b' (via Sentinel)"]
    finally:
        c.close()


def test_unreachable_sentinels_mean_degraded_mode():
    """No Sentinel answers (nothing listens on their ports): checks are decided locally within
    the allowance, never raised, and the node is in back-off after the first failure."""
    dead = [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]
    c = Client([Node.from_sentinel(dead, "shard-a")], connect_timeout=2.0, command_timeout=2.0,
               down_backoff=3600.0,
               fallback=FallbackLimit(rate=2, period_ms=HOUR, burst=0, max_keys=100))
    try:
        decisions = [c.check("alice", "/x") for _ in range(5)]
        assert all(d.degraded and d.address is None and d.node == "shard-a" for d in decisions)
        assert [d.allowed for d in decisions] == [True, True, False, False, False]
        s = c.stats()
        assert (s.checks, s.degraded_allowed, s.degraded_denied) == (0, 2, 3)
        assert s.transport_errors == 1, "tried once, then in back-off"
    finally:
        c.close()


def test_sentinel_node_follows_a_demoted_primary(daemons, monkeypatch):
    """The READONLY path, deterministically: real daemons, but what "the Sentinels" answer is
    set by the test (``Sentinel.discover_master`` is replaced; no Sentinel process). The client
    holds a connection to the primary; the roles are then swapped by hand, as Sentinel does it
    (REPLICAOF NO ONE on the replica, REPLICAOF on the old primary, which stays up). The next
    check meets READONLY on the old connection, asks "the Sentinels" again and is answered by
    the new primary in the same call: not degraded, nothing put in back-off."""
    (primary,) = daemons(1)
    replica = daemons.with_args("--replicaof", primary.addr)
    wait_for("replica link up",
             lambda: replication(replica.port).get("master_link_status") == "up", secs=20)
    named = {"shard": ("127.0.0.1", primary.port)}
    monkeypatch.setattr(Sentinel, "discover_master", lambda self, name: named[name])

    c = Client([Node.from_sentinel([("127.0.0.1", free_port())], "shard")],
               connect_timeout=2.0, command_timeout=2.0, down_backoff=0.1,
               fallback=FallbackLimit(rate=2, period_ms=HOUR, burst=0, max_keys=100))
    try:
        c.set_limit(["ENDPOINT", "/ro"], [Window(10, HOUR)])
        d = c.check("alice", "/ro")
        assert (d.degraded, d.node, d.address, d.remaining) == (False, "shard", primary.addr, 9)
        assert c.preferred_addresses() == [primary.addr]
        assert cmd(primary.port, "WAIT", 1, 5000) == 1

        assert cmd(replica.port, "REPLICAOF", "NO", "ONE") == "OK"
        assert cmd(primary.port, "REPLICAOF", "127.0.0.1", str(replica.port)) == "OK"
        wait_for("the old primary to follow the new one",
                 lambda: (replication(primary.port).get("role") == "slave"
                          and replication(primary.port).get("master_link_status") == "up"),
                 secs=20)
        named["shard"] = ("127.0.0.1", replica.port)

        d = c.check("alice", "/ro")
        assert (d.degraded, d.node, d.address) == (False, "shard", replica.addr), d
        assert d.remaining == 8, "the promoted replica continues from the replicated state"
        s = c.stats()
        assert (s.checks, s.failovers, s.readonly_replies, s.transport_errors) == (2, 1, 1, 0), s
        assert s.degraded_allowed + s.degraded_denied == 0
        assert c.preferred_addresses() == [replica.addr]
        assert c.get_limit(["ENDPOINT", "/ro"]) == [Window(10, HOUR)]
    finally:
        c.close()


def test_password_reaches_the_daemons(daemons, monkeypatch):
    """``password`` is sent to a node with --requirepass, fixed or Sentinel-backed (discovery
    set by the test, as above); without it the node is unreachable and checks are degraded."""
    d = daemons.with_args("--requirepass", "pw")
    monkeypatch.setattr(Sentinel, "discover_master",
                        lambda self, name: ("127.0.0.1", d.port))
    s = [("127.0.0.1", free_port())]
    for node in (Node(d.addr, password="pw"), Node.from_sentinel(s, "m", password="pw")):
        c = Client([node], connect_timeout=2.0, command_timeout=2.0)
        try:
            dec = c.check("alice", "/pw")
            assert not dec.degraded and dec.address == d.addr, (node, dec)
        finally:
            c.close()
    for node in (Node(d.addr), Node.from_sentinel(s, "m")):
        c = Client([node], connect_timeout=2.0, command_timeout=2.0)
        try:
            assert c.check("alice", "/pw").degraded, node
        finally:
            c.close()


def test_sentinel_failover_drill_through_the_client():
    result = drill()
    print("\nsentinel drill through ratelimitd_client: " + json.dumps(result, indent=2))


def drill() -> dict:
    root = tempfile.mkdtemp(prefix="rld-py-sentinel-")
    procs = []
    stop = threading.Event()
    loader = None
    c = None
    events = []          # Event, in order
    loader_error = []

    def check_loader():
        if loader_error:
            raise AssertionError(f"the load thread failed: {loader_error[0]!r}")

    try:
        # 1. Two shards, each a primary and two replicas.
        shards = {}
        for name in SHARDS:
            p = Daemon(root, f"{name}-primary")
            procs.append(p)
            reps = [Daemon(root, f"{name}-replica{i}", replicaof=p.port) for i in (1, 2)]
            procs.extend(reps)
            shards[name] = (p, reps)
        for name, (p, reps) in shards.items():
            for r in reps:
                wait_for(f"{r.name} link up",
                         lambda r=r: replication(r.port).get("master_link_status") == "up")

        # 2. Three Sentinels watching both primaries.
        sentinels = [SentinelProc(root, f"sentinel{i}", {n: shards[n][0].port for n in SHARDS})
                     for i in (1, 2, 3)]
        procs.extend(sentinels)
        for s in sentinels:
            for name in SHARDS:
                wait_for(f"sentinel {s.port} to see 2 replicas and 2 other sentinels of {name}",
                         lambda s=s, name=name: (
                             int(s.master(name)["num-slaves"]) == 2
                             and int(s.master(name)["num-other-sentinels"]) == 2))

        # 3. Our client: one Sentinel-backed node per shard. Timeouts generous for a loaded
        # 2-core box; the degraded mode has its own allowance, distinct from the daemon's.
        c = Client([Node.from_sentinel([("127.0.0.1", s.port) for s in sentinels], name)
                    for name in SHARDS],
                   connect_timeout=1.0, command_timeout=1.0, down_backoff=0.1,
                   fallback=FallbackLimit(rate=FALLBACK, period_ms=HOUR, burst=0, max_keys=1000))
        assert c.node_names() == list(SHARDS)

        # 4. Limits and a tier, through the client: RL.LIMIT SET / RL.TIER SET on each
        # shard's primary, replicated to its replicas.
        c.set_limit("DEFAULT", [Window(10, 1000), Window(1000, HOUR)])
        c.set_limit(["ENDPOINT", "/login"], [Window(5, 60_000, burst=2)])
        c.set_limit(["TIER", "gold"], [Window(100, 1000)])
        c.set_limit(["ENDPOINT", EP], [Window(LIMIT, HOUR)])
        c.set_tier("acme", "gold")
        assert c.preferred_addresses() == [shards[n][0].addr for n in SHARDS]
        limits_before = {}
        for name, (p, reps) in shards.items():
            limits_before[name] = cmd(p.port, "RL.LIMIT", "LIST")
            assert len(limits_before[name]) >= 4, limits_before[name]
            assert cmd(p.port, "RL.TIER", "GET", "acme") == "gold"
            for r in reps:
                wait_for(f"limits and tier replicated to {r.name}",
                         lambda r=r, name=name: (
                             cmd(r.port, "RL.LIMIT", "LIST") == limits_before[name]
                             and cmd(r.port, "RL.TIER", "GET", "acme") == "gold"))

        # 5. Load: one thread, one check at a time, cycling over KEYS_PER_SHARD keys per shard.
        users = {0: [], 1: []}
        i = 0
        while min(len(v) for v in users.values()) < KEYS_PER_SHARD:
            u = f"drill{i}"
            n = c.node_for(u, EP)
            if len(users[n]) < KEYS_PER_SHARD:
                users[n].append(u)
            i += 1
        cycle = [(n, users[n][k]) for k in range(KEYS_PER_SHARD) for n in (0, 1)]
        admitted = {u: 0 for _, u in cycle}

        def load():
            try:
                while not stop.is_set():
                    for n, u in cycle:
                        t0 = time.monotonic()
                        d = c.check(u, EP)
                        events.append(Event(t0, time.monotonic(), n, u, d.allowed, d.degraded,
                                            d.node, d.address))
                        admitted[u] += d.allowed
                        # Modest load (others share this box); no spinning while degraded.
                        time.sleep(0.005 if d.degraded else 0.001)
                        if stop.is_set():
                            return
            except BaseException as e:  # reported by check_loader()
                loader_error.append(e)

        loader = threading.Thread(target=load, daemon=True)
        began = time.monotonic()
        loader.start()
        wait_for("half of every shard-a key's allowance used",
                 lambda: min(admitted[u] for u in users[0]) >= LIMIT // 2,
                 every=0.02, check=check_loader)
        s = c.stats()
        assert s.degraded_allowed + s.degraded_denied == 0, s

        # 6. kill -9 shard-a's primary.
        old, replicas = shards["shard-a"]
        killed = time.monotonic()       # SIGKILL sent
        old.kill9()
        dead = time.monotonic()         # and the process reaped

        first_port = wait_for(
            "Sentinel to name a new primary for shard-a",
            lambda: (lambda p: p if p is not None and p != old.port else None)(
                sentinels[0].master_port("shard-a")), check=check_loader)

        # Wait until all three Sentinels name the same primary, for 3 s in a row (Sentinel
        # may fail over a second time: docs/OPERATIONS.md).
        stable = {"port": None, "since": 0.0}

        def agreed_for_3s():
            ports = {s.master_port("shard-a") for s in sentinels}
            port = ports.pop() if len(ports) == 1 else None
            now = time.monotonic()
            if port is None or port == old.port or port != stable["port"]:
                stable.update(port=port, since=now)
                return None
            return port if now - stable["since"] >= 3.0 else None

        new_port = wait_for("the Sentinels to agree on shard-a's new primary", agreed_for_3s,
                            check=check_loader)
        settled = time.monotonic()
        promoted = next(r for r in replicas if r.port == new_port)
        other = next(r for r in replicas if r.port != new_port)

        # 7. The client's shard-a checks are answered by the new primary...
        def answered_by_promoted():
            for e in events[-4 * len(cycle):]:
                if e.t0 > settled and e.shard == 0 and not e.degraded \
                        and e.address == promoted.addr:
                    return True
            return False

        wait_for("a shard-a check answered by the promoted primary", answered_by_promoted,
                 check=check_loader)
        # ...and from here on, nothing is decided locally.
        mark = len(events)
        s_switch = c.stats()
        degraded_at_switch = s_switch.degraded_allowed + s_switch.degraded_denied

        def denied_by_new_primary():
            seen = set()
            for e in events[mark:]:
                if e.shard == 0 and not e.degraded and not e.allowed:
                    seen.add(e.user)
            return len(seen) == KEYS_PER_SHARD

        wait_for("every shard-a key refused by the new primary", denied_by_new_primary,
                 check=check_loader)
        target = len(events) + 2 * len(cycle)
        wait_for("two more rounds of checks", lambda: len(events) >= target, check=check_loader)
        stop.set()
        loader.join(10)
        assert not loader.is_alive()
        check_loader()
        ended = time.monotonic()

        s = c.stats()
        assert s.degraded_allowed + s.degraded_denied == degraded_at_switch, \
            f"the degraded counter grew after the switch: {s_switch} -> {s}"
        after = events[mark:]
        assert after and all(not e.degraded for e in after), "a degraded answer after the switch"
        assert all(e.address == promoted.addr for e in after if e.shard == 0)
        assert all(e.address == shards["shard-b"][0].addr for e in after if e.shard == 1)
        assert c.preferred_addresses() == [promoted.addr, shards["shard-b"][0].addr]
        assert s.failovers >= 1, s

        # Keys never moved; shard-b was never disturbed.
        assert all(e.node == SHARDS[e.shard] for e in events)
        b_events = [e for e in events if e.shard == 1]
        assert b_events and all(not e.degraded and e.address == shards["shard-b"][0].addr
                                for e in b_events)
        # Shard-a before the kill: the old primary; after it: degraded or a primary that
        # Sentinel promoted (first or second failover), never the dead one.
        a_events = [e for e in events if e.shard == 0]
        assert all(e.address == old.addr for e in a_events if e.t1 < killed)
        assert all(e.address in (replicas[0].addr, replicas[1].addr)
                   for e in a_events if e.t0 > dead and not e.degraded)
        degraded_a = [e for e in a_events if e.degraded]
        assert degraded_a, "no check was decided locally during the failover"

        # 8. The new primary, its follower, and the configuration.
        assert cmd(new_port, "ROLE")[0] == "master"
        wait_for("the other replica to follow the new primary",
                 lambda: (replication(other.port).get("master_port") == new_port
                          and replication(other.port).get("master_link_status") == "up"))
        assert cmd(new_port, "RL.LIMIT", "LIST") == limits_before["shard-a"]
        assert cmd(new_port, "RL.TIER", "GET", "acme") == "gold"
        assert cmd(other.port, "RL.LIMIT", "LIST") == limits_before["shard-a"]
        assert c.get_limit(["ENDPOINT", EP]) == [Window(LIMIT, HOUR)]
        assert c.get_limit(["ENDPOINT", "/login"]) == [Window(5, 60_000, burst=2)]
        assert c.get_limit(["TIER", "gold"]) == [Window(100, 1000)]
        assert c.get_tier("acme") == "gold"
        c.set_limit(["ENDPOINT", "/after"], [Window(7, HOUR)])   # writes reach the new primary
        assert cmd(new_port, "RL.LIMIT", "GET", "ENDPOINT", "/after")[:2] == ["RATE", "7/1h"]

        # 9. Over-admission per shard-a key, against the bound computed from the config.
        elapsed = ended - began
        local_bound = FALLBACK + int(elapsed / (3600.0 / FALLBACK))
        over, by_daemons, local, bounds, abandoned_by = {}, {}, {}, {}, {}
        for u in users[0]:
            mine = [e for e in a_events if e.user == u]
            total = sum(e.allowed for e in mine)
            local[u] = sum(e.allowed for e in mine if e.degraded)
            lost = max(1, sum(1 for e in mine
                              if e.allowed and not e.degraded and e.address == old.addr
                              and killed - REPL_WINDOW <= e.t1 <= killed))
            # When Sentinel fails over a second time (see above), the first promoted primary
            # lives on and keeps admitting until Sentinel converts it, and all of that is lost
            # when it resyncs from the final primary: Sentinel's own split brain, allowed for
            # here (and reported), not a limit of ours to hide.
            abandoned = sum(1 for e in mine
                            if e.allowed and not e.degraded and e.t0 > killed
                            and e.address != promoted.addr)
            bounds[u] = bound(elapsed, lost + abandoned)
            abandoned_by[u] = abandoned
            assert total == admitted[u]
            assert local[u] <= local_bound, (u, local[u], local_bound)
            assert total <= bounds[u], (u, total, bounds[u])
            over[u] = total - LIMIT
            by_daemons[u] = total - local[u] - LIMIT

        first_answer = next(e.t1 for e in a_events
                            if e.t1 > killed and not e.degraded and e.address != old.addr)
        return {
            "kill_to_first_non_degraded_answer_s": round(first_answer - killed, 3),
            "kill_to_sentinels_agreed_s": round(settled - killed, 3),
            "sentinel_failovers": 1 if new_port == first_port else 2,
            "degraded_checks_shard_a": len(degraded_a),
            "admitted_locally_per_key": sorted(local.values()),
            "over_admission_per_key": sorted(over.values()),
            "over_admission_max": max(over.values()),
            "bound_per_key": sorted(bounds.values()),
            "admitted_by_an_abandoned_primary_per_key": sorted(abandoned_by.values()),
            "admitted_by_daemons_minus_limit_per_key": sorted(by_daemons.values()),
            "gcra_refills_possible": int(elapsed / (3600.0 / LIMIT)),
            "limit": LIMIT,
            "fallback": FALLBACK,
            "elapsed_s": round(elapsed, 1),
            "checks": len(events),
            "stats": vars(s),
        }
    except BaseException:
        dump_logs(root)
        raise
    finally:
        stop.set()
        if loader is not None:
            loader.join(10)
        if c is not None:
            c.close()
        for p in procs:
            p.stop()
        shutil.rmtree(root, ignore_errors=True)
