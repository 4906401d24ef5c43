//! The key and byte bounds: each policy (evict-nearest, refuse-allow, refuse-deny), what is
//! evicted and what never is, decayed entries reclaimed first, multi-window checks rolled
//! back whole, and items and tables kept within the byte bound.

use super::*;

#[test]
fn bounds_through_the_engine() {
    let clock = FakeClock::new(T0);
    let e = Engine::new(
        clock.clone(),
        EngineConfig {
            shards: 1,
            max_keys: Some(4),
            max_memory: None,
            policy: EvictionPolicy::RefuseDeny,
        },
    );
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    for c in 0..4u8 {
        assert!(e.check(&[c], b"/e", 1).allowed);
    }
    let r = e.check(b"new", b"/e", 1);
    assert_eq!((r.allowed, r.retry_after_ms), (false, -1), "fail-closed");
    assert!(e.check(&[0], b"/e", 1).allowed, "known keys go on");
    e.set_bounds(Some(4), None, EvictionPolicy::RefuseAllow);
    assert!(e.check(b"new", b"/e", 1).allowed, "fail-open");
    assert_eq!(e.key_count(), 4, "...without storing");
    e.set_bounds(Some(4), None, EvictionPolicy::EvictNearest);
    assert!(e.check(b"new", b"/e", 1).allowed);
    assert_eq!(e.key_count(), 4);
    let s = e.stats();
    assert_eq!((s.refused, s.evicted), (2, 1));
    // Key 3 (one request; keys 1 to 3 decay at the same moment) was evicted, not key 0 (two).
    assert_eq!(e.peek(&[0], b"/e").remaining, 3);
    assert_eq!(e.peek(&[3], b"/e").remaining, 5);
}

#[test]
fn eviction_passes_over_keys_whose_deadline_moved_later() {
    // All four keys are first scheduled for the same moment (T0 + 200 ms), and h, stored
    // last, is the first their wheel slot gives back. h then uses its whole allowance, so its
    // state lasts a second. When a newcomer needs room, h must not be the key evicted: that
    // would hand an exhausted heavy hitter a fresh allowance.
    let (e, _clock) = bounded(4, EvictionPolicy::EvictNearest);
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    for c in [&b"a"[..], b"b", b"c", b"h"] {
        assert!(e.check(c, b"/e", 1).allowed);
    }
    for _ in 0..4 {
        assert!(e.check(b"h", b"/e", 1).allowed);
    }
    assert!(!e.check(b"h", b"/e", 1).allowed);
    assert!(e.check(b"newcomer", b"/e", 1).allowed);
    assert_eq!((e.key_count(), e.stats().evicted), (4, 1));
    let r = e.check(b"h", b"/e", 1);
    assert!(!r.allowed, "h kept its state: {r:?}");
}

#[test]
fn eviction_never_takes_a_window_the_same_check_just_wrote() {
    // At the bound, each new window of c makes room by evicting the entry nearest to decaying.
    // c's first window (1 per 100 ms) is written first and decays soonest of all, so without
    // care the room for c's second window is made by evicting c's first: c would be charged
    // in one window only, and allowed again at once.
    let (e, _clock) = bounded(4, EvictionPolicy::EvictNearest);
    e.set_limit(
        Scope::Default,
        limit(&[window(1, 100, 0), window(1000, 3_600_000, 0)]),
    );
    assert!(e.check(b"a", b"/e", 1).allowed);
    assert!(e.check(b"b", b"/e", 1).allowed);
    assert!(e.check(b"c", b"/e", 1).allowed);
    assert_eq!(e.key_count(), 4);
    let r = e.check(b"c", b"/e", 1);
    assert!(!r.allowed, "c's first window was charged: {r:?}");
    assert_eq!(r.limit, 1);
}

#[test]
fn rolled_back_windows_add_no_wheel_references() {
    // c's hour window is live, its second window decayed and gone, and the shard is at its
    // bound (a key-value item fills it). Every check writes the hour window, is refused the
    // second window's new key, and puts the hour window back. Putting it back must not leave
    // a wheel reference behind each time: the wheel would grow by 4 bytes per check.
    let (e, clock) = bounded(2, EvictionPolicy::RefuseDeny);
    e.set_limit(
        Scope::Default,
        limit(&[window(10, 3_600_000, 0), window(10, 1000, 0)]),
    );
    assert!(e.check(b"c", b"/e", 1).allowed);
    clock.advance(ms(2000));
    e.purge_decayed(usize::MAX);
    assert_eq!(e.key_count(), 1);
    e.kv_txn(&[b"x"], |t| t.write(b"x", put(b"1", None)))
        .unwrap();
    let before = e.memory_bytes();
    for _ in 0..10_000 {
        let r = e.check(b"c", b"/e", 1);
        assert_eq!((r.allowed, r.retry_after_ms), (false, -1));
    }
    let grown = e.memory_bytes() - before;
    assert!(grown < 1024, "the wheel grew by {grown} bytes");
    assert_eq!(e.explain(b"c", b"/e").windows[0].remaining, 9);
}

