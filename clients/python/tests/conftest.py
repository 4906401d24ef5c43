"""Test harness: start real ratelimitd daemons on loopback.

The binary is ``$RATELIMITD_BIN`` (set by scripts/test) or the workspace's
``target/debug/ratelimitd``. A missing binary fails the tests with that instruction: they never
skip. Every daemon started is killed at the end of its test.
"""

import os
import pathlib
import subprocess
import tempfile
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
READY = "ready to accept connections on "


def binary() -> str:
    path = os.environ.get("RATELIMITD_BIN") or str(REPO / "target" / "debug" / "ratelimitd")
    if not os.path.exists(path):
        pytest.fail(f"ratelimitd binary not found at {path}: run `cargo build -p ratelimitd` "
                    "or set RATELIMITD_BIN", pytrace=False)
    return path


class Daemon:
    def __init__(self, port: int = 0, extra_args=()):
        # Its own data directory: the daemon locks it, and persisted limits must not leak
        # from one test into another.
        self.dir = tempfile.mkdtemp(prefix="rld-py-test-")
        self.proc = subprocess.Popen(
            [binary(), "--bind", "127.0.0.1", "--port", str(port), "--threads", "1",
             "--dir", self.dir, *extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        found = threading.Event()
        self.port = None

        def drain():
            for line in self.proc.stderr:
                if self.port is None and READY in line:
                    self.port = int(line.rsplit(":", 1)[1])
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(20) or self.port is None:
            self.kill()
            raise RuntimeError("ratelimitd did not report that it is ready")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def conn(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, protocol=2)


@pytest.fixture
def daemons():
    """A factory: ``daemons(n)`` starts n daemons, ``daemons.on(port)`` one on a given port,
    ``daemons.with_args(*args)`` one with extra arguments (e.g. ``--replicaof host:port``)."""
    started = []

    class Factory:
        def __call__(self, n):
            ds = [Daemon() for _ in range(n)]
            started.extend(ds)
            return ds

        def on(self, port):
            d = Daemon(port)
            started.append(d)
            return d

        def with_args(self, *args):
            d = Daemon(extra_args=args)
            started.append(d)
            return d

    yield Factory()
    for d in started:
        d.kill()
