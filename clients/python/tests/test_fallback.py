"""The local degraded-mode allowance, with explicit time: exact and instant."""

from ratelimitd_client import Fallback, FallbackLimit

S = 1_000_000_000


def test_rate_plus_burst_then_one_per_interval():
    f = Fallback(FallbackLimit(rate=5, period_ms=1000, burst=2, max_keys=10))
    assert sum(f.check(b"k", 1, S).allowed for _ in range(20)) == 7
    assert f.check(b"k", 1, S).retry_after_ms == 200
    assert f.check(b"k", 1, S + S // 5).allowed
    assert not f.check(b"k", 1, S + S // 5).allowed


def test_full_table_denies_new_keys_until_entries_decay():
    f = Fallback(FallbackLimit(rate=1, period_ms=1000, burst=0, max_keys=2))
    assert f.check(b"a", 1, 0).allowed
    assert f.check(b"b", 1, 0).allowed
    d = f.check(b"c", 1, 0)
    assert not d.allowed and d.table_full
    assert f.check(b"c", 1, S).allowed
    assert f.tracked() <= 2


def test_cost_that_never_fits():
    f = Fallback(FallbackLimit(rate=5, period_ms=1000))
    d = f.check(b"a", 6, 0)
    assert not d.allowed and d.retry_after_ms is None
