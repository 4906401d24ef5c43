//! Expiry: decayed keys read as fresh and leave the store, in bounded steps that visit every
//! shard, at their real deadline even when it moved earlier, with the timing wheels' extra
//! references bounded.

use super::*;

#[test]
fn decayed_keys_read_fresh_and_are_purged() {
    let (e, clock) = engine();
    e.set_limit(
        Scope::Default,
        limit(&[window(5, 1000, 0), window(50, 60_000, 0)]),
    );
    for c in [&b"a"[..], b"b", b"c"] {
        assert!(e.check(c, b"/e", 1).allowed);
    }
    assert_eq!(e.key_count(), 6, "one entry per window");
    assert!(e.memory_bytes() > 0);
    clock.advance(ms(200));
    assert_eq!(e.purge_decayed(usize::MAX), 3, "the 1s windows decayed");
    assert_eq!(e.key_count(), 3);
    clock.advance(ms(1200));
    assert_eq!(
        e.peek(b"a", b"/e").remaining,
        5,
        "decayed key reads as fresh"
    );
    clock.advance(ms(60_000));
    assert_eq!(e.purge_decayed(usize::MAX), 3);
    assert_eq!(e.purge_decayed(usize::MAX), 0);
    assert_eq!(e.key_count(), 0);
    assert_eq!(e.stats().expired, 6);
}

#[test]
fn purge_budget_is_respected() {
    let (e, clock) = engine_with_shards(1);
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    for i in 0..50u32 {
        assert!(e.check(&i.to_le_bytes(), b"/e", 1).allowed);
    }
    clock.advance(ms(1000));
    let mut total = 0;
    for _ in 0..100 {
        let n = e.purge_decayed(7);
        assert!(n <= 7, "one shard, at most 7 per step");
        total += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, 50);
}

#[test]
fn a_deadline_moved_earlier_is_purged_at_the_new_one() {
    // State written under 10/1h stays for minutes; rescaled to 10/1s it decays within a
    // second, and must leave the key count then, not when the old deadline comes.
    for algo in [Algorithm::Gcra, Algorithm::Fixed, Algorithm::Sliding] {
        for denied in [false, true] {
            let (e, clock) = engine();
            e.set_limit(
                Scope::Default,
                limit(&[window(10, 3_600_000, 0)]).with_algorithm(algo),
            );
            let n = if denied { 10 } else { 1 };
            for _ in 0..n {
                assert!(e.check(b"c", b"/e", 1).allowed);
            }
            e.set_limit(
                Scope::Default,
                limit(&[window(10, 1000, 0)]).with_algorithm(algo),
            );
            // Allowed: the charged state is written; denied: the rescaled state is.
            assert_eq!(e.check(b"c", b"/e", 1).allowed, !denied, "{algo:?}");
            assert_eq!(e.key_count(), 1);
            clock.advance(ms(2500));
            e.purge_decayed(usize::MAX);
            assert_eq!(e.key_count(), 0, "{algo:?}, denied: {denied}");
        }
    }
}

#[test]
fn background_expiry_steps_visit_every_shard_in_eight_steps() {
    let (e, clock) = engine_with_shards(16);
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    for i in 0..2000u32 {
        e.check(&i.to_le_bytes(), b"/e", 1);
    }
    clock.advance(ms(1000));
    let mut dropped = Vec::new();
    for _ in 0..8 {
        dropped.push(e.expire_step(usize::MAX));
    }
    assert!(
        dropped.iter().all(|&n| n > 0 && n < 2000),
        "{dropped:?}: two shards per step"
    );
    assert_eq!(dropped.iter().sum::<usize>(), 2000);
    assert_eq!(e.key_count(), 0);
}

#[test]
fn duplicate_wheel_references_stay_bounded() {
    // Each RL.RESET leaves the removed entry's wheel reference behind and the next check
    // stores the key again in the same slot, with a reference of its own; a reference that
    // fires early is re-scheduled, so without a bound each round would add one for good. The same
    // with a CL.THROTTLE key whose deadline a negative quantity moves earlier, every round.
    let (e, clock) = one_shard();
    e.set_limit(Scope::Default, limit(&[window(10, 3_600_000, 0)]));
    assert!(e.check(b"c", b"/e", 1).allowed);
    e.throttle(b"k", throttle_args(100, 1, 3600, 2)).unwrap();
    let before = e.memory_bytes();
    for _ in 0..100_000 {
        e.reset(b"c", b"/e");
        assert!(e.check(b"c", b"/e", 1).allowed);
        e.throttle(b"k", throttle_args(100, 1, 3600, 1)).unwrap();
        e.throttle(b"k", throttle_args(100, 1, 3600, -1)).unwrap();
    }
    let grown = e.memory_bytes() - before;
    assert!(grown < 64 * 1024, "the wheel grew by {grown} bytes");
    assert_eq!(e.key_count(), 2);
    // Both keys still expire when their state is full again: c after 6 minutes, k (two
    // units of an hour each) after two hours. A purge collects at most ~17 s of the wheel.
    let purge = |seconds: u64| {
        clock.advance(ms(seconds * 1000));
        for _ in 0..seconds / 10 {
            e.purge_decayed(usize::MAX);
        }
    };
    purge(3600);
    assert_eq!(e.key_count(), 1);
    purge(3700);
    assert_eq!(e.key_count(), 0);
}
