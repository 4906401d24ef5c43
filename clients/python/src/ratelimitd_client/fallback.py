"""Degraded mode: the local, in-process allowance used while a key's daemon is unreachable.

Same design as ``client/src/fallback.rs``: failing closed would take the API down with the
rate limiter, failing open without bound would make an outage an abuse window, so the client
admits up to a local GCRA per (client, endpoint) — ``rate`` per ``period`` plus ``burst``, the
daemon's arithmetic — in a table of bounded size. Refilled entries are dropped (a full key is
an unseen key); a new key arriving at a table full of live keys is denied, since admitting it
would hand out untracked allowance. Time is passed in (monotonic ns) so tests are exact.
"""

import threading
from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class FallbackLimit:
    """The local allowance per key while its daemon is unreachable."""

    rate: int = 10
    period_ms: int = 1000
    burst: int = 0
    max_keys: int = 100_000


@dataclass(frozen=True)
class LocalDecision:
    """One local decision, shaped like the daemon's reply (times in ms, None = not applicable)."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_ms: Optional[int]
    reset_after_ms: int
    table_full: bool = False


def _ceil_ms(ns: int) -> int:
    return -(-ns // 1_000_000)


class Fallback:
    """The bounded table of local GCRA states (key -> theoretical arrival time, ns)."""

    def __init__(self, limit: FallbackLimit):
        self.limit = limit
        rate = max(limit.rate, 1)
        period = max(limit.period_ms * 1_000_000, 1)
        self._interval = max(period // rate, 1)
        self._tolerance = self._interval * (rate + limit.burst)
        self._capacity = rate + limit.burst
        self._tats: Dict[bytes, int] = {}
        self._next_purge = 0
        self._lock = threading.Lock()

    def tracked(self) -> int:
        return len(self._tats)

    def check(self, key: bytes, cost: int, now_ns: int) -> LocalDecision:
        """Decide for ``key`` at ``now_ns`` and charge ``cost`` when admitted."""
        with self._lock:
            existing = self._tats.get(key)
            if existing is None and len(self._tats) >= self.limit.max_keys:
                self._purge(now_ns)
                if len(self._tats) >= self.limit.max_keys:
                    return LocalDecision(False, self._capacity, 0,
                                         _ceil_ms(max(self._next_purge - now_ns, 0)), 0, True)
            tat = max(existing if existing is not None else now_ns, now_ns)
            new_tat = tat + self._interval * cost
            allowed = new_tat - now_ns <= self._tolerance
            effective = new_tat if allowed else tat
            if allowed and cost > 0:
                self._tats[key] = new_tat
            used = effective - now_ns
            remaining = max(self._tolerance - used, 0) // self._interval
            if allowed or cost > self._capacity:
                retry = None
            else:
                retry = _ceil_ms(new_tat - now_ns - self._tolerance)
            return LocalDecision(allowed, self._capacity, remaining, retry, _ceil_ms(used))

    def _purge(self, now_ns: int) -> None:
        if now_ns < self._next_purge:
            return
        self._tats = {k: t for k, t in self._tats.items() if t > now_ns}
        self._next_purge = min(self._tats.values(), default=now_ns)
