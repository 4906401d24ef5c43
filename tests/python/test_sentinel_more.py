"""Two more Sentinel drills on loopback, built on tests/python/test_sentinel.py's helpers.

1. ``test_sentinel_promotes_the_replica_with_the_higher_offset``: replica B is ``SIGSTOP``ped
   while the primary takes RL.CHECK load, the primary is ``kill -9``ed while B is still stopped,
   and B is ``SIGCONT``ed within 200 ms. B's applied offset is then behind A's, and Sentinel
   (equal priorities) must promote A; B follows A and checks go on against A.

   RL.CHECK load alone cannot make the gap deterministic: its stream is a few hundred KiB/s,
   which the kernel's socket buffers (send buffer up to ``tcp_wmem`` max, B's receive buffer up
   to ``tcp_rmem`` max, 4 + 32 MiB here) absorb while B is stopped, and B reads all of it
   after SIGCONT: it dies in the primary's kernel, not with the process. So, while B is
   stopped, the drill also writes more stream than those buffers can hold (large SET values):
   the rest stays in the primary's per-replica queue in user space and dies with it. The
   values are deleted again before the kill so that the full resync B then needs from A is
   small: a full sync of ~50 MB stalls a debug-build node for more than down-after-milliseconds
   (its snapshot is taken under the replication lock), and Sentinel then fails over a second
   time, to B, discarding A's newer data.

2. ``test_sentinel_failover_with_auth_pass``: the whole drill with ``--requirepass`` and
   ``--masterauth`` on every node, ``sentinel auth-pass`` in every sentinel.conf and redis-py's
   Sentinel client authenticating to the primary it finds.

State and counts only; generous deadlines; every process is killed at the end.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import redis
from redis.sentinel import Sentinel

from ratelimitd_testing import binary, free_port, sentinel_binary
from test_sentinel import Node, SentinelProc, as_dict, sentinel_conf, wait_for

NAME = "m"
# B is stopped while this much stream is written: more than tcp_wmem max + tcp_rmem max.
VALUE = 256 * 1024


def stream_bytes_to_outrun_socket_buffers() -> int:
    """More than the primary's send buffer plus B's receive buffer can ever hold, so some of the
    stream written while B is stopped is still in the primary's memory when it is killed."""
    def max_of(path, default):
        try:
            with open(path) as f:
                return int(f.read().split()[-1])
        except (OSError, ValueError, IndexError):
            return default
    wmem = max_of("/proc/sys/net/ipv4/tcp_wmem", 4 << 20)
    rmem = max_of("/proc/sys/net/ipv4/tcp_rmem", 6 << 20)
    return wmem + rmem + (8 << 20)


def connect(port, password=None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2,
                       socket_connect_timeout=2, decode_responses=True)


