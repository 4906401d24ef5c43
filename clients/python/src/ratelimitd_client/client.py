"""The Python client: routes each check to the daemon that owns its key, fails over between a
node's addresses, and decides locally (boundedly) while a node is unreachable.

It mirrors the Rust crate (``client/src/``) so the two libraries behave the same in an outage:

- Routing: the rendezvous ring of docs/HASHING.md over node *names* (default: the primary
  address; for a Sentinel-backed node, its master name), keyed by
  ``default_route_key(client, endpoint)`` unless ``route_key`` is given.
- Failover: the address that last accepted a write is tried first, then the others in list
  order. A connection error or timeout puts that address in back-off (``down_backoff``); a
  ``READONLY`` (an unpromoted replica) just moves on to the next address. A write accepted by
  another address makes it the preferred one: that is how a promotion is followed.
- Sentinel: a node declared with ``Node.from_sentinel`` has no fixed address; redis-py's
  ``Sentinel(...).master_for(name)`` asks the Sentinels for the current primary whenever it opens
  a connection. A connection error or timeout (including "no Sentinel names a healthy primary",
  i.e. a failover in progress) puts the node in back-off like a fixed address; a ``READONLY``
  (the primary was demoted) drops that connection and is retried once at once, on the primary
  the Sentinels name now. The node's ring name is its master name, so a failover moves no key.
- Degraded mode: when no address of the owning node answers, ``check`` decides from the local
  ``Fallback`` allowance and counts it in ``stats()``; it never raises for an outage.
- Timeouts are explicit and short (50 ms connect, 10 ms per command by default), and redis-py's
  own retries are switched off: the failover loop above is the only retry. The same timeouts
  apply to the Sentinels (each is asked in turn until one names a healthy primary).

Limits and tiers are configuration that every node may need, so ``set_limit``/``del_limit``/
``set_tier``/``del_tier`` go to every node and raise ``PartialError`` when some fail.
"""

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import redis
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, MasterDownError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from .fallback import Fallback, FallbackLimit
from .ring import Ring, default_route_key


class ClientError(Exception):
    """Base of the errors this client raises."""


class UnavailableError(ClientError):
    """Every address of a node failed or is in back-off."""

    def __init__(self, node: str, reason: str):
        super().__init__(f"node '{node}' is unavailable: {reason}")
        self.node = node
        self.reason = reason


class ServerError(ClientError):
    """The daemon rejected the command itself (bad argument...): not retried elsewhere."""

    def __init__(self, node: str, message: str):
        super().__init__(f"node '{node}' replied: {message}")
        self.node = node
        self.message = message


class ReplyError(ClientError):
    """A reply did not have the shape the command promises."""


class PartialError(ClientError):
    """A change sent to every node failed on some; the others applied it (retry: idempotent)."""

    def __init__(self, total: int, failed: List[ClientError]):
        super().__init__(f"{len(failed)} of {total} nodes failed: "
                         + "; ".join(str(e) for e in failed))
        self.total = total
        self.failed = failed


SentinelAddr = Union[str, Tuple[str, int]]


def _sentinel_addr(a: SentinelAddr) -> Tuple[str, int]:
    if isinstance(a, str):
        host, sep, port = a.rpartition(":")
        if not sep:
            raise ValueError(f"Sentinel address {a!r} is not host:port")
        return host.strip("[]") or "127.0.0.1", int(port)
    host, port = a
    return str(host), int(port)


@dataclass(frozen=True)
class Node:
    """One daemon: a primary address (``host:port`` or ``redis://`` URL), optional replicas,
    and the name the ring hashes (default: the primary address).

    Or, built with ``Node.from_sentinel``, a daemon whose primary is whatever the Redis
    Sentinels monitoring ``master_name`` say it is now (``primary`` is then empty). Its ring
    name defaults to ``master_name``: it must not depend on which process is primary, or keys
    would move at every failover."""

    primary: str
    replicas: Tuple[str, ...] = ()
    name: Optional[str] = None
    sentinels: Tuple[Tuple[str, int], ...] = ()
    master_name: Optional[str] = None
    # AUTH for the node's daemons (a password in a redis:// URL wins) and, for a
    # Sentinel-backed node, for its Sentinels. Kept out of repr().
    password: Optional[str] = field(default=None, repr=False)
    sentinel_password: Optional[str] = field(default=None, repr=False)

    def __post_init__(self):
        if self.sentinels or self.master_name is not None:
            if not self.sentinels or not self.master_name:
                raise ValueError("a Sentinel-backed node needs Sentinel addresses and a master name")
            if self.primary or self.replicas:
                raise ValueError("a Sentinel-backed node has no fixed primary or replicas")
            object.__setattr__(self, "sentinels",
                               tuple(_sentinel_addr(a) for a in self.sentinels))
        elif self.sentinel_password is not None:
            raise ValueError("sentinel_password is for a Sentinel-backed node")

    @classmethod
    def from_sentinel(cls, sentinels: Iterable[SentinelAddr], master_name: str, *,
                      name: Optional[str] = None, password: Optional[str] = None,
                      sentinel_password: Optional[str] = None) -> "Node":
        """A node found through Redis Sentinel: ``sentinels`` are ``(host, port)`` pairs or
        ``"host:port"`` strings, ``master_name`` the name they monitor the node's primary under
        (``sentinel monitor <master_name> ...``). ``password`` is sent to the daemons,
        ``sentinel_password`` to the Sentinels. The ring hashes ``name``, default
        ``master_name``."""
        return cls("", (), name, tuple(sentinels), master_name, password, sentinel_password)

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def ring_name(self) -> str:
        if self.name is not None:
            return self.name
        return self.master_name if self.is_sentinel else self.primary


