//! RL.CHECK and RL.PEEK under one GCRA window: the numbers of a reply, burst, costs, peeks,
//! checks at a given instant, buckets per (client, endpoint), RL.RESET, the reported scope,
//! randomized GCRA invariants, and checks from many threads.

use super::*;

#[test]
fn five_per_second_six_at_once() {
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    for (want_remaining, want_reset) in [(4, 200), (3, 400), (2, 600), (1, 800), (0, 1000)] {
        let r = e.check(b"c", b"/e", 1);
        assert_eq!(
            r,
            CheckResult {
                allowed: true,
                limit: 5,
                remaining: want_remaining,
                retry_after_ms: -1,
                reset_after_ms: want_reset,
                scope: ScopeKind::Default,
                window: 0,
            }
        );
    }
    let r = e.check(b"c", b"/e", 1);
    assert_eq!(
        r,
        CheckResult {
            allowed: false,
            limit: 5,
            remaining: 0,
            retry_after_ms: 200,
            reset_after_ms: 1000,
            scope: ScopeKind::Default,
            window: 0,
        }
    );
}

#[test]
fn checks_at_a_given_instant_judge_at_that_instant() {
    // The daemon reads the clock once per command and passes the reading in: the decision
    // must be the one the engine's own clock would give at that instant.
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(1, 1000, 0)]));
    assert!(e.check_at(b"c", b"/e", 1, T0).allowed);
    let denied = e.check_at(b"c", b"/e", 1, T0 + 400_000_000);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_ms, 600);
    // A second later by the given reading, although the engine's clock has not moved.
    assert!(e.check_at(b"c", b"/e", 1, T0 + 1_000_000_000).allowed);
    // The same sequence through the engine's clock agrees.
    assert!(e.check(b"d", b"/e", 1).allowed);
    clock.advance(ms(400));
    assert_eq!(e.check(b"d", b"/e", 1), denied);

    let args = ThrottleArgs {
        max_burst: 0,
        count: 1,
        period_s: 1,
        quantity: 1,
    };
    assert!(!e.throttle_at(b"k", args, T0).expect("valid").limited);
    assert!(
        e.throttle_at(b"k", args, T0 + 500_000_000)
            .expect("valid")
            .limited
    );
    assert!(
        !e.throttle_at(b"k", args, T0 + 1_000_000_000)
            .expect("valid")
            .limited
    );
}

#[test]
fn burst_adds_instant_capacity() {
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 2)]));
    for want in (0..7).rev() {
        let r = e.check(b"c", b"/e", 1);
        assert!(r.allowed);
        assert_eq!((r.limit, r.remaining), (7, want));
    }
    let r = e.check(b"c", b"/e", 1);
    assert!(!r.allowed);
    assert_eq!(
        (r.limit, r.retry_after_ms, r.reset_after_ms),
        (7, 200, 1400)
    );
}

#[test]
fn cost_beyond_capacity_never_fits() {
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 2)]));
    for cost in [8, 1000, u64::MAX] {
        let r = e.check(b"c", b"/e", cost);
        assert!(!r.allowed, "cost {cost}");
        assert_eq!(
            (r.limit, r.remaining, r.retry_after_ms, r.reset_after_ms),
            (7, 7, -1, 0)
        );
    }
    assert_eq!(e.key_count(), 0, "a denied check stores nothing");
    // Exactly the capacity fits.
    let r = e.check(b"c", b"/e", 7);
    assert!(r.allowed);
    assert_eq!((r.remaining, r.reset_after_ms), (0, 1400));
}

#[test]
fn refill_after_time() {
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    for _ in 0..5 {
        assert!(e.check(b"c", b"/e", 1).allowed);
    }
    assert!(!e.check(b"c", b"/e", 1).allowed);
    clock.advance(ms(199));
    let r = e.check(b"c", b"/e", 1);
    assert_eq!(
        (r.allowed, r.retry_after_ms, r.reset_after_ms),
        (false, 1, 801)
    );
    clock.advance(ms(1));
    let r = e.check(b"c", b"/e", 1);
    assert_eq!((r.allowed, r.remaining, r.reset_after_ms), (true, 0, 1000));
    clock.advance(ms(600));
    let r = e.check(b"c", b"/e", 2);
    assert_eq!((r.allowed, r.remaining, r.reset_after_ms), (true, 1, 800));
    clock.advance(ms(5000));
    let r = e.peek(b"c", b"/e");
    assert_eq!((r.allowed, r.remaining, r.reset_after_ms), (true, 5, 0));
}

#[test]
fn cost_zero_and_peek_charge_nothing() {
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    assert!(e.check(b"c", b"/e", 1).allowed);
    let r = e.check(b"c", b"/e", 0);
    assert_eq!((r.allowed, r.remaining, r.reset_after_ms), (true, 4, 200));
    // Peek says whether a cost-1 check would pass, and shows the state as it is now.
    let r = e.peek(b"c", b"/e");
    assert_eq!((r.allowed, r.remaining, r.reset_after_ms), (true, 4, 200));
    let r = e.peek(b"c", b"/e");
    assert_eq!(r.remaining, 4, "peek consumed nothing");
    assert_eq!(e.check(b"c", b"/e", 1).remaining, 3);
    for _ in 0..3 {
        assert!(e.check(b"c", b"/e", 1).allowed);
    }
    // Empty: peek reports the cost-1 denial and its wait.
    let r = e.peek(b"c", b"/e");
    assert_eq!((r.allowed, r.remaining, r.retry_after_ms), (false, 0, 200));
}

