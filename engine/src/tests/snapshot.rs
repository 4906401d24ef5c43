//! Snapshots: a round trip of every kind of state, decayed entries skipped, corrupt or lying
//! files refused whole, and loading into tables sized for the load.

use super::*;

#[test]
fn snapshot_round_trip_and_corruption() {
    let (e, clock) = engine();
    e.set_limit(
        Scope::Default,
        limit(&[window(5, 1000, 0), window(100, 3_600_000, 0)]),
    );
    e.set_limit(
        Scope::Endpoint(pattern("/s")),
        limit(&[window(10, 60_000, 0)]).with_algorithm(Algorithm::Sliding),
    );
    for c in 0..50u32 {
        e.check(&c.to_le_bytes(), b"/e", 3);
        e.check(&c.to_le_bytes(), b"/s", 4);
    }
    let args = ThrottleArgs {
        max_burst: 4,
        count: 1,
        period_s: 60,
        quantity: 2,
    };
    e.throttle(b"cl", args).expect("ok");
    let snap = e.snapshot_state();

    // A fresh engine, a little later, with the same limits.
    clock.advance(ms(100));
    let e2 = Engine::new(clock.clone(), EngineConfig::default());
    e2.set_limit(
        Scope::Default,
        limit(&[window(5, 1000, 0), window(100, 3_600_000, 0)]),
    );
    e2.set_limit(
        Scope::Endpoint(pattern("/s")),
        limit(&[window(10, 60_000, 0)]).with_algorithm(Algorithm::Sliding),
    );
    assert_eq!(e2.restore_state(&snap), Ok(50 * 3 + 1));
    for c in [0u32, 17, 49] {
        assert_eq!(
            e2.peek(&c.to_le_bytes(), b"/e"),
            e.peek(&c.to_le_bytes(), b"/e")
        );
        assert_eq!(
            e2.peek(&c.to_le_bytes(), b"/s"),
            e.peek(&c.to_le_bytes(), b"/s")
        );
    }
    let peek = ThrottleArgs {
        quantity: 0,
        ..args
    };
    assert_eq!(e2.throttle(b"cl", peek), e.throttle(b"cl", peek));

    // Decayed entries are skipped on a late restore.
    clock.advance(ms(2_000));
    let e3 = Engine::new(clock.clone(), EngineConfig::default());
    assert_eq!(e3.restore_state(&snap), Ok(50 + 50 + 1));

    let mut bad = snap.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    assert_eq!(e3.restore_state(&bad), Err(SnapshotError::Checksum));
    assert!(e3.restore_state(&snap[..snap.len() - 3]).is_err());
    assert_eq!(
        e3.restore_state(b"RLDSNAP"),
        Err(SnapshotError::Truncated(7))
    );
    assert_eq!(e3.restore_state(&[0u8; 64]), Err(SnapshotError::BadMagic));
}

/// Many items of every key and value length (0 to 40 bytes), with flags and expiries, in few
/// shards: the snapshot copies each shard's keys and values into one buffer before writing
/// them, and every item must come back whole, with its own bytes.
#[test]
fn every_kv_item_survives_a_snapshot_byte_for_byte() {
    let clock = FakeClock::new(T0);
    let config = EngineConfig {
        shards: 2,
        ..EngineConfig::default()
    };
    let e = Engine::new(clock.clone(), config);
    let items: Vec<(Vec<u8>, Item)> = (0..300u32)
        .map(|i| {
            let key: Vec<u8> = (0..(i % 41) as u8)
                .map(|b| b ^ i as u8)
                .chain([b'k'])
                .collect();
            let mut key = key;
            key.extend_from_slice(&i.to_le_bytes());
            let item = Item {
                value: (0..((i * 7) % 41) as u8)
                    .map(|b| b.wrapping_mul(3) ^ 0x5a)
                    .collect(),
                flags: i * 13,
                cas: 0,
                expires_at: (i % 3 == 0).then_some(T0 + u64::from(i + 1) * 1_000_000_000),
            };
            (key, item)
        })
        .collect();
    for (key, item) in &items {
        e.kv_txn(&[key], |t| t.write(key, KvWrite::Put(item.clone())))
            .unwrap();
    }
    let snap = e.snapshot_state();
    let e2 = Engine::new(clock.clone(), config);
    assert_eq!(e2.restore_state(&snap), Ok(items.len()));
    for (key, item) in &items {
        let (before, after) = (e.kv_get(key).unwrap(), e2.kv_get(key).unwrap());
        assert_eq!(after.value, item.value, "value of {key:?}");
        assert_eq!(after.flags, item.flags, "flags of {key:?}");
        assert_eq!(after.expires_at, item.expires_at, "expiry of {key:?}");
        assert_eq!(after.cas, before.cas, "cas of {key:?}");
    }
}

#[test]
fn a_snapshot_loads_into_tables_sized_for_it() {
    // A snapshot lists a shard's entries in slot order, sorted by where they hash. Loaded
    // into tables that grow as they fill, the first entries would all hash into the start of
    // each table, and insertions and re-packs would probe one run as long as the table
    // (minutes of CPU for 3M keys). The tables are sized for the whole load first, so a load
    // re-packs each shard once (growing as it filled, each shard here would re-pack ~35
    // times).
    let (e, _) = engine_with_shards(4);
    e.set_limit(Scope::Default, limit(&[window(1, 3_600_000, 0)]));
    let n = 200_000u64;
    for i in 0..n {
        e.check(&i.to_le_bytes(), b"/e", 1);
    }
    let snap = e.snapshot_state();
    let (fresh, _) = engine_with_shards(4);
    fresh.set_limit(Scope::Default, limit(&[window(1, 3_600_000, 0)]));
    let before = fresh.store.rebuilds();
    assert_eq!(fresh.restore_state(&snap).unwrap(), n as usize);
    assert_eq!(fresh.key_count(), n);
    let rebuilds = fresh.store.rebuilds() - before;
    assert!(
        rebuilds <= 4,
        "{rebuilds} re-packs to load {n} keys into 4 shards"
    );
    assert!(
        !fresh.check(&7u64.to_le_bytes(), b"/e", 1).allowed,
        "state came back"
    );
}

