//! Limits and tiers: precedence (client and endpoint, client, tier and endpoint, tier,
//! endpoint, default), changes that apply to the next check, RL.EXPLAIN's scope, tier and
//! windows, and the shape ids a limit in force keeps.

use super::*;
use crossbeam_epoch::Owned;

#[test]
fn precedence_through_the_engine_and_limit_changes_apply_next_check() {
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(1, 1000, 0)]));
    e.set_limit(
        Scope::Endpoint(pattern("/api/*")),
        limit(&[window(2, 1000, 0)]),
    );
    e.set_limit(
        Scope::Tier {
            name: b"gold".to_vec(),
            endpoint: None,
        },
        limit(&[window(3, 1000, 0)]),
    );
    e.set_limit(
        Scope::Client {
            id: b"alice".to_vec(),
            endpoint: Some(pattern("/api/x")),
        },
        limit(&[window(4, 1000, 0)]),
    );
    let lim_of = |c: &[u8], ep: &[u8]| e.peek(c, ep).limit;
    assert_eq!(lim_of(b"bob", b"/web"), 1);
    assert_eq!(lim_of(b"bob", b"/api/y"), 2);
    e.set_tier(b"bob", b"gold");
    assert_eq!(e.get_tier(b"bob"), Some(b"gold".to_vec()));
    assert_eq!(lim_of(b"bob", b"/api/y"), 3, "tier beats endpoint");
    assert_eq!(lim_of(b"alice", b"/api/x"), 4);
    assert_eq!(lim_of(b"alice", b"/api/y"), 2);
    assert!(e.del_tier(b"bob"));
    assert!(!e.del_tier(b"bob"));
    assert_eq!(lim_of(b"bob", b"/api/y"), 2);

    // A limit change applies to the very next check. The bucket stays per client+endpoint
    // and its state is a time (the TAT), so the 1 s of debt carries over: under 10/s that is
    // a full bucket, which frees one unit every 100 ms.
    assert!(e.check(b"bob", b"/web", 1).allowed);
    assert!(!e.check(b"bob", b"/web", 1).allowed);
    e.set_limit(Scope::Default, limit(&[window(10, 1000, 0)]));
    let r = e.check(b"bob", b"/web", 1);
    assert_eq!(
        (r.allowed, r.limit, r.remaining, r.retry_after_ms),
        (false, 10, 0, 100)
    );
    clock.advance(ms(300));
    let r = e.check(b"bob", b"/web", 1);
    assert_eq!((r.allowed, r.limit, r.remaining), (true, 10, 2));
    assert!(e.del_limit(&Scope::Default));
    assert_eq!(e.check(b"bob", b"/web", 1).limit, -1);

    let x = e.explain(b"alice", b"/api/x");
    assert_eq!(
        x.scope.map(|s| s.to_string()),
        Some("CLIENT alice ENDPOINT /api/x".to_string())
    );
    assert_eq!(x.limit, Some(limit(&[window(4, 1000, 0)])));
    assert_eq!(
        e.get_limit(&Scope::Endpoint(pattern("/api/*"))),
        Some(limit(&[window(2, 1000, 0)]))
    );
    let listed: Vec<String> = e.list_limits().iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(
        listed,
        [
            "CLIENT alice ENDPOINT /api/x",
            "TIER gold",
            "ENDPOINT /api/*"
        ]
    );
}

#[test]
fn explain_reports_tier_and_window_states() {
    let (e, _clock) = engine();
    e.set_tier(b"c", b"gold");
    e.set_limit(
        Scope::Tier {
            name: b"gold".to_vec(),
            endpoint: Some(pattern("/e*")),
        },
        limit(&[window(5, 1000, 0), window(100, 60_000, 5)]),
    );
    assert!(e.check(b"c", b"/e", 2).allowed);
    let x = e.explain(b"c", b"/e");
    assert_eq!(x.tier, Some(b"gold".to_vec()));
    assert_eq!(
        x.scope.map(|s| s.to_string()),
        Some("TIER gold ENDPOINT /e*".to_string())
    );
    let states: Vec<(i64, i64)> = x
        .windows
        .iter()
        .map(|w| (w.remaining, w.reset_after_ms))
        .collect();
    assert_eq!(states, [(3, 400), (103, 1200)]);
}

