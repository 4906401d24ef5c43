"""Harness for the key-value and memcached tests: the real ratelimitd with
``--memcached-port 0``, both ports read from its log (``ratelimitd_testing.Daemon``).
"""

import pytest

import ratelimitd_testing


class Daemon(ratelimitd_testing.Daemon):
    def __init__(self, *args: str):
        super().__init__("--memcached-port", "0", *args)

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
