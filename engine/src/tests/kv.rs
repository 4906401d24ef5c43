//! Key-value items: reads, writes and transactions (and the count of a transaction's
//! writes), expiry through the wheel, the bound, FLUSH of items alone, and CAS values that
//! never repeat across a restore or a failover.

use super::*;

#[test]
fn kv_items_are_read_written_and_expire_through_the_wheel() {
    let (e, clock) = engine();
    let cas1 = e.kv_txn(&[b"k"], |t| {
        t.write(b"k", put(b"1", Some(T0 + 1_000_000_000)))
    });
    let item = e.kv_get(b"k").expect("stored");
    assert_eq!((item.value.as_slice(), Ok(item.cas)), (&b"1"[..], cas1));
    // Read-modify-write in one transaction (what INCR does).
    e.kv_txn(&[b"k"], |t| {
        let cur = t.get(b"k").cloned().expect("live");
        let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
        t.write(b"k", put((n + 1).to_string().as_bytes(), cur.expires_at))
    })
    .expect("ok");
    assert_eq!(e.kv_get(b"k").unwrap().value, b"2");
    assert_ne!(
        e.kv_get(b"k").unwrap().cas,
        cas1.unwrap(),
        "every write changes the CAS"
    );
    // A key with no expiry, and one outside the transaction's keys.
    e.kv_txn(&[b"p"], |t| {
        assert_eq!(t.write(b"p", put(b"x", None)).map(|c| c > 0), Ok(true));
        assert_eq!(t.write(b"not-named", put(b"x", None)), Ok(0));
        assert!(t.get(b"not-named").is_none());
    });
    assert_eq!(e.key_count(), 2);
    clock.advance(ms(1000));
    assert!(e.kv_get(b"k").is_none(), "expired reads as absent at once");
    e.purge_decayed(usize::MAX);
    assert_eq!(e.key_count(), 1, "the wheel dropped it");
    assert!(e.kv_get(b"p").is_some());
    // Deleting, and FLUSHALL.
    e.kv_txn(&[b"p"], |t| t.write(b"p", KvWrite::Delete))
        .expect("ok");
    assert_eq!(e.key_count(), 0);
    e.kv_txn(&[b"q"], |t| t.write(b"q", put(b"x", None)))
        .expect("ok");
    e.flush_state();
    assert!(e.kv_get(b"q").is_none());
}

#[test]
fn kv_expiry_moved_earlier_or_later_is_honoured() {
    let (e, clock) = engine();
    e.kv_txn(&[b"k"], |t| {
        t.write(b"k", put(b"v", Some(T0 + 10_000_000_000)))
    })
    .unwrap();
    e.kv_txn(&[b"k"], |t| {
        t.write(b"k", put(b"v", Some(T0 + 1_000_000_000)))
    })
    .unwrap();
    clock.advance(ms(1_100));
    e.purge_decayed(usize::MAX);
    assert_eq!(e.key_count(), 0, "the earlier expiry was scheduled");
    e.kv_txn(&[b"k"], |t| {
        t.write(b"k", put(b"v", Some(e.now() + 1_000_000_000)))
    })
    .unwrap();
    e.kv_txn(&[b"k"], |t| {
        t.write(b"k", put(b"v", Some(e.now() + 5_000_000_000)))
    })
    .unwrap();
    clock.advance(ms(1_100));
    e.purge_decayed(usize::MAX);
    assert_eq!(e.key_count(), 1, "a later expiry keeps the key");
    clock.advance(ms(4_000));
    e.purge_decayed(usize::MAX);
    assert_eq!(e.key_count(), 0);
}

