//! State written under one limit and read under another: the fraction of the allowance used
//! is kept, a raised limit never denies, and the retry time after a change is honest.

use super::*;
use crate::decision::scale_debt;

#[test]
fn raising_a_limit_never_causes_a_denial() {
    // In redis-cell, state kept as time and read under a faster rate turns a client that had
    // allowance left into a denied one. Here 5 of 10 per minute are used (30 s of
    // GCRA debt); the limit is raised to 10 per second. The fraction used (half) is kept, so
    // the client has 5 left, not a 30-second wait.
    for algo in [Algorithm::Gcra, Algorithm::Fixed, Algorithm::Sliding] {
        let (e, _clock) = engine();
        e.set_limit(
            Scope::Default,
            limit(&[window(10, 60_000, 0)]).with_algorithm(algo),
        );
        for _ in 0..5 {
            assert!(e.check(b"c", b"/e", 1).allowed);
        }
        e.set_limit(
            Scope::Default,
            limit(&[window(10, 1000, 0)]).with_algorithm(algo),
        );
        let r = e.check(b"c", b"/e", 1);
        assert!(r.allowed, "{algo:?}: {r:?}");
        assert_eq!((r.limit, r.remaining), (10, 4), "{algo:?}");
        // And raising the count alone: 5 of 10 used, now 100 -> 50 of 100 used.
        let (e, _clock) = engine();
        e.set_limit(
            Scope::Default,
            limit(&[window(10, 1000, 0)]).with_algorithm(algo),
        );
        for _ in 0..9 {
            assert!(e.check(b"c", b"/e", 1).allowed);
        }
        e.set_limit(
            Scope::Default,
            limit(&[window(100, 1000, 0)]).with_algorithm(algo),
        );
        let r = e.check(b"c", b"/e", 1);
        assert!(r.allowed, "{algo:?}: {r:?}");
        assert_eq!(r.remaining, 9, "{algo:?}: 90 of 100 used before this one");
    }
}

#[test]
fn retry_after_is_honest_after_a_limit_change() {
    // 10 of 10 per minute used, then the limit becomes 10 per second. The client is denied
    // (the fraction used is kept: all of it), and a retry after the wait it was told must be
    // allowed: from the change on, its state drains at the new limit's pace, not the old one.
    for algo in [Algorithm::Gcra, Algorithm::Fixed, Algorithm::Sliding] {
        for extra in [None, Some(window(1000, 3_600_000, 0))] {
            let (e, clock) = engine();
            let set = |w: Window| {
                let ws: Vec<Window> = std::iter::once(w).chain(extra).collect();
                e.set_limit(Scope::Default, limit(&ws).with_algorithm(algo));
            };
            set(window(10, 60_000, 0));
            for _ in 0..10 {
                assert!(e.check(b"c", b"/e", 1).allowed);
            }
            set(window(10, 1000, 0));
            let r = e.check(b"c", b"/e", 1);
            assert!(!r.allowed, "{algo:?} {extra:?}: {r:?}");
            assert!(
                (1..=2000).contains(&r.retry_after_ms),
                "{algo:?} {extra:?}: {r:?}"
            );
            clock.advance(ms(r.retry_after_ms as u64));
            let again = e.check(b"c", b"/e", 1);
            assert!(again.allowed, "{algo:?} {extra:?}: {r:?} then {again:?}");
        }
    }
}

#[test]
fn rescaling_keeps_the_fraction_used() {
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(10, 1000, 0)]));
    for _ in 0..5 {
        assert!(e.check(b"c", b"/e", 1).allowed);
    }
    assert_eq!(e.peek(b"c", b"/e").remaining, 5);
    // Half used. Doubling the limit leaves half: 10 of 20.
    e.set_limit(Scope::Default, limit(&[window(20, 1000, 0)]));
    assert_eq!(e.peek(b"c", b"/e").remaining, 10);
    // Halving it from the original leaves half of 5.
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    let left = e.peek(b"c", b"/e").remaining;
    assert!((2..=3).contains(&left), "{left}");

    let (e, _clock) = engine();
    e.set_limit(
        Scope::Default,
        limit(&[window(10, 1000, 0)]).with_algorithm(Algorithm::Fixed),
    );
    for _ in 0..5 {
        assert!(e.check(b"c", b"/e", 1).allowed);
    }
    e.set_limit(
        Scope::Default,
        limit(&[window(100, 1000, 0)]).with_algorithm(Algorithm::Fixed),
    );
    assert_eq!(e.peek(b"c", b"/e").remaining, 50);
    // A change to a longer period carries the count itself: the 5 checks made (stored under
    // 10/1s) are 5 of 100 in the minute, not half of it.
    e.set_limit(
        Scope::Default,
        limit(&[window(100, 60_000, 0)]).with_algorithm(Algorithm::Fixed),
    );
    assert_eq!(e.peek(b"c", b"/e").remaining, 95, "5 used of 100");
}

#[test]
fn retry_after_a_rescale_is_honest_to_the_nanosecond() {
    // 10/1m used up, then 10/1s: the debt is rescaled to a TAT 1 s ahead of the change. At
    // 1 ns before a whole second the retry time must be measured from the TAT as stored
    // (rounded up to the microsecond), or the retry comes up to 1 us early and is denied.
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(10, 60_000, 0)]));
    assert!(e.check(b"c", b"/e", 10).allowed);
    e.set_limit(Scope::Default, limit(&[window(10, 1000, 0)]));
    clock.set(T0 + 3_000_000_000 - 1);
    let d = e.check(b"c", b"/e", 1);
    assert!(!d.allowed, "{d:?}");
    clock.advance(ms(u64::try_from(d.retry_after_ms).expect("a retry time")));
    let r = e.check(b"c", b"/e", 1);
    assert!(r.allowed, "retried after {} ms: {r:?}", d.retry_after_ms);
}

#[test]
fn rescaled_debt_does_not_overflow() {
    // Within u128: exact.
    assert_eq!(scale_debt(500, 3000, 1000), 1500);
    // ahead * new_tau beyond 2^128: both taus lose low bits alike, the ratio holds.
    let tau = 1u128 << 100;
    assert_eq!(scale_debt(u64::MAX, tau, tau), u128::from(u64::MAX));
    let half = scale_debt(u64::MAX, tau, tau * 2);
    assert_eq!(half, u128::from(u64::MAX / 2));
}

#[test]
fn raising_a_counting_limit_to_a_longer_period_does_not_lock_the_client_out() {
    // 10/1s used up, then raised to 72000/1h (twice the rate). Carried as a fraction, the
    // full second would have become a full hour: denied for the rest of it, where the old
    // limit would have admitted again within the second.
    for algo in [Algorithm::Fixed, Algorithm::Sliding] {
        let (e, clock) = engine();
        let hour = 3_600_000_000_000;
        clock.set(T0 - T0 % hour + 100_000_000);
        e.set_limit(
            Scope::Default,
            limit(&[window(10, 1000, 0)]).with_algorithm(algo),
        );
        assert!(e.check(b"c", b"/e", 10).allowed);
        e.set_limit(
            Scope::Default,
            limit(&[window(72_000, 3_600_000, 0)]).with_algorithm(algo),
        );
        clock.advance(ms(100));
        let r = e.check(b"c", b"/e", 1);
        assert!(r.allowed, "{algo:?}: {r:?}");
        assert_eq!(
            r.remaining,
            72_000 - 11,
            "{algo:?}: the 10 made, and this one"
        );
    }
}