class PwNode(Node):
    """A Node whose command line adds extra flags (--requirepass, --masterauth,
    --max-value-size) and whose clients authenticate."""

    def __init__(self, root, name, replicaof=None, password=None, extra=()):
        self.password = password
        self.extra = list(extra)
        if password:
            self.extra += ["--requirepass", password, "--masterauth", password]
        super().__init__(root, name, replicaof=replicaof)

    def start(self):
        self.log = open(os.path.join(self.dir, "ratelimitd.log"), "a")
        self.proc = subprocess.Popen(
            [binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--config", self.conf, *self.extra],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        wait_for(f"ratelimitd on {self.port}", lambda: self.redis().ping(), secs=20)

    def redis(self):
        return connect(self.port, self.password)

    def info(self):
        return self.redis().info("replication")

    def offset(self):
        return int(self.info().get("slave_repl_offset", 0))


class PwSentinel(SentinelProc):
    def __init__(self, root, name, master_port, password=None):
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            # down-after 3 s rather than the drill's 1 s: with 1 s, a Sentinel that has just
            # switched to a new primary can judge it down before its first PING there returns
            # (the failover's CLIENT KILL dropped its links) and fail over a second time —
            # Sentinel's race, seen in test_sentinel.py's drill, and not what these tests are
            # about.
            f.write(sentinel_conf(self.port, self.dir, master_port).replace(
                "down-after-milliseconds m 1000", "down-after-milliseconds m 3000"))
            if password:
                f.write(f"sentinel auth-pass {NAME} {password}\n")
        self.proc = subprocess.Popen([sentinel_binary(), conf, "--sentinel"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(f"sentinel on {self.port}", lambda: connect(self.port).ping(), secs=20)

    def master(self):
        return connect(self.port).execute_command("SENTINEL", "MASTER", NAME)

    def primary_port(self):
        a = connect(self.port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", NAME)
        return int(a[1]) if a else None


class Cluster:
    """A primary, two replicas and three Sentinels (quorum 2, down-after 3000 ms), plus an
    RL.CHECK loader through redis-py's Sentinel client."""

    def __init__(self, password=None, extra=()):
        self.password = password
        self.root = tempfile.mkdtemp(prefix="ratelimitd-sentinel-more-")
        self.nodes, self.sentinels = [], []
        self.state = {"stop": False, "admitted": 0, "answers": [], "errors": 0}
        self.loader = None
        self.primary = self._node("primary", None, extra)
        self.replicas = [self._node(f"replica{i}", self.primary.port, extra) for i in (1, 2)]
        p = self.primary.redis()
        p.execute_command("RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1s", "RATE", "1000/1h")
        p.execute_command("RL.LIMIT", "SET", "TIER", "gold", "RATE", "100/1s")
        p.execute_command("RL.LIMIT", "SET", "ENDPOINT", "/drill", "RATE", "1000000/1h")
        p.execute_command("RL.LIMIT", "SET", "ENDPOINT", "/tight", "RATE", "3/1h")
        p.execute_command("RL.TIER", "SET", "acme", "gold")
        # A key at its limit before the failover must stay at its limit after it.
        for _ in range(3):
            assert p.execute_command("RL.CHECK", "victim", "/tight")[0] == 1
        assert p.execute_command("RL.CHECK", "victim", "/tight")[0] == 0
        self.limits = p.execute_command("RL.LIMIT", "LIST")
        self.tier = p.execute_command("RL.TIER", "GET", "acme")
        for r in self.replicas:
            wait_for("replica link up", lambda r=r: r.info().get("master_link_status") == "up")
        self.sentinels = [PwSentinel(self.root, f"sentinel{i}", self.primary.port, password)
                          for i in (1, 2, 3)]
        for s in self.sentinels:
            wait_for("each sentinel sees 2 replicas and 2 other sentinels",
                     lambda s=s: (int(as_dict(s.master())["num-slaves"]) == 2
                                  and int(as_dict(s.master())["num-other-sentinels"]) == 2))
        self.sentinel = Sentinel([("127.0.0.1", s.port) for s in self.sentinels],
                                 sentinel_kwargs=None, socket_timeout=0.5,
                                 socket_connect_timeout=0.5)

    def _node(self, name, replicaof, extra):
        n = PwNode(self.root, name, replicaof=replicaof, password=self.password, extra=extra)
        self.nodes.append(n)
        return n

    def master(self):
        return self.sentinel.master_for(NAME, password=self.password, socket_timeout=0.5,
                                        socket_connect_timeout=0.5)

    def start_load(self, keys=20):
        def load():
            master = self.master()
            i = 0
            while not self.state["stop"]:
                try:
                    reply = master.execute_command("RL.CHECK", f"drill{i % keys}", "/drill")
                except (redis.RedisError, OSError):
                    self.state["errors"] += 1
                    time.sleep(0.02)
                    continue
                self.state["admitted"] += reply[0] == 1
                self.state["answers"].append(time.monotonic())
                i += 1

        self.loader = threading.Thread(target=load, daemon=True)
        self.loader.start()
        wait_for("load running", lambda: len(self.state["answers"]) >= 200, secs=60, every=0.02)

    def new_primary(self):
        old = self.primary.port
        port = wait_for("Sentinel to name a new primary",
                        lambda: (lambda p: p if p and p != old else None)(
                            self.sentinels[0].primary_port()), secs=90)
        return next(r for r in self.replicas if r.port == port)

    def assert_checks_go_on(self, promoted, other, killed):
        """Checks through the Sentinel client are answered by the promoted node after the
        kill, limits, tiers and a key's state are intact, and the other replica follows."""
        wait_for("checks answered after the failover",
                 lambda: sum(t > killed for t in self.state["answers"][-500:]) >= 100, secs=90)
        n = promoted.redis()
        assert n.execute_command("ROLE")[0] == "master"
        m = self.master()
        wait_for("the Sentinel client to name the promoted node",
                 lambda: m.connection_pool.get_master_address()
                 == ("127.0.0.1", promoted.port), secs=60)
        assert m.execute_command("RL.CHECK", "victim", "/tight")[0] == 0
        assert m.execute_command("RL.CHECK", "fresh", "/tight")[0] == 1
        assert n.execute_command("RL.LIMIT", "LIST") == self.limits
        assert n.execute_command("RL.TIER", "GET", "acme") == self.tier
        wait_for("the other replica to follow the new primary",
                 lambda: (other.info().get("master_port") == promoted.port
                          and other.info().get("master_link_status") == "up"), secs=90)
        role = other.redis().execute_command("ROLE")
        assert role[0] == "slave" and int(role[2]) == promoted.port, role
        assert other.redis().execute_command("RL.LIMIT", "LIST") == self.limits
        # The follower has the promoted node's state (it resynced from it).
        wait_for("the follower to have the new primary's state of `fresh`",
                 lambda: other.redis().execute_command("RL.PEEK", "fresh", "/tight")[2]
                 == n.execute_command("RL.PEEK", "fresh", "/tight")[2] == 2, secs=30)

    def dump(self):
        """Print every log's tail (pytest shows it when a test fails)."""
        for d in sorted(os.listdir(self.root)):
            for f in ("ratelimitd.log", "sentinel.log"):
                path = os.path.join(self.root, d, f)
                if os.path.exists(path):
                    with open(path, errors="replace") as fh:
                        print(f"==== {d}/{f}\n" + "".join(fh.readlines()[-40:]))

    def close(self):
        if sys.exc_info()[0] is not None:
            self.dump()
        self.state["stop"] = True
        if self.loader is not None:
            self.loader.join(10)
        for n in self.nodes:
            # A node left stopped cannot be killed cleanly: resume it first.
            if n.proc and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
        for s in self.sentinels:
            s.stop()
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def test_sentinel_promotes_the_replica_with_the_higher_offset():
    c = Cluster(extra=["--max-value-size", str(VALUE)])
    try:
        c.start_load()
        a, b = c.replicas
        p = c.primary.redis()
        payload = "x" * VALUE
        count = stream_bytes_to_outrun_socket_buffers() // VALUE + 1

        b.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        # RL.CHECK load goes on; B falls behind. The bulk makes sure the primary still holds
        # part of B's stream in memory (not in a socket buffer) when it dies.
        pipe = p.pipeline(transaction=False)
        for i in range(count):
            pipe.set(f"bulk{i}", payload)
        pipe.execute()
        # Every SET must be in the stream before its DEL, or the pump coalesces the two.
        wait_for("A to have the whole bulk", lambda: a.redis().exists(f"bulk{count - 1}"),
                 secs=30, every=0.01)
        # Then delete it again (B's stream grows further): A's data set stays small, so the full
        # resync B will need from A is quick. A full sync of the ~50 MB bulk blocks A for longer
        # than down-after-milliseconds in a debug build, and Sentinel then fails over again.
        pipe = p.pipeline(transaction=False)
        for i in range(count):
            pipe.delete(f"bulk{i}")
        pipe.set("bulk-done", "1")
        pipe.execute()
        # The pump streams what was written within a millisecond; A reads it at once.
        wait_for("A to have the whole stream", lambda: a.redis().exists("bulk-done"),
                 secs=30, every=0.01)
        c.primary.kill9()
        killed = time.monotonic()
        time.sleep(0.1)
        b.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        # Sentinel marks a node down after 1000 ms without a reply; B was stopped for less.
        assert resumed - killed < 0.2, resumed - killed
        print(f"B stopped for {resumed - stopped:.3f}s")
        assert resumed - stopped < 0.9, f"B was stopped {resumed - stopped:.2f}s"

        off_a = a.offset()
        # B drains what its socket held, then sees the closed link: wait until it stops moving.
        last = [None]

        def settled():
            now = b.offset()
            done = now == last[0] and b.info().get("master_link_status") == "down"
            last[0] = now
            return done
        wait_for("B's offset to settle", settled, secs=10, every=0.1)
        off_b = last[0]
        print(f"offsets after the kill: A={off_a} B={off_b}")
        assert off_b < off_a, (off_a, off_b)
        assert off_a - off_b > VALUE, (off_a, off_b)

        promoted = c.new_primary()
        assert promoted is a, f"Sentinel promoted {promoted.port}, offsets A={off_a} B={off_b}"
        c.assert_checks_go_on(a, b, killed)
        assert a.redis().exists("bulk-done") and not a.redis().exists("bulk0")
        wait_for("B to have A's data", lambda: b.redis().exists("bulk-done"), secs=30)
        assert not b.redis().exists("bulk0")
        # Sentinel settles on A: no second failover (e.g. because A stalled while syncing B).
        for s in c.sentinels:
            wait_for("every Sentinel to name A", lambda s=s: s.primary_port() == a.port, secs=30)
        time.sleep(2)
        assert all(s.primary_port() == a.port for s in c.sentinels)
    finally:
        c.close()


def test_sentinel_failover_with_auth_pass():
    pw = "s3cret-pw"
    c = Cluster(password=pw)
    try:
        # Unauthenticated clients are refused everywhere, Sentinel's INFO/PUBLISH included.
        for n in c.nodes:
            try:
                connect(n.port).execute_command("INFO", "replication")
                raise AssertionError("INFO without AUTH was answered")
            except redis.AuthenticationError:
                pass
        c.start_load()
        c.primary.kill9()
        killed = time.monotonic()
        promoted = c.new_primary()
        other = next(r for r in c.replicas if r is not promoted)
        c.assert_checks_go_on(promoted, other, killed)

        # The restarted old primary (same flags: --masterauth) is converted into a replica of
        # the new one, authenticating to it.
        c.primary.start()
        wait_for("Sentinel to convert the restarted old primary into a replica",
                 lambda: (c.primary.info().get("role") == "slave"
                          and c.primary.info().get("master_port") == promoted.port
                          and c.primary.info().get("master_link_status") == "up"), secs=90)
        assert c.primary.redis().execute_command("RL.LIMIT", "LIST") == c.limits
        for s in c.sentinels:
            wait_for("every Sentinel to see the new primary with 2 replicas",
                     lambda s=s: (s.primary_port() == promoted.port
                                  and int(as_dict(s.master())["num-slaves"]) == 2
                                  and "s_down" not in as_dict(s.master())["flags"]), secs=60)
    finally:
        c.close()