#[test]
fn unlimited_when_no_limit_applies() {
    let (e, _clock) = engine();
    let unlimited = CheckResult {
        allowed: true,
        limit: -1,
        remaining: -1,
        retry_after_ms: -1,
        reset_after_ms: -1,
        scope: ScopeKind::None,
        window: 0,
    };
    assert_eq!(e.check(b"c", b"/e", 1), unlimited);
    assert_eq!(e.check(b"c", b"/e", u64::MAX), unlimited);
    assert_eq!(e.peek(b"c", b"/e"), unlimited);
    assert_eq!(e.key_count(), 0);
    let x = e.explain(b"c", b"/e");
    assert_eq!(
        x,
        Explanation {
            scope: None,
            tier: None,
            limit: None,
            windows: vec![]
        }
    );
}

#[test]
fn buckets_are_per_client_and_endpoint() {
    let (e, _clock) = engine();
    e.set_limit(
        Scope::Endpoint(pattern("/api/*")),
        limit(&[window(1, 1000, 0)]),
    );
    assert!(e.check(b"c", b"/api/a", 1).allowed);
    assert!(!e.check(b"c", b"/api/a", 1).allowed);
    assert!(
        e.check(b"c", b"/api/b", 1).allowed,
        "same scope, other endpoint"
    );
    assert!(e.check(b"d", b"/api/a", 1).allowed, "other client");
    // Length prefixing: ("ab", "c") is not ("a", "bc").
    e.set_limit(Scope::Default, limit(&[window(1, 1000, 0)]));
    assert!(e.check(b"ab", b"c", 1).allowed);
    assert!(e.check(b"a", b"bc", 1).allowed);
}

#[test]
fn reset_restores_full_allowance() {
    let (e, clock) = engine();
    e.set_limit(
        Scope::Default,
        limit(&[window(2, 1000, 0), window(3, 10_000, 0)]),
    );
    assert!(!e.reset(b"c", b"/e"));
    assert!(e.check(b"c", b"/e", 2).allowed);
    assert!(!e.check(b"c", b"/e", 1).allowed);
    assert!(e.reset(b"c", b"/e"));
    assert!(!e.reset(b"c", b"/e"));
    let r = e.check(b"c", b"/e", 1);
    assert_eq!((r.allowed, r.remaining), (true, 1));
    clock.advance(ms(20_000));
    assert!(
        !e.reset(b"c", b"/e"),
        "decayed state is not 'removed state'"
    );
    assert!(e.check(b"c", b"/e", 1).allowed);
    e.flush_state();
    assert_eq!(e.key_count(), 0);
    assert_eq!(e.list_limits().len(), 1, "flush keeps configuration");
}

#[test]
fn check_reports_the_scope_kind() {
    let (e, _clock) = engine();
    assert_eq!(e.check(b"c", b"/e", 1).scope, ScopeKind::None);
    e.set_limit(Scope::Endpoint(pattern("/e")), limit(&[window(5, 1000, 0)]));
    assert_eq!(e.check(b"c", b"/e", 1).scope, ScopeKind::Endpoint);
    assert_eq!(ScopeKind::Endpoint.name(), "endpoint");
}

/// xorshift64*: a tiny deterministic generator, so the property tests need no dependency
/// and every failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// GCRA never admits more than capacity + elapsed/T over any interval, and a denied check's
/// retry_after is honest: retrying the same cost that much later succeeds.
#[test]
fn gcra_properties_randomized() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (e, clock) = engine();
        let w = window(1 + rng.below(20), 1 + rng.below(5000), rng.below(10));
        e.set_limit(Scope::Default, limit(&[w]));
        let t = (u128::from(w.period_ms()) * 1_000_000 / u128::from(w.count())).max(1);
        let capacity = u128::from(w.capacity());
        // (time, cost) of every admitted check.
        let mut admitted: Vec<(u128, u128)> = Vec::new();
        for _ in 0..300 {
            clock.advance(Duration::from_nanos(rng.below(3 * t as u64 + 1)));
            let cost = rng.below(capacity as u64 + 2);
            let r = e.check(b"c", b"/e", cost);
            let now = u128::from(clock.now());
            if r.allowed {
                admitted.push((now, u128::from(cost)));
            } else if r.retry_after_ms >= 0 {
                assert!(u128::from(cost) <= capacity);
                if rng.below(2) == 0 {
                    clock.advance(ms(r.retry_after_ms as u64));
                    let again = e.check(b"c", b"/e", cost);
                    assert!(again.allowed, "seed {seed}: retry_after was not honest");
                    admitted.push((u128::from(clock.now()), u128::from(cost)));
                }
            } else {
                assert!(
                    u128::from(cost) > capacity,
                    "seed {seed}: -1 only for never-fits"
                );
            }
        }
        for i in 0..admitted.len() {
            let mut sum = 0;
            for j in i..admitted.len() {
                sum += admitted[j].1;
                let elapsed = admitted[j].0 - admitted[i].0;
                assert!(
                    sum * t <= capacity * t + elapsed,
                    "seed {seed}: admitted {sum} in {elapsed} ns (T {t}, capacity {capacity})"
                );
            }
        }
    }
}

#[test]
fn engine_handles_concurrent_checks_and_edits() {
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(1000, 1000, 0)]));
    let allowed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    if e.check(b"c", b"/e", 1).allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        s.spawn(|| {
            for i in 0..200u32 {
                e.set_tier(&i.to_le_bytes(), b"t");
            }
        });
    });
    assert_eq!(
        allowed.load(Ordering::Relaxed),
        1000,
        "frozen clock: exactly the capacity"
    );
}

#[test]
fn engine_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine<SystemClock>>();
    assert_send_sync::<Engine<FakeClock>>();
}
