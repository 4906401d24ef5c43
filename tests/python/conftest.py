"""Harness for the key-value and memcached tests: start the real ratelimitd with
``--memcached-port 0`` and read both ports from its log.

The binary is ``$RATELIMITD_BIN`` (set by scripts/test) or the workspace's
``target/debug/ratelimitd``; without it the tests fail, never skip.
"""

import os
import pathlib
import shutil
import subprocess
import tempfile
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
READY = "ready to accept connections on "
MEMCACHED = "memcached listener on "


def binary() -> str:
    path = os.environ.get("RATELIMITD_BIN") or str(REPO / "target" / "debug" / "ratelimitd")
    if not os.path.exists(path):
        pytest.fail(f"ratelimitd binary not found at {path}: run `cargo build -p ratelimitd` "
                    "or set RATELIMITD_BIN", pytrace=False)
    return path


class Daemon:
    def __init__(self, *args: str):
        self.dir = tempfile.mkdtemp(prefix="ratelimitd-pytest-")
        self.proc = subprocess.Popen(
            [binary(), "--bind", "127.0.0.1", "--port", "0", "--memcached-port", "0",
             "--dir", self.dir, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        found = threading.Event()
        self.port = None
        self.mc_port = None

        def drain():
            for line in self.proc.stderr:
                if MEMCACHED in line and self.mc_port is None:
                    self.mc_port = int(line.rsplit(":", 1)[1])
                if READY in line and self.port is None:
                    self.port = int(line.rsplit(":", 1)[1])
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(20) or self.port is None or self.mc_port is None:
            self.kill()
            raise RuntimeError("ratelimitd did not report that it is ready")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def redis(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                           decode_responses=True)

    def memcache(self):
        from pymemcache.client.base import Client
        return Client(("127.0.0.1", self.mc_port), connect_timeout=5, timeout=5)


@pytest.fixture
def daemon():
    d = Daemon()
    yield d
    d.kill()
