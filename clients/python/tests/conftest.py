"""Test harness: real ratelimitd daemons on loopback, started by ``ratelimitd_testing`` (in
tests/python, on the path through ``pythonpath`` in pyproject.toml), one worker thread each.
Every daemon started is killed at the end of its test and its data directory removed.
"""

import pytest

import ratelimitd_testing


class Daemon(ratelimitd_testing.Daemon):
    def __init__(self, port: int = 0, extra_args=()):
        super().__init__("--threads", "1", *extra_args, port=port)

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