#[test]
fn kv_transactions_over_several_keys_are_atomic() {
    let e = std::sync::Arc::new(Engine::new(SystemClock::new(), EngineConfig::default()));
    let keys: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'k', i]).collect();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            let keys = keys.clone();
            std::thread::spawn(move || {
                let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
                for _ in 0..500 {
                    // Move one unit from every key to the next, all at once: the sum stays 0.
                    e.kv_txn(&refs, |t| {
                        for k in &refs {
                            let n: i64 = t
                                .get(k)
                                .map(|i| std::str::from_utf8(&i.value).unwrap().parse().unwrap())
                                .unwrap_or(0);
                            t.write(k, put((n + 1).to_string().as_bytes(), None))
                                .unwrap();
                        }
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for k in &keys {
        assert_eq!(e.kv_get(k).unwrap().value, b"2000", "no lost update");
    }
}

#[test]
fn kv_respects_the_bounds_and_survives_a_snapshot() {
    let clock = FakeClock::new(T0);
    let e = Engine::new(
        clock.clone(),
        EngineConfig {
            shards: 1,
            max_keys: Some(2),
            max_memory: None,
            policy: EvictionPolicy::RefuseDeny,
        },
    );
    e.kv_txn(&[b"a"], |t| t.write(b"a", put(b"1", None)))
        .unwrap();
    e.kv_txn(&[b"b"], |t| {
        t.write(b"b", put(b"2", Some(T0 + 60_000_000_000)))
    })
    .unwrap();
    assert_eq!(
        e.kv_txn(&[b"c"], |t| t.write(b"c", put(b"3", None))),
        Err(KvError::OutOfMemory)
    );
    assert!(
        e.kv_txn(&[b"a"], |t| t.write(b"a", put(b"9", None)))
            .is_ok(),
        "updates still work"
    );
    let snap = e.snapshot_state();
    let e2 = Engine::new(clock.clone(), EngineConfig::default());
    assert_eq!(e2.restore_state(&snap), Ok(2));
    assert_eq!(e2.kv_get(b"a").map(|i| i.value), Some(b"9".to_vec()));
    assert_eq!(
        e2.kv_get(b"b").and_then(|i| i.expires_at),
        Some(T0 + 60_000_000_000)
    );
}

#[test]
fn kv_flush_keeps_rate_state() {
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 1000, 0)]));
    e.check(b"c", b"/e", 1);
    e.kv_txn(&[b"k"], |t| t.write(b"k", put(b"1", None)))
        .unwrap();
    assert_eq!((e.key_count(), e.kv_count()), (2, 1));
    e.kv_flush();
    assert_eq!((e.key_count(), e.kv_count()), (1, 0));
    assert_eq!(e.peek(b"c", b"/e").remaining, 4);
}

#[test]
fn cas_values_go_on_after_a_restore_or_replicated_items() {
    // A client holds the CAS token of "k" from before a restart (or a failover). After the
    // restore, new writes must not be handed that value again, or its `cas` would succeed
    // against an item it never saw.
    let (e, _) = engine();
    let mut held = 0;
    for _ in 0..5 {
        held = e
            .kv_txn(&[b"k"], |t| t.write(b"k", put(b"v", None)))
            .unwrap();
    }
    let snap = e.snapshot_state();
    let (restarted, _) = engine();
    restarted.restore_state(&snap).unwrap();
    assert_eq!(restarted.kv_get(b"k").map(|i| i.cas), Some(held));
    let next = restarted
        .kv_txn(&[b"other"], |t| t.write(b"other", put(b"w", None)))
        .unwrap();
    assert!(next > held, "after a restore: {next} <= {held}");

    e.set_change_tracking(true);
    let held = e
        .kv_txn(&[b"k"], |t| t.write(b"k", put(b"v2", None)))
        .unwrap();
    let mut changes = Vec::new();
    e.drain_changes(&mut changes);
    let (replica, _) = engine();
    changes.iter().for_each(|c| replica.apply_change(c));
    let next = replica
        .kv_txn(&[b"other"], |t| t.write(b"other", put(b"w", None)))
        .unwrap();
    assert!(next > held, "on a replica: {next} <= {held}");
}

#[test]
fn a_transaction_counts_the_writes_it_applied() {
    let (e, _clock) = bounded(2, EvictionPolicy::RefuseDeny);
    let reads_only = e.kv_txn(&[b"a"], |t| {
        assert!(t.get(b"a").is_none());
        t.writes()
    });
    assert_eq!(reads_only, 0);
    let n = e.kv_txn(&[b"a", b"b"], |t| {
        t.write(b"a", put(b"1", Some(T0 + 1_000_000_000))).unwrap();
        assert_eq!(t.writes(), 1, "a Put");
        let item = t.get(b"a").cloned().expect("stored");
        let later = Item {
            expires_at: Some(T0 + 2_000_000_000),
            ..item
        };
        t.write(b"a", KvWrite::Retime(later)).unwrap();
        assert_eq!(t.writes(), 2, "a Retime");
        assert_eq!(t.write(b"b", KvWrite::Delete), Ok(0));
        t.writes()
    });
    assert_eq!(n, 3, "a Delete counts, whether or not the key held an item");
    // Two items held, the bound is two: a new one is refused, and is not counted.
    e.kv_txn(&[b"b"], |t| t.write(b"b", put(b"2", None)))
        .unwrap();
    let refused = e.kv_txn(&[b"c"], |t| {
        assert_eq!(t.write(b"c", put(b"3", None)), Err(KvError::OutOfMemory));
        t.writes()
    });
    assert_eq!(refused, 0);
    // A key in a shard the transaction did not lock is ignored, and is not counted.
    let (e, _clock) = engine();
    let shard_of = |k: &[u8]| e.store.index_of(crate::fingerprint::kv_fingerprint(k));
    let elsewhere = (0u32..)
        .map(|i| format!("k{i}").into_bytes())
        .find(|k| shard_of(k) != shard_of(b"a"))
        .expect("a key of another shard");
    let ignored = e.kv_txn(&[b"a"], |t| {
        assert_eq!(t.write(&elsewhere, put(b"x", None)), Ok(0));
        t.writes()
    });
    assert_eq!(ignored, 0);
    assert!(e.kv_get(&elsewhere).is_none());
}
