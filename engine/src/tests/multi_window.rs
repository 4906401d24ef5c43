//! Limits of several windows: all windows charged or none, which window a reply reports and
//! by which index, what `remaining` says when some window denies, and the single-window
//! shortcut against the general summary.

use super::*;
use crate::decision::{summarize, summarize_one, Win};

#[test]
fn multi_window_is_all_or_nothing() {
    let (e, clock) = engine();
    let per_second = window(10, 1000, 0);
    let per_minute = window(20, 60_000, 0);
    e.set_limit(Scope::Default, limit(&[per_second, per_minute]));

    // Allowed replies describe the window with the fewest remaining.
    let r = e.check(b"c", b"/e", 1);
    assert_eq!((r.limit, r.remaining), (10, 9));
    for _ in 0..9 {
        assert!(e.check(b"c", b"/e", 1).allowed);
    }
    let r = e.check(b"c", b"/e", 1);
    assert_eq!(
        (r.allowed, r.limit, r.retry_after_ms, r.window),
        (false, 10, 100, 0)
    );
    clock.advance(ms(1000));
    for i in 0..10 {
        let r = e.check(b"c", b"/e", 1);
        assert!(r.allowed, "check {i}");
        // Both windows have 9 - i left; on a tie the first window is reported.
        assert_eq!((r.limit, r.remaining, r.window), (10, 9 - i, 0));
    }
    // The minute window is exhausted; the second window refills.
    clock.advance(ms(1000));
    let r = e.check(b"c", b"/e", 1);
    assert_eq!(
        r,
        CheckResult {
            allowed: false,
            limit: 20,
            remaining: 0,
            retry_after_ms: 1000,
            reset_after_ms: 58_000,
            scope: ScopeKind::Default,
            window: 1,
        }
    );
    // The denied check charged nothing: the per-second window is still full.
    let x = e.explain(b"c", b"/e");
    assert_eq!(x.windows[0].remaining, 10);
    assert_eq!(x.windows[0].reset_after_ms, 0);
    assert_eq!(x.windows[1].remaining, 0);
    assert_eq!(x.windows[1].reset_after_ms, 58_000);
    let p = e.peek(b"c", b"/e");
    assert_eq!((p.allowed, p.limit, p.retry_after_ms), (false, 20, 1000));
    // After the retry delay the check fits both windows.
    clock.advance(ms(1000));
    let r = e.check(b"c", b"/e", 1);
    assert!(r.allowed);
    assert_eq!((r.limit, r.remaining), (20, 0));
    assert_eq!(e.explain(b"c", b"/e").windows[0].remaining, 9);
}

#[test]
fn multi_window_counting_limits_are_all_or_nothing() {
    // 3 per second and 5 per minute, fixed and sliding: once the minute window is used up, a
    // denied check charges neither window, so the second window is untouched by the denials
    // and the first refills on its own.
    for algo in [Algorithm::Fixed, Algorithm::Sliding] {
        let (e, clock) = engine();
        // Start on a minute boundary so both algorithms' windows are aligned alike.
        clock.advance(Duration::from_nanos(60_000_000_000 - T0 % 60_000_000_000));
        e.set_limit(
            Scope::Default,
            limit(&[window(3, 1000, 0), window(5, 60_000, 0)]).with_algorithm(algo),
        );
        for _ in 0..3 {
            assert!(e.check(b"c", b"/e", 1).allowed, "{algo:?}");
        }
        let r = e.check(b"c", b"/e", 1);
        assert_eq!((r.allowed, r.limit), (false, 3), "{algo:?}: {r:?}");
        clock.advance(ms(2000));
        for _ in 0..2 {
            assert!(e.check(b"c", b"/e", 1).allowed, "{algo:?}");
        }
        // Minute window used up (5 of 5); the second window has 1 of 3 left.
        for _ in 0..5 {
            let r = e.check(b"c", b"/e", 1);
            assert_eq!((r.allowed, r.limit), (false, 5), "{algo:?}: {r:?}");
        }
        let x = e.explain(b"c", b"/e");
        assert_eq!(
            x.windows[0].remaining, 1,
            "{algo:?}: denials charged nothing"
        );
        assert_eq!(x.windows[1].remaining, 0, "{algo:?}");
    }
}

