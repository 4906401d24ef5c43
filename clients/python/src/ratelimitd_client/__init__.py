"""ratelimitd-client: use several ratelimitd daemons as one rate limiter, from Python.

Layout (mirrors the Rust crate in ``client/``):

- ``ring``: FNV-1a 64 + murmur3 finaliser and the rendezvous ring, as specified in
  docs/HASHING.md and checked against ``clients/vectors/ring.json``.
- ``fallback``: the bounded local GCRA used in degraded mode (a node unreachable).
- ``client``: ``Client`` itself: routing, failover between a node's addresses (or to the
  primary Redis Sentinel names, for a ``Node.from_sentinel``), degraded mode, limit management.
"""

from .client import (
    Client,
    ClientError,
    Decision,
    Node,
    PartialError,
    ServerError,
    Stats,
    UnavailableError,
    Window,
)
from .fallback import Fallback, FallbackLimit
from .ring import Ring, default_route_key, fnv1a64, mix64

__all__ = [
    "Client",
    "ClientError",
    "Decision",
    "Fallback",
    "FallbackLimit",
    "Node",
    "PartialError",
    "Ring",
    "ServerError",
    "Stats",
    "UnavailableError",
    "Window",
    "default_route_key",
    "fnv1a64",
    "mix64",
]
