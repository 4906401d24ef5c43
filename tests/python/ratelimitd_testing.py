"""Start the real ratelimitd for a Python test, and find the tools the tests run.

Shared by the daemon's Python tests (this directory) and the Python client's
(``clients/python/tests``, which put this directory on their path through ``pythonpath`` in
``clients/python/pyproject.toml``). Plain Python with no pytest fixture, so that
``scripts/sentinel-drill`` can run ``test_sentinel.py`` as a script.

- ``binary()``: the daemon, ``$RATELIMITD_BIN`` (scripts/test sets it) or the workspace's
  ``target/debug/ratelimitd``.
- ``Daemon``: one daemon on loopback on a free port, in its own temporary ``--dir``, ready when
  the constructor returns; ``kill()`` stops it and removes that directory.
- ``sentinel_binary()``, ``free_port()``: for the Sentinel drills.

A missing binary fails the test with the command that provides it: a test never skips.
"""

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading

REPO = pathlib.Path(__file__).resolve().parents[2]
READY = "ready to accept connections on "
MEMCACHED = "memcached listener on "
TLS = "TLS listening on "
MEMCACHED_TLS = "memcached TLS listener on "
# How long a daemon has to print its ready line.
READY_TIMEOUT = 20


def fail(message: str):
    """Fails the running test with ``message`` and no traceback (outside pytest, exits)."""
    try:
        import pytest
    except ImportError:
        raise SystemExit(message) from None
    pytest.fail(message, pytrace=False)


def binary() -> str:
    path = os.environ.get("RATELIMITD_BIN") or str(REPO / "target" / "debug" / "ratelimitd")
    if not os.path.exists(path):
        fail(f"ratelimitd binary not found at {path}: run `cargo build -p ratelimitd` "
             "or set RATELIMITD_BIN")
    return path


def sentinel_binary() -> str:
    path = shutil.which("redis-sentinel") or shutil.which("redis-server")
    if path is None:
        fail("redis-sentinel is required (apt-get install redis-sentinel)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """``ratelimitd --bind 127.0.0.1 --port <port> --dir <fresh temp dir> <args>``, started and
    ready. ``port`` 0 means a free one, read from the ready line; ``mc_port`` is the memcached
    listener's when ``args`` start one (``--memcached-port 0``); ``tls_port`` and
    ``mc_tls_port`` the TLS listeners' (``--tls-port 0``, ``--memcached-tls-port 0``)."""

    def __init__(self, *args: str, port: int = 0):
        # Its own data directory: the daemon locks it, and persisted limits must not leak
        # from one test into another.
        self.dir = tempfile.mkdtemp(prefix="ratelimitd-pytest-")
        self.proc = subprocess.Popen(
            [binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", self.dir, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        found = threading.Event()
        self.port = None
        self.mc_port = None
        self.tls_port = None
        self.mc_tls_port = None

        def drain():
            # Reads to the end, so that the daemon never blocks on a full pipe.
            for line in self.proc.stderr:
                if MEMCACHED in line and self.mc_port is None:
                    self.mc_port = int(line.rsplit(":", 1)[1])
                if TLS in line and self.tls_port is None:
                    self.tls_port = int(line.rsplit(":", 1)[1])
                if MEMCACHED_TLS in line and self.mc_tls_port is None:
                    self.mc_tls_port = int(line.rsplit(":", 1)[1])
                if READY in line and self.port is None:
                    self.port = int(line.rsplit(":", 1)[1])
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        wants_mc = "--memcached-port" in args
        if (not found.wait(READY_TIMEOUT) or self.port is None
                or (wants_mc and self.mc_port is None)):
            self.kill()
            raise RuntimeError("ratelimitd did not report that it is ready")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL, wait for the process, remove its data directory. Calling it again is
        harmless."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