#[test]
fn a_full_shard_reclaims_decayed_keys_before_refusing_or_evicting() {
    // Four keys decayed 100 ms ago, and no expiry step has run since (a backlog, as during a
    // mass expiry). A newcomer must be served and stored under every policy, with nothing
    // refused or evicted: the decayed four are dropped as expired.
    for policy in [
        EvictionPolicy::RefuseDeny,
        EvictionPolicy::RefuseAllow,
        EvictionPolicy::EvictNearest,
    ] {
        let (e, clock) = bounded(4, policy);
        e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
        for c in 0..4u8 {
            assert!(e.check(&[c], b"/e", 1).allowed);
        }
        clock.advance(ms(300));
        assert!(e.check(b"newcomer", b"/e", 1).allowed, "{policy:?}");
        assert_eq!(e.key_count(), 1, "{policy:?}");
        let s = e.stats();
        assert_eq!((s.refused, s.evicted, s.expired), (0, 0, 4), "{policy:?}");
    }
}

#[test]
fn a_refused_window_rolls_back_the_others() {
    let clock = FakeClock::new(T0);
    let e = Engine::new(
        clock.clone(),
        EngineConfig {
            shards: 1,
            max_keys: Some(3),
            max_memory: None,
            policy: EvictionPolicy::RefuseDeny,
        },
    );
    e.set_limit(
        Scope::Default,
        limit(&[window(5, 1000, 0), window(50, 60_000, 0)]),
    );
    assert!(e.check(b"a", b"/e", 1).allowed);
    // One slot left: b's first window would fit, its second not. Nothing of b may remain.
    assert!(!e.check(b"b", b"/e", 1).allowed);
    assert_eq!(e.key_count(), 2);
    assert_eq!(e.peek(b"b", b"/e").remaining, 5);
}

#[test]
fn a_key_refused_by_the_bound_under_refuse_deny_reports_nothing_left_and_nothing_stored() {
    for windows in [
        vec![window(5, 1000, 0)],
        vec![window(5, 1000, 0), window(50, 60_000, 0)],
    ] {
        let (e, _clock) = bounded(1, EvictionPolicy::RefuseDeny);
        e.set_limit(Scope::Default, limit(&windows));
        e.kv_txn(&[b"x"], |t| t.write(b"x", put(b"1", None)))
            .unwrap();
        let r = e.check(b"new", b"/e", 1);
        assert_eq!(
            (r.allowed, r.remaining, r.retry_after_ms, r.reset_after_ms),
            (false, 0, -1, 0),
            "{} window(s)",
            windows.len()
        );
        assert_eq!(
            e.explain(b"new", b"/e").windows[0].remaining,
            5,
            "nothing charged"
        );
    }
}

#[test]
fn kv_at_the_bound_reclaims_expired_items_first() {
    // Two items expired a second ago and no expiry step has run since: a new item is stored,
    // not refused, and the two count as expired.
    let (e, clock) = bounded(2, EvictionPolicy::RefuseDeny);
    for k in [&b"a"[..], b"b"] {
        e.kv_txn(&[k], |t| t.write(k, put(b"1", Some(T0 + 1_000_000_000))))
            .unwrap();
    }
    clock.advance(ms(2000));
    assert!(e
        .kv_txn(&[b"c"], |t| t.write(b"c", put(b"3", None)))
        .is_ok());
    let s = e.stats();
    assert_eq!((s.refused, s.expired), (0, 2));
    assert_eq!(e.kv_get(b"c").map(|i| i.value), Some(b"3".to_vec()));
}

#[test]
fn a_new_key_whose_table_must_grow_at_the_bound_evicts_one_batch_not_the_shard() {
    // 988 exhausted RL clients and 12 CL.THROTTLE keys, the CL table at its growth point, the
    // shard at --max-keys. One more CL key evicts one batch (an eighth), and grows its table:
    // it does not evict batch after batch of the other table until its own has room.
    let (e, _clock) = bounded(1000, EvictionPolicy::EvictNearest);
    e.set_limit(Scope::Default, limit(&[window(1, 60_000, 0)]));
    for c in 0..988u32 {
        assert!(e.check(&c.to_le_bytes(), b"/e", 1).allowed);
    }
    for k in 0..12u32 {
        e.throttle(&k.to_le_bytes(), throttle_args(0, 1, 3600, 1))
            .unwrap();
    }
    assert_eq!(e.key_count(), 1000);
    e.throttle(b"one more", throttle_args(0, 1, 3600, 1))
        .unwrap();
    let evicted = e.stats().evicted;
    assert!((1..=130).contains(&evicted), "evicted {evicted}");
    let denied = (0..988u32)
        .filter(|c| !e.check(&c.to_le_bytes(), b"/e", 1).allowed)
        .count();
    assert!(
        denied >= 988 - 130,
        "only {denied} exhausted clients still denied"
    );
}

