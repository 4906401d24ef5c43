"""Automatic failover driven by stock Redis Sentinel, end to end on loopback.

A ratelimitd primary and two replicas (each with its own --config file, which Sentinel's
CONFIG REWRITE keeps current), three Sentinels (quorum 2, down-after 1000 ms, failover-timeout
10 s, each in its own directory because Sentinel rewrites its conf), RL.CHECK load through
redis-py's ``Sentinel`` client, then ``kill -9`` of the primary. The drill asserts that a
replica is promoted (the one with the higher offset when they differ), the other follows it,
the checks continue on the new primary with every limit and tier intact, and the restarted old
primary is turned into a replica of the new one by Sentinel.

Assertions are about state and counts only, with generous deadlines. ``drill()`` also returns
the measurements docs/PERFORMANCE.md records; scripts/sentinel-drill prints them.
Needs ``redis-sentinel`` (scripts/test installs it) and the daemon binary ($RATELIMITD_BIN).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import redis
from redis.sentinel import Sentinel

from ratelimitd_testing import binary, free_port, sentinel_binary


def wait_for(what, f, secs=60.0, every=0.1):
    deadline = time.monotonic() + secs
    last = None
    while time.monotonic() < deadline:
        try:
            last = f()
            if last:
                return last
        except (redis.RedisError, OSError) as e:
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {secs}s waiting for {what} (last: {last!r})")


def client(port) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2,
                       decode_responses=True)


class Node:
    """One ratelimitd process with a fixed port, data dir and config file (kept across
    restarts, as a real deployment's would be)."""

    def __init__(self, root, name, replicaof=None):
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "ratelimitd.toml")
        with open(self.conf, "w") as f:
            f.write(f"# {name}, under Sentinel\nsave-interval = 1\n")
            if replicaof:
                f.write(f'replicaof = "127.0.0.1:{replicaof}"\n')
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "ratelimitd.log"), "a")
        self.proc = subprocess.Popen(
            [binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--config", self.conf],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        wait_for(f"ratelimitd on {self.port}", lambda: client(self.port).ping(), secs=20)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()

    def info(self):
        return client(self.port).info("replication")


class SentinelProc:
    def __init__(self, root, name, master_port):
        self.port = free_port()
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(sentinel_conf(self.port, self.dir, master_port))
        self.proc = subprocess.Popen([sentinel_binary(), conf, "--sentinel"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(f"sentinel on {self.port}", lambda: client(self.port).ping(), secs=20)

    def master(self):
        return client(self.port).execute_command("SENTINEL", "MASTER", "m")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def sentinel_conf(port, directory, master_port):
    """The sentinel.conf docs/OPERATIONS.md shows, with the drill's ports."""
    return (f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {directory}\n"
            f"logfile {directory}/sentinel.log\n"
            f"sentinel monitor m 127.0.0.1 {master_port} 2\n"
            "sentinel down-after-milliseconds m 1000\n"
            "sentinel failover-timeout m 10000\n"
            "sentinel parallel-syncs m 1\n")


def as_dict(flat):
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2]))


def drill(keys=20, limit=1000):
    root = tempfile.mkdtemp(prefix="ratelimitd-sentinel-")
    nodes, sentinels = [], []
    state = {"stop": False, "admitted": [0] * keys, "answers": [], "errors": 0}
    loader = None
    try:
        primary = Node(root, "primary")
        nodes.append(primary)
        replicas = [Node(root, f"replica{i}", replicaof=primary.port) for i in (1, 2)]
        nodes.extend(replicas)
        p = client(primary.port)
        p.execute_command("RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1s", "RATE", "1000/1h")
        p.execute_command("RL.LIMIT", "SET", "ENDPOINT", "/login", "RATE", "5/1m", "BURST", "2")
        p.execute_command("RL.LIMIT", "SET", "TIER", "gold", "RATE", "100/1s")
        p.execute_command("RL.LIMIT", "SET", "ENDPOINT", "/drill", "RATE", f"{limit}/1h")
        p.execute_command("RL.TIER", "SET", "acme", "gold")
        limits_before = p.execute_command("RL.LIMIT", "LIST")
        tier_before = p.execute_command("RL.TIER", "GET", "acme")
        for r in replicas:
            wait_for("replica link up", lambda r=r: r.info().get("master_link_status") == "up")

        sentinels = [SentinelProc(root, f"sentinel{i}", primary.port) for i in (1, 2, 3)]
        for s in sentinels:
            wait_for("each sentinel sees 2 replicas and 2 other sentinels",
                     lambda s=s: (int(as_dict(s.master())["num-slaves"]) == 2
                                  and int(as_dict(s.master())["num-other-sentinels"]) == 2))

        sentinel = Sentinel([("127.0.0.1", s.port) for s in sentinels], socket_timeout=0.5,
                            socket_connect_timeout=0.5)

        def load():
            master = sentinel.master_for("m", socket_timeout=0.5, socket_connect_timeout=0.5)
            i = 0
            while not state["stop"]:
                k = i % keys
                try:
                    reply = master.execute_command("RL.CHECK", f"drill{k}", "/drill")
                except (redis.RedisError, OSError):
                    state["errors"] += 1
                    time.sleep(0.02)
                    continue
                if reply[0] == 1:
                    state["admitted"][k] += 1
                state["answers"].append(time.monotonic())
                i += 1

        loader = threading.Thread(target=load, daemon=True)
        began = time.monotonic()
        loader.start()
        wait_for("half of every key's allowance used",
                 lambda: min(state["admitted"]) >= limit // 2, secs=120, every=0.02)

        primary.kill9()
        killed = time.monotonic()
        # The replicas' offsets stop where the dead primary's stream stopped.
        time.sleep(0.2)
        offsets = {r.port: int(r.info().get("slave_repl_offset", 0)) for r in replicas}

        new_port = wait_for(
            "Sentinel to name a new primary",
            lambda: (lambda a: int(a[1]) if a and int(a[1]) != primary.port else None)(
                client(sentinels[0].port).execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m")))
        first_promoted = new_port
        # Sentinel may fail over a second time: with down-after-milliseconds 1000 (the drill's
        # setting), a Sentinel that has just switched to the new primary can judge it down
        # before its first PING round trip there completes (its links were dropped by the
        # failover's CLIENT KILL), and elect the other replica. That is Sentinel's decision,
        # not a fault of the node; what must hold is that the Sentinels settle on one primary
        # and everything below holds for it. So wait until all three agree and stay agreed.
        def settled():
            names = {int(client(s.port).execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m")[1]) for s in sentinels}
            return names.pop() if len(names) == 1 else None
        stable = {"port": None, "since": 0.0}

        def agreed_for_3s():
            port = settled()
            now = time.monotonic()
            if port is None or port != stable["port"]:
                stable.update(port=port, since=now)
                return None
            return port if now - stable["since"] >= 3.0 else None
        new_port = wait_for("the Sentinels to agree on one primary", agreed_for_3s, secs=90)
        promoted = next(r for r in replicas if r.port == new_port)
        other = next(r for r in replicas if r.port != new_port)
        wait_for("every key exhausted on the new primary",
                 lambda: min(state["admitted"]) >= limit, secs=120)
        first = next((t for t in state["answers"] if t > killed), None)
        state["stop"] = True
        loader.join(10)

        n = client(new_port)
        assert n.execute_command("ROLE")[0] == "master"
        wait_for("the other replica to follow the new primary",
                 lambda: (other.info().get("master_port") == new_port
                          and other.info().get("master_link_status") == "up"))
        role = client(other.port).execute_command("ROLE")
        assert role[0] == "slave" and int(role[2]) == new_port, role
        # Sentinel promotes the replica with the higher offset (checked when they differ and
        # there was only one failover; a second one starts from the first's state).
        if new_port == first_promoted and offsets[promoted.port] != offsets[other.port]:
            assert offsets[promoted.port] > offsets[other.port], offsets
        assert n.execute_command("RL.LIMIT", "LIST") == limits_before
        assert n.execute_command("RL.TIER", "GET", "acme") == tier_before
        assert client(other.port).execute_command("RL.LIMIT", "LIST") == limits_before

        # GCRA refills one request every 3600/limit seconds; what the drill's duration
        # refilled is legitimately admitted on top of the limit.
        refills = int((time.monotonic() - began) / (3600.0 / limit)) + 1
        over = [max(0, a - limit - refills) for a in state["admitted"]]

        # The old primary comes back on its port with its data dir and config: Sentinel turns
        # it into a replica of the new primary (after ~8 s of it claiming to be a primary).
        primary.start()
        restarted = time.monotonic()
        wait_for("Sentinel to convert the restarted old primary into a replica",
                 lambda: (primary.info().get("role") == "slave"
                          and primary.info().get("master_port") == new_port
                          and primary.info().get("master_link_status") == "up"), secs=90)
        converted = time.monotonic() - restarted
        old = client(primary.port)
        assert old.execute_command("RL.LIMIT", "LIST") == limits_before
        assert f'replicaof = "127.0.0.1:{new_port}"' in open(primary.conf).read()
        try:
            old.execute_command("RL.CHECK", "x", "/drill")
            raise AssertionError("a demoted primary accepted a write")
        except redis.ReadOnlyError:
            pass
        return {
            "kill_to_first_answer_s": (first - killed) if first else None,
            "over_admission_max": max(over),
            "over_admission_total": sum(over),
            "keys": keys,
            "limit": limit,
            "offsets_at_kill": offsets,
            "promoted": new_port,
            "failovers": 1 if new_port == first_promoted else 2,
            "client_errors": state["errors"],
            "old_primary_converted_s": converted,
        }
    except BaseException:
        # Show what every process said before the failure: the tail of each log in the drill's
        # directory (ratelimitd.log per node, sentinel.log per Sentinel).
        for dirpath, _, files in os.walk(root):
            for name in files:
                if name.endswith(".log"):
                    path = os.path.join(dirpath, name)
                    with open(path, errors="replace") as f:
                        tail = f.readlines()[-40:]
                    print(f"==== {path}\n" + "".join(tail))
        raise
    finally:
        state["stop"] = True
        if loader is not None:
            loader.join(10)
        for s in sentinels:
            s.stop()
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_sentinel_failover_drill():
    result = drill()
    assert result["kill_to_first_answer_s"] is not None
    # Replication is asynchronous (drained every millisecond), so a few checks admitted by the
    # dead primary may not have reached the replicas; the bound is generous on purpose. When
    # Sentinel fails over a second time (docs/OPERATIONS.md), the first promoted primary can
    # live on and take writes until Sentinel converts it (seen in the client drills: tens of
    # admissions per key), which is Sentinel's split brain: then the figure is reported (the
    # drill prints its result), and the rest of the drill's assertions still hold.
    if result["failovers"] == 1:
        assert result["over_admission_total"] <= 100, result
    else:
        print("second failover; over-admission", result["over_admission_total"])


if __name__ == "__main__":
    import json
    print(json.dumps(drill(), indent=2))