@dataclass(frozen=True)
class Decision:
    """RL.CHECK's reply with -1 sentinels as None; ``degraded`` when decided locally.
    ``node`` is the node's ring name, ``address`` the ``host:port`` that answered (for a
    Sentinel-backed node, the primary the Sentinels named), None when degraded."""

    allowed: bool
    limit: Optional[int]
    remaining: Optional[int]
    retry_after_ms: Optional[int]
    reset_after_ms: Optional[int]
    node: str
    address: Optional[str]
    degraded: bool = False


@dataclass(frozen=True)
class Window:
    """``RATE <rate>/<period> BURST <burst>``; the period in whole milliseconds."""

    rate: int
    period_ms: int
    burst: int = 0

    def rate_arg(self) -> str:
        if self.period_ms < 1:
            raise ValueError("period must be at least 1 ms")
        for unit, suffix in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")):
            if self.period_ms % unit == 0:
                return f"{self.rate}/{self.period_ms // unit}{suffix}"
        return f"{self.rate}/{self.period_ms}ms"

    @staticmethod
    def parse_rate(text: str) -> Tuple[int, int]:
        n, _, period = text.partition("/")
        digits = period.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = period[len(digits):]
        mult = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]
        return int(n), int(digits) * mult


@dataclass
class Stats:
    """What the client did (see ``Client.stats``)."""

    checks: int = 0
    degraded_allowed: int = 0
    degraded_denied: int = 0
    degraded_table_full: int = 0
    # A write answered by another address than before (fixed node), or by another primary
    # than the last answer's (Sentinel-backed node).
    failovers: int = 0
    # Connection errors and timeouts; for a Sentinel-backed node also "no Sentinel names a
    # healthy primary" (a failover in progress) and unreachable Sentinels.
    transport_errors: int = 0
    # READONLY/LOADING/MASTERDOWN replies (for a Sentinel-backed node: from a demoted primary).
    readonly_replies: int = 0


Scope = Union[str, Sequence[str]]


def _scope_args(scope: Scope) -> List[str]:
    """``"DEFAULT"`` or ``["CLIENT", "acme", "ENDPOINT", "/x"]`` as RL.LIMIT takes it."""
    return [scope] if isinstance(scope, str) else list(scope)


@dataclass
class _Addr:
    text: str
    conn: redis.Redis
    down_until: float = 0.0
    # Set for a Sentinel-backed node: ``conn`` is ``sentinel.master_for(...)``, ``text`` a label
    # for errors, and ``answered`` the primary ("host:port") that answered last.
    sentinel: Optional[Sentinel] = None
    answered: Optional[str] = None

    def master_address(self) -> Optional[str]:
        """The primary the Sentinel-backed pool connected to last (None before any)."""
        addr = getattr(self.conn.connection_pool, "master_address", None)
        return None if addr is None else f"{addr[0]}:{addr[1]}"


def _demoted(e: BaseException) -> bool:
    """redis-py's Sentinel connection turns ``READONLY`` from the primary it was using (now
    demoted) into a ConnectionError raised while handling the ReadOnlyError."""
    return isinstance(e, RedisConnectionError) and isinstance(e.__context__, ReadOnlyError)


@dataclass
class _NodeState:
    name: str
    addrs: List[_Addr]
    preferred: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _NotWritable(Exception):
    pass