#[test]
fn an_item_at_the_byte_bound_evicts_what_it_needs_then_is_stored() {
    // 1,000 exhausted clients; the byte bound just above what they use. A 2 KB item needs
    // the bytes of some of them: a batch is evicted and their table re-packed smaller.
    // Evicted one at a time, entries would give no bytes back until every one was gone, and
    // the item would be refused all the same.
    let (e, _clock) = one_shard();
    e.set_limit(Scope::Default, limit(&[window(1, 3_600_000, 0)]));
    for c in 0..1000u32 {
        assert!(e.check(&c.to_le_bytes(), b"/e", 1).allowed);
    }
    let used = e.memory_bytes();
    e.set_bounds(None, Some(used + 1000), EvictionPolicy::EvictNearest);
    let big = vec![b'v'; 2048];
    assert!(e
        .kv_txn(&[b"big"], |t| t.write(b"big", put(&big, None)))
        .is_ok());
    let evicted = e.stats().evicted;
    assert!((1..=250).contains(&evicted), "evicted {evicted}");
    assert!(
        e.memory_bytes() <= used + 1000,
        "{} > {}",
        e.memory_bytes(),
        used + 1000
    );
}

#[test]
fn a_new_key_is_refused_when_nothing_can_be_evicted() {
    // Items without an expiry are never evicted: with the shard full of them, a new rate
    // key is not stored (the check is answered as under refuse-allow), and the bound holds.
    let (e, _clock) = bounded(10, EvictionPolicy::EvictNearest);
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    for i in 0..10u8 {
        let k = [b'k', i];
        e.kv_txn(&[&k], |t| t.write(&k, put(b"1", None))).unwrap();
    }
    let r = e.check(b"c", b"/e", 1);
    assert!(r.allowed, "fail-open, as refuse-allow");
    assert_eq!(e.key_count(), 10);
    assert_eq!(e.stats().refused, 1);
}

#[test]
fn items_stay_within_the_byte_bound_when_the_slab_grows() {
    // The slab of items doubles when full; that growth is part of a new item's cost.
    for bound in [20_000u64, 50_000, 100_000, 300_000] {
        let clock = FakeClock::new(T0);
        let e = Engine::new(
            clock.clone(),
            EngineConfig {
                shards: 1,
                max_keys: None,
                max_memory: Some(bound),
                policy: EvictionPolicy::RefuseDeny,
            },
        );
        let base = e.memory_bytes();
        e.set_bounds(None, Some(base + bound), EvictionPolicy::RefuseDeny);
        let mut stored = 0;
        for i in 0..10_000u32 {
            let k = i.to_le_bytes();
            if e.kv_txn(&[&k], |t| t.write(&k, put(b"12345678", None)))
                .is_ok()
            {
                stored += 1;
            }
            // The shard's header (Padded: its lock and table headers) is outside its bound.
            assert!(
                e.memory_bytes() <= base + bound + 1024,
                "{} > {} after {stored} items",
                e.memory_bytes(),
                base + bound
            );
        }
        assert!(stored > 0);
    }
}

#[test]
fn an_item_evicts_by_what_it_needs_after_the_evictions_when_the_slab_is_full() {
    // 1024 items fill the slab exactly, so one more would double it; but evicting items frees
    // slab slots, and the doubling is then no longer needed. Counted once, before evicting,
    // the doubling would make the item evict 768 of the 1024.
    let (e, _clock) = one_shard();
    for i in 0..1024u32 {
        let k = i.to_le_bytes();
        let at = T0 + 3_600_000_000_000 + u64::from(i) * 1_000_000;
        e.kv_txn(&[&k], |t| t.write(&k, put(b"12345678", Some(at))))
            .unwrap();
    }
    let used = e.memory_bytes();
    e.set_bounds(None, Some(used + 200), EvictionPolicy::EvictNearest);
    let k = 5000u32.to_le_bytes();
    let later = T0 + 7_200_000_000_000;
    assert!(e
        .kv_txn(&[&k], |t| t.write(&k, put(b"12345678", Some(later))))
        .is_ok());
    let evicted = e.stats().evicted;
    assert!(
        (1..=1024 / 8 + 1).contains(&evicted),
        "evicted {evicted} of 1024 items to store one"
    );
}

#[test]
fn tables_never_used_stay_unallocated_through_re_packs() {
    // A shard of items only: making room re-packs the rate tables, which must not give the
    // three empty ones their minimum size (1 KB per shard taken from the bound, and a second
    // batch evicted to pay for it).
    let (e, _clock) = one_shard();
    for i in 0..100u32 {
        let k = i.to_le_bytes();
        let at = T0 + 3_600_000_000_000 + u64::from(i) * 1_000_000;
        e.kv_txn(&[&k], |t| t.write(&k, put(b"12345678", Some(at))))
            .unwrap();
    }
    let used = e.memory_bytes();
    e.set_bounds(None, Some(used - 800), EvictionPolicy::EvictNearest);
    let k = 5000u32.to_le_bytes();
    assert!(e
        .kv_txn(&[&k], |t| t.write(&k, put(b"12345678", None)))
        .is_ok());
    assert_eq!(e.stats().evicted, 100 / 8, "one batch");
    assert!(e.memory_bytes() < used);
}
