//! The fixed-window and sliding-window algorithms through the engine, and a key whose limit
//! switches algorithm.

use super::*;

#[test]
fn fixed_and_sliding_limits_through_the_engine() {
    let (e, clock) = engine();
    // T0 is a whole second, so fixed windows of 1 s start at T0.
    e.set_limit(
        Scope::Endpoint(pattern("/f")),
        limit(&[window(3, 1000, 0)]).with_algorithm(Algorithm::Fixed),
    );
    e.set_limit(
        Scope::Endpoint(pattern("/s")),
        limit(&[window(4, 1000, 0)]).with_algorithm(Algorithm::Sliding),
    );
    for rem in [2, 1, 0] {
        let r = e.check(b"c", b"/f", 1);
        assert_eq!(
            (r.allowed, r.limit, r.remaining, r.reset_after_ms),
            (true, 3, rem, 1000)
        );
    }
    let r = e.check(b"c", b"/f", 1);
    assert_eq!((r.allowed, r.retry_after_ms), (false, 1000));
    clock.advance(ms(1000));
    assert_eq!(e.check(b"c", b"/f", 1).remaining, 2, "a new aligned window");

    let t = e.check(b"c", b"/s", 4);
    assert!(t.allowed && t.remaining == 0);
    clock.advance(ms(1500));
    // Half of the previous window still overlaps: 2 of 4 are left.
    let r = e.peek(b"c", b"/s");
    assert_eq!((r.allowed, r.remaining), (true, 2));
    assert!(e.check(b"c", b"/s", 2).allowed);
    let r = e.check(b"c", b"/s", 1);
    assert!(!r.allowed);
    clock.advance(Duration::from_nanos(
        u64::try_from(r.retry_after_ms).expect("finite") * 1_000_000,
    ));
    assert!(e.check(b"c", b"/s", 1).allowed, "retry_after is honest");
    let x = e.explain(b"c", b"/s");
    assert_eq!(x.limit.map(|l| l.algorithm()), Some(Algorithm::Sliding));
}

#[test]
fn an_algorithm_round_trip_does_not_bring_back_old_state() {
    // 10/1h GCRA used up; an hour under fixed 10/1h (where the key starts afresh); then GCRA
    // again, raised to 1000/1h. The GCRA entry of the first hour must be gone: rescaled, it
    // would read as all of 1000 used, and a raised limit would deny.
    let (e, clock) = engine();
    let gcra = |n| limit(&[window(n, 3_600_000, 0)]);
    e.set_limit(Scope::Default, gcra(10));
    assert!(e.check(b"c", b"/e", 10).allowed);
    e.set_limit(Scope::Default, gcra(10).with_algorithm(Algorithm::Fixed));
    clock.advance(ms(1000));
    let r = e.check(b"c", b"/e", 1);
    assert!(r.allowed && r.remaining == 9, "afresh under fixed: {r:?}");
    e.set_limit(Scope::Default, gcra(1000));
    let r = e.check(b"c", b"/e", 1);
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.remaining, 999, "afresh again under GCRA");
    // And back: the fixed entry went when the GCRA one was made.
    e.set_limit(Scope::Default, gcra(10).with_algorithm(Algorithm::Fixed));
    assert_eq!(e.check(b"c", b"/e", 1).remaining, 9);
    assert_eq!(e.key_count(), 1, "one entry per key, not one per algorithm");
}