class Client:
    """A client for a set of ratelimitd daemons. Thread-safe; share one per process."""

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        connect_timeout: float = 0.05,
        command_timeout: float = 0.01,
        down_backoff: float = 0.25,
        pool_size: int = 16,
        fallback: FallbackLimit = FallbackLimit(),
        route_key: Callable[[str, str], bytes] = default_route_key,
    ):
        if not nodes:
            raise ClientError("no node configured")
        self._ring = Ring([n.ring_name for n in nodes])
        self._route_key = route_key
        self._down_backoff = down_backoff
        self._fallback = Fallback(fallback)
        self._stats = Stats()
        self._stats_lock = threading.Lock()
        self._nodes: List[_NodeState] = []
        for n in nodes:
            if n.is_sentinel:
                addrs = [self._via_sentinel(n, connect_timeout, command_timeout, pool_size)]
            else:
                addrs = []
                for text in (n.primary, *n.replicas):
                    addrs.append(_Addr(text, self._connect(text, connect_timeout,
                                                           command_timeout, pool_size,
                                                           n.password)))
            self._nodes.append(_NodeState(n.ring_name, addrs))

    @staticmethod
    def _via_sentinel(n: Node, connect_timeout: float, command_timeout: float,
                      pool_size: int) -> _Addr:
        """A Sentinel-backed node: one "address" whose pool asks the Sentinels for the primary
        each time it opens a connection. The client's timeouts, and no redis-py retry, apply
        both to the Sentinels and to the primary."""
        sentinel = Sentinel(
            list(n.sentinels),
            sentinel_kwargs=dict(
                socket_connect_timeout=connect_timeout,
                socket_timeout=command_timeout,
                retry=Retry(NoBackoff(), 0),
                password=n.sentinel_password,
                protocol=2,
            ),
        )
        conn = sentinel.master_for(
            n.master_name,
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=pool_size,
            password=n.password,
            protocol=2,
        )
        return _Addr(f"primary of '{n.master_name}' (via Sentinel)", conn, sentinel=sentinel)

    @staticmethod
    def _connect(text: str, connect_timeout: float, command_timeout: float,
                 pool_size: int, password: Optional[str] = None) -> redis.Redis:
        opts = dict(
            socket_connect_timeout=connect_timeout,
            socket_timeout=command_timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=pool_size,
            protocol=2,
        )
        if password is not None:
            opts["password"] = password
        if "://" in text:
            return redis.Redis.from_url(text, **opts)
        host, _, port = text.rpartition(":")
        return redis.Redis(host=host or "127.0.0.1", port=int(port), **opts)

    def _bump(self, name: str) -> None:
        with self._stats_lock:
            setattr(self._stats, name, getattr(self._stats, name) + 1)

    def stats(self) -> Stats:
        """A snapshot of the counters, degraded decisions included."""
        with self._stats_lock:
            return Stats(**vars(self._stats))

    def node_names(self) -> List[str]:
        return [n.name for n in self._nodes]

    def node_for(self, client: str, endpoint: str) -> int:
        """Index of the node owning (client, endpoint)."""
        idx = self._ring.locate(self._route_key(client, endpoint))
        return 0 if idx is None else idx

    def preferred_addresses(self) -> List[str]:
        """Per node, the address tried first; for a Sentinel-backed node, the primary that
        answered last (its label until one has)."""
        out = []
        for n in self._nodes:
            a = n.addrs[n.preferred]
            out.append((a.answered or a.text) if a.sentinel is not None else a.text)
        return out

    def _call(self, addr: _Addr, args: Sequence) -> object:
        """One command on one address. A Sentinel-backed address that meets a demoted primary
        (READONLY) drops its idle connections and tries once more at once: the reconnection asks
        the Sentinels, who normally name the new primary by the time the old one is demoted."""
        if addr.sentinel is None:
            return addr.conn.execute_command(*args)
        try:
            return addr.conn.execute_command(*args)
        except RedisConnectionError as e:
            if not _demoted(e):
                raise
            self._bump("readonly_replies")
            addr.conn.connection_pool.disconnect(inuse_connections=False)
        return addr.conn.execute_command(*args)

    def _exec(self, node: int, args: Sequence, write: bool) -> Tuple[object, str]:
        """Run a command on a node: preferred address first, then the others in order."""
        st = self._nodes[node]
        preferred = st.preferred
        order = [preferred] + [i for i in range(len(st.addrs)) if i != preferred]
        reason = "every address is in back-off after a failure"
        for i in order:
            addr = st.addrs[i]
            if addr.down_until > time.monotonic():
                continue
            try:
                value = self._call(addr, args)
            except (ReadOnlyError, BusyLoadingError, MasterDownError) as e:
                self._bump("readonly_replies")
                reason = f"{addr.text}: {e}"
                continue
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                if _demoted(e):
                    # Still READONLY after asking the Sentinels again: like a replica of a
                    # fixed node, not an outage of the address (no back-off).
                    self._bump("readonly_replies")
                    reason = f"{addr.text}: {e}"
                    continue
                self._bump("transport_errors")
                addr.down_until = time.monotonic() + self._down_backoff
                reason = f"{addr.text}: {e}"
                continue
            except ResponseError as e:
                raise ServerError(st.name, str(e)) from e
            addr.down_until = 0.0
            if addr.sentinel is not None:
                # The primary the Sentinels named; a new one since the last answer is a failover.
                text = addr.master_address() or addr.text
                with st.lock:
                    moved = addr.answered is not None and addr.answered != text
                    addr.answered = text
                if moved:
                    self._bump("failovers")
                return value, text
            if write and i != preferred:
                with st.lock:
                    st.preferred = i
                self._bump("failovers")
            return value, addr.text
        raise UnavailableError(st.name, reason)

    def check(self, client: str, endpoint: str, cost: int = 1) -> Decision:
        """RL.CHECK on the owning node, or a bounded local decision when it is unreachable."""
        node = self.node_for(client, endpoint)
        try:
            value, address = self._exec(node, ("RL.CHECK", client, endpoint, "COST", cost),
                                        write=True)
        except UnavailableError:
            return self._degraded(node, client, endpoint, cost)
        self._bump("checks")
        if not isinstance(value, list) or len(value) != 5:
            raise ReplyError(f"RL.CHECK replied {value!r}")
        allowed, limit, remaining, retry, reset = (int(v) for v in value)

        def opt(v: int) -> Optional[int]:
            return None if v < 0 else v

        return Decision(allowed == 1, opt(limit), opt(remaining), opt(retry), opt(reset),
                        self._nodes[node].name, address)

    def check_and_increment(self, user_id: str, api_endpoint: str, cost: int = 1) -> bool:
        """Whether this request is admitted (and, if so, charged ``cost``)."""
        return self.check(user_id, api_endpoint, cost).allowed

    def _degraded(self, node: int, client: str, endpoint: str, cost: int) -> Decision:
        local = self._fallback.check(default_route_key(client, endpoint), cost,
                                     time.monotonic_ns())
        if local.allowed:
            self._bump("degraded_allowed")
        else:
            self._bump("degraded_denied")
            if local.table_full:
                self._bump("degraded_table_full")
        return Decision(local.allowed, local.limit, local.remaining, local.retry_after_ms,
                        local.reset_after_ms, self._nodes[node].name, None, degraded=True)

    def _broadcast(self, args: Sequence) -> List[object]:
        values, failed = [], []
        for i in range(len(self._nodes)):
            try:
                values.append(self._exec(i, args, write=True)[0])
            except ClientError as e:
                failed.append(e)
        if failed:
            raise PartialError(len(self._nodes), failed)
        return values

    def _read_any(self, args: Sequence) -> object:
        last: ClientError = ClientError("no node configured")
        for i in range(len(self._nodes)):
            try:
                return self._exec(i, args, write=False)[0]
            except UnavailableError as e:
                last = e
        raise last

    def set_limit(self, scope: Scope, windows: Sequence[Window]) -> None:
        """RL.LIMIT SET on every node."""
        if not windows:
            raise ValueError("a limit needs at least one window")
        args: List[object] = ["RL.LIMIT", "SET", *_scope_args(scope)]
        for w in windows:
            args += ["RATE", w.rate_arg(), "BURST", w.burst]
        self._broadcast(args)

    def get_limit(self, scope: Scope) -> Optional[List[Window]]:
        """RL.LIMIT GET from the first node that answers; None when unset."""
        value = self._read_any(["RL.LIMIT", "GET", *_scope_args(scope)])
        if value is None:
            return None
        # The reply ends with ALGO <name>; this client manages windows, so the pair is skipped.
        if isinstance(value, list) and len(value) >= 2 and _text(value[-2]) == "ALGO":
            value = value[:-2]
        if not isinstance(value, list) or len(value) % 4:
            raise ReplyError(f"RL.LIMIT GET replied {value!r}")
        out = []
        for j in range(0, len(value), 4):
            rate, period_ms = Window.parse_rate(_text(value[j + 1]))
            out.append(Window(rate, period_ms, int(value[j + 3])))
        return out

    def del_limit(self, scope: Scope) -> bool:
        """RL.LIMIT DEL on every node; whether any had it."""
        return any(v == 1 for v in self._broadcast(["RL.LIMIT", "DEL", *_scope_args(scope)]))

    def set_tier(self, client: str, tier: str) -> None:
        self._broadcast(["RL.TIER", "SET", client, tier])

    def get_tier(self, client: str) -> Optional[str]:
        value = self._read_any(["RL.TIER", "GET", client])
        return None if value is None else _text(value)

    def del_tier(self, client: str) -> bool:
        return any(v == 1 for v in self._broadcast(["RL.TIER", "DEL", client]))

    def close(self) -> None:
        for n in self._nodes:
            for a in n.addrs:
                a.conn.close()
                if a.sentinel is not None:
                    for s in a.sentinel.sentinels:
                        s.close()


def _text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