#[test]
fn multi_window_never_fits_wins_retry() {
    let (e, _clock) = engine();
    e.set_limit(
        Scope::Default,
        limit(&[window(2, 1000, 0), window(100, 60_000, 0)]),
    );
    // Cost 3 never fits the first window (capacity 2) though it fits the second.
    let r = e.check(b"c", b"/e", 3);
    assert_eq!((r.allowed, r.limit, r.retry_after_ms), (false, 2, -1));
}

#[test]
fn a_denied_multi_window_check_reports_what_every_window_still_admits() {
    // 10/10s and 4/40ms. After 4 and then 3 (30 ms apart), a check of 4 is denied by the
    // 10-second window (3 left there), which needs the longest wait and is the one reported;
    // but the 40 ms window admits only 1 more now, and `remaining` says how many cost-1
    // checks would be admitted.
    let (e, clock) = engine();
    e.set_limit(
        Scope::Default,
        limit(&[window(10, 10_000, 0), window(4, 40, 0)]),
    );
    assert!(e.check(b"c", b"/e", 4).allowed);
    clock.advance(ms(30));
    assert!(e.check(b"c", b"/e", 3).allowed);
    clock.advance(ms(10));
    let d = e.check(b"c", b"/e", 4);
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.limit, 10, "the window with the longest wait is reported");
    let mut admitted = 0;
    while e.check(b"c", b"/e", 1).allowed {
        admitted += 1;
    }
    assert_eq!(admitted, 1);
    assert_eq!(d.remaining, admitted, "{d:?}");
}

#[test]
fn the_reported_window_is_named_by_its_index() {
    let (e, clock) = engine();
    // Equal capacities: only the index tells which window denies.
    e.set_limit(
        Scope::Default,
        limit(&[window(10, 1000, 0), window(10, 60_000, 0)]),
    );
    for _ in 0..10 {
        assert!(e.check(b"c", b"/e", 1).allowed);
    }
    clock.advance(ms(1000));
    let r = e.check(b"c", b"/e", 1);
    assert_eq!((r.allowed, r.limit, r.window), (false, 10, 1));
    // Allowed, the second window the tighter: after 10 checks and 1 s, the second has 10
    // left and the minute window 5 (and a quarter), so a check leaves 9 and 4.
    e.set_limit(
        Scope::Default,
        limit(&[window(10, 1000, 0), window(15, 60_000, 0)]),
    );
    for _ in 0..10 {
        assert!(e.check(b"d", b"/e", 1).allowed);
    }
    clock.advance(ms(1000));
    let r = e.check(b"d", b"/e", 1);
    assert_eq!(
        (r.allowed, r.limit, r.remaining, r.window),
        (true, 15, 4, 1)
    );
    assert_eq!(e.check(b"fresh", b"/free", 1).window, 0);
}

/// The single-window shortcut answers as the general summary does.
#[test]
fn single_window_summary_matches_the_general_one() {
    let w = window(5, 1000, 2);
    let win = Win {
        window: w,
        shape: 0,
    };
    let p = gcra::Params::of(&w);
    for tat_ahead_ms in [0u64, 1, 150, 999, 1400, 5000] {
        for cost in [0u64, 1, 3, 7, 8, 100] {
            let tat = (tat_ahead_ms > 0).then_some(T0 + tat_ahead_ms * 1_000_000);
            let d = gcra::decide(&p, tat, T0, cost);
            assert_eq!(
                summarize_one(p.capacity, &d),
                summarize(&[Some(win)], &[Some(d)], cost),
                "tat +{tat_ahead_ms} ms, cost {cost}"
            );
        }
    }
}
