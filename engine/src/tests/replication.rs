//! The change feed: a replica stores the primary's state and never re-decides it, and a
//! FLUSHALL racing the drain loses nothing.

use super::*;

#[test]
fn changes_replicate_state_not_decisions() {
    let (primary, clock) = engine();
    let replica = Engine::new(clock.clone(), EngineConfig::default());
    for e in [&primary, &replica] {
        e.set_limit(
            Scope::Default,
            limit(&[window(5, 1000, 0), window(50, 60_000, 0)]),
        );
        e.set_limit(
            Scope::Endpoint(pattern("/s")),
            limit(&[window(4, 1000, 0)]).with_algorithm(Algorithm::Sliding),
        );
    }
    let mut changes = Vec::new();
    primary.drain_changes(&mut changes);
    assert!(
        changes.is_empty(),
        "nothing is recorded while tracking is off"
    );
    primary.set_change_tracking(true);
    // A hot key written 3 times coalesces into one record per window.
    for _ in 0..3 {
        primary.check(b"hot", b"/e", 1);
    }
    primary.check(b"c", b"/s", 2);
    primary
        .throttle(
            b"cl",
            ThrottleArgs {
                max_burst: 4,
                count: 1,
                period_s: 60,
                quantity: 1,
            },
        )
        .unwrap();
    primary
        .kv_txn(&[b"k"], |t| t.write(b"k", put(b"7", None)))
        .unwrap();
    primary.drain_changes(&mut changes);
    assert_eq!(changes.len(), 2 + 1 + 1 + 1, "{changes:?}");
    // The replica's clock has moved on: it must not recompute, only store.
    clock.advance(ms(10));
    for c in &changes {
        replica.apply_change(c);
    }
    for (client, ep) in [(&b"hot"[..], &b"/e"[..]), (b"c", b"/s")] {
        assert_eq!(replica.peek(client, ep), primary.peek(client, ep));
    }
    assert_eq!(replica.kv_get(b"k").map(|i| i.value), Some(b"7".to_vec()));
    // Reset and FLUSHALL travel too.
    changes.clear();
    primary.reset(b"hot", b"/e");
    primary.drain_changes(&mut changes);
    for c in &changes {
        replica.apply_change(c);
    }
    assert_eq!(replica.peek(b"hot", b"/e").remaining, 5);
    changes.clear();
    primary.flush_state();
    primary.check(b"after", b"/e", 1);
    primary.drain_changes(&mut changes);
    assert_eq!(changes.first(), Some(&Change::Flush));
    for c in &changes {
        replica.apply_change(c);
    }
    assert!(replica.kv_get(b"k").is_none());
    assert_eq!(
        replica.key_count(),
        2,
        "only the key written after the flush"
    );
}

#[test]
fn a_flush_racing_the_replication_drain_loses_nothing_on_the_replica() {
    // One thread checks fresh keys, one flushes repeatedly, and this one drains and applies
    // the changes to a replica, as the replication pump does. Were a drain to run between a
    // flush's clearing of the shards and its flag, the writes made after the flush would
    // travel before the flush record and be wiped by it on the replica, and the replica would
    // hold fewer entries than the primary at the end of a round.
    let w = window(1000, 1000, 0);
    for round in 0..40 {
        let (primary, _) = engine_with_shards(4);
        let (replica, _) = engine_with_shards(4);
        for e in [&primary, &replica] {
            e.set_limit(Scope::Default, limit(&[w]));
        }
        primary.set_change_tracking(true);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut changes = Vec::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    primary.check(&i.to_le_bytes(), b"/", 1);
                    i += 1;
                }
            });
            let flusher = s.spawn(|| {
                for _ in 0..50 {
                    primary.flush_state();
                    std::thread::yield_now();
                }
            });
            while !flusher.is_finished() {
                changes.clear();
                primary.drain_changes(&mut changes);
                changes.iter().for_each(|c| replica.apply_change(c));
            }
            stop.store(true, Ordering::Relaxed);
        });
        changes.clear();
        primary.drain_changes(&mut changes);
        changes.iter().for_each(|c| replica.apply_change(c));
        assert_eq!(
            replica.key_count(),
            primary.key_count(),
            "round {round}: the replica lost entries"
        );
    }
}