#[test]
fn a_limit_in_force_keeps_its_shape_id_through_recycling() {
    // The default limit, 2 per day, gets the first shape id; c uses one of its two. Then
    // 4094 other windows are set (and replaced) on an endpoint, handing out every other id.
    // When the default is raised to 1000/s, the id that comes round next is the default's
    // own: had it been recycled, c's state would read as written under 1000/s, unscaled —
    // half a day of debt, denied. Rescaled from 2/day instead, it is half used: allowed.
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(2, 86_400_000, 0)]));
    assert!(e.check(b"c", b"/e", 1).allowed);
    for n in 0..4094 {
        e.set_limit(
            Scope::Endpoint(pattern("/other")),
            limit(&[window(2 + n, 2000, 0)]),
        );
    }
    e.set_limit(Scope::Default, limit(&[window(1000, 1000, 0)]));
    let r = e.check(b"c", b"/e", 1);
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.remaining, 499, "half of 1000 used before this one");
}

#[test]
fn replicated_state_does_not_recycle_the_id_of_a_limit_being_set() {
    // Every shape id but one is named by a limit in force. A limit change has interned its
    // new window (taking that last id) and not yet published its table when a replicated
    // state arrives under yet another window. Interning that window against the published
    // table alone would see the id as free and take it, so the new limit would go into force
    // naming another window's numbers. It must wait for the change to be published instead,
    // and then find every id in force: its window goes without one (id 0).
    let (e, _clock) = engine();
    let w = |n: u64| window(n, 1000, 0);
    for n in 1..4096u64 {
        assert_eq!(
            u64::from(e.shapes.intern(Algorithm::Gcra, &w(n), Vec::new)),
            n
        );
    }
    e.edit_table(|t| {
        for n in 2..4096u64 {
            let mut l = limit(&[w(n)]);
            l.shapes = vec![n as u16];
            let id = format!("c{n}").into_bytes();
            t.set_limit(Scope::Client { id, endpoint: None }, l);
        }
    });
    // What the replica receives: a state written on a primary under 7/2s.
    let primary = engine().0;
    primary.set_change_tracking(true);
    primary.set_limit(Scope::Default, limit(&[window(7, 2000, 0)]));
    primary.check(b"r", b"/e", 1);
    let mut changes = Vec::new();
    primary.drain_changes(&mut changes);
    assert_eq!(changes.len(), 1, "{changes:?}");

    // `set_limit(Default, 5000/1s)` by hand, stopped between interning and publishing.
    let writer = e.writer.lock().unwrap();
    let taken = e
        .shapes
        .intern(Algorithm::Gcra, &w(5000), || e.shapes_in_force());
    assert_eq!(taken, 1, "the one id no limit in force names");
    std::thread::scope(|s| {
        let replica = s.spawn(|| e.apply_change(&changes[0]));
        // Give the replica's apply every chance to run into the race before publishing.
        std::thread::sleep(Duration::from_millis(50));
        let mut l = limit(&[w(5000)]);
        l.shapes = vec![taken];
        let guard = epoch::pin();
        let mut next = e.table(&guard).clone();
        next.set_limit(Scope::Default, l);
        let old = e.table.swap(Owned::new(next), Ordering::AcqRel, &guard);
        // SAFETY: as in `edit_table`: unreachable now, destroyed once no guard holds it.
        unsafe { guard.defer_destroy(old) };
        drop(writer);
        replica.join().unwrap();
    });
    assert_eq!(
        e.shapes.get(taken),
        Some((Algorithm::Gcra, w(5000))),
        "the new limit's id still names its own window"
    );
    assert_eq!(e.shapes.find(Algorithm::Gcra, &window(7, 2000, 0)), None);
    assert_eq!(
        e.get_limit(&Scope::Default).map(|l| l.shapes),
        Some(vec![taken])
    );
}