/// A snapshot whose checksum holds but whose counts lie, as a crafted file could: the loader
/// reserves for no more records than the bytes left can hold, and refuses the file. Reserving
/// for the count itself would ask the allocator for terabytes, and abort the process.
#[test]
fn a_snapshot_with_lying_counts_is_refused_without_reserving_for_them() {
    let crafted = |entries: u64, items: u64| {
        let mut b = b"RLDSNAP\0".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes()); // version
        b.extend_from_slice(&T0.to_le_bytes()); // saved_at
        b.extend_from_slice(&0u32.to_le_bytes()); // no shapes
        b.extend_from_slice(&entries.to_le_bytes());
        if entries == 0 {
            b.extend_from_slice(&items.to_le_bytes());
        }
        b.extend_from_slice(&[0u8; 40]); // a few bytes of "records"
        let sum = xxhash_rust::xxh3::xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    };
    let (e, _clock) = one_shard();
    for (entries, items) in [
        (1u64 << 40, 0),
        (0, 1u64 << 40),
        (u64::MAX, 0),
        (0, u64::MAX),
    ] {
        assert!(
            e.restore_state(&crafted(entries, items)).is_err(),
            "{entries} entries, {items} items"
        );
    }
    assert_eq!(e.key_count(), 0);
}

/// Byte offsets of each entry of a snapshot made by `snapshot_state` (walking its layout).
fn entry_offsets(snap: &[u8]) -> Vec<usize> {
    let le32 = |at: usize| u32::from_le_bytes(snap[at..at + 4].try_into().unwrap()) as usize;
    let le64 = |at: usize| u64::from_le_bytes(snap[at..at + 8].try_into().unwrap()) as usize;
    let mut at = 20;
    at += 4 + le32(at) * 18; // shapes
    let count = le64(at);
    at += 8;
    (0..count)
        .map(|_| {
            let here = at;
            at += 1 + 8 + 1 + 8 * usize::from(snap[at + 9]);
            here
        })
        .collect()
}

/// The checksum recomputed after an edit, as a crafted file would have it.
fn resum(snap: &mut [u8]) {
    let body = snap.len() - 8;
    let sum = xxhash_rust::xxh3::xxh3_64(&snap[..body]);
    snap[body..].copy_from_slice(&sum.to_le_bytes());
}

/// A snapshot whose checksum holds but whose last entry names an unknown table, or carries
/// a word count its table does not have, is refused whole: no entry before it is loaded.
#[test]
fn a_snapshot_with_a_bad_late_entry_loads_nothing() {
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 3_600_000, 0)]));
    for c in 0..40u32 {
        e.check(&c.to_le_bytes(), b"/e", 2);
    }
    let snap = e.snapshot_state();
    let last = *entry_offsets(&snap).last().expect("entries");
    let mut unknown_table = snap.clone();
    unknown_table[last] = 9;
    resum(&mut unknown_table);
    let mut word_count = snap.clone();
    word_count[last] = 1; // a counting-window entry needs 3 words; this one has 1
    resum(&mut word_count);
    for (what, bad) in [("unknown table", unknown_table), ("word count", word_count)] {
        let fresh = Engine::new(clock.clone(), EngineConfig::default());
        fresh.set_limit(Scope::Default, limit(&[window(5, 3_600_000, 0)]));
        assert!(
            matches!(fresh.restore_state(&bad), Err(SnapshotError::Malformed(_))),
            "{what}"
        );
        assert_eq!(fresh.key_count(), 0, "{what}: nothing loaded");
    }
}

/// Decoding checks a snapshot without touching the engine; the decoded form loads whole, less
/// the items the caller dropped from it.
#[test]
fn a_decoded_snapshot_loads_without_the_items_dropped_from_it() {
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(5, 3_600_000, 0)]));
    e.check(b"a", b"/e", 2);
    let large = vec![b'x'; 100];
    for (key, value) in [(&b"small"[..], &b"v"[..]), (b"large", &large)] {
        e.kv_txn(&[key], |t| t.write(key, put(value, None)))
            .unwrap();
    }
    let mut decoded = DecodedSnapshot::decode(&e.snapshot_state()).expect("whole");
    assert_eq!(decoded.entry_count(), 1);
    assert_eq!(decoded.items().count(), 2);
    decoded.retain_items(|_, item| item.value.len() <= 16);
    let keys: Vec<&[u8]> = decoded.items().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"small"[..]]);

    let fresh = Engine::new(clock.clone(), EngineConfig::default());
    fresh.set_limit(Scope::Default, limit(&[window(5, 3_600_000, 0)]));
    assert_eq!(fresh.restore_decoded(decoded), 2);
    assert_eq!(fresh.peek(b"a", b"/e"), e.peek(b"a", b"/e"));
    assert_eq!(fresh.kv_get(b"small").map(|i| i.value), Some(b"v".to_vec()));
    assert!(fresh.kv_get(b"large").is_none());
}
