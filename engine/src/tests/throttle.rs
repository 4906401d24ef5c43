//! CL.THROTTLE through the engine: redis-cell's reply vectors, the key's lifetime, and
//! arguments at the extremes.

use super::*;

/// One CL.THROTTLE vector: (seconds after start, quantity, expected reply).
type Vector = (f64, i64, [i64; 5]);

#[test]
fn cl_throttle_matches_redis_cell_vectors() {
    let (e, clock) = engine();
    let vectors: [Vector; 15] = [
        (0.0, 6, [1, 5, 5, -1, 0]),
        (0.0, 1, [0, 5, 4, -1, 1]),
        (0.0, 1, [0, 5, 3, -1, 2]),
        (0.0, 1, [0, 5, 2, -1, 3]),
        (0.0, 1, [0, 5, 1, -1, 4]),
        (0.0, 1, [0, 5, 0, -1, 5]),
        (0.0, 1, [1, 5, 0, 1, 5]),
        (3.0, 1, [0, 5, 2, -1, 3]),
        (3.1, 1, [0, 5, 1, -1, 4]),
        (4.0, 1, [0, 5, 1, -1, 4]),
        (8.0, 1, [0, 5, 4, -1, 1]),
        (9.5, 1, [0, 5, 4, -1, 1]),
        (9.5, 0, [0, 5, 4, -1, 1]),
        (9.5, 2, [0, 5, 2, -1, 3]),
        (9.5, 5, [1, 5, 2, 3, 3]),
    ];
    for (i, (t, q, want)) in vectors.iter().enumerate() {
        clock.set(T0 + (t * 1000.0).round() as u64 * 1_000_000);
        let words = [
            "foo".to_string(),
            "4".into(),
            "1".into(),
            "1".into(),
            q.to_string(),
        ];
        let words: Vec<&[u8]> = words.iter().map(|s| s.as_bytes()).collect();
        let (key, args) = parse_throttle_args(&words).expect("valid args");
        let r = e.throttle(key, args).expect("valid rate");
        let got = [
            i64::from(r.limited),
            r.limit,
            r.remaining,
            r.retry_after_s,
            r.reset_after_s,
        ];
        assert_eq!(&got, want, "vector {i} at {t}s, quantity {q}");
    }
}

#[test]
fn cl_throttle_key_expires_at_its_tat_and_is_separate_from_rl() {
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(1, 1000, 0)]));
    let args = ThrottleArgs {
        max_burst: 0,
        count: 1,
        period_s: 2,
        quantity: 1,
    };
    // redis-cell's own end-to-end scenario: 0 burst, 1 per 2 s.
    let r = e.throttle(b"user123", args).expect("ok");
    assert_eq!(
        (
            r.limited,
            r.limit,
            r.remaining,
            r.retry_after_s,
            r.reset_after_s
        ),
        (false, 1, 0, -1, 2)
    );
    let r = e.throttle(b"user123", args).expect("ok");
    assert_eq!(
        (r.limited, r.remaining, r.retry_after_s, r.reset_after_s),
        (true, 0, 2, 2)
    );
    assert_eq!(e.key_count(), 1);
    // An RL bucket named like the CL key is a different bucket.
    assert!(e.check(b"user123", b"", 1).allowed);
    assert_eq!(e.key_count(), 2);
    clock.advance(Duration::from_secs(2));
    e.purge_decayed(usize::MAX);
    assert_eq!(e.key_count(), 0, "CL state lives exactly until its TAT");
    let r = e.throttle(b"user123", args).expect("ok");
    assert_eq!(
        (r.limited, r.retry_after_s, r.reset_after_s),
        (false, -1, 2)
    );
    // Quantity 0 on a fresh key stores nothing.
    let peek = ThrottleArgs {
        quantity: 0,
        ..args
    };
    let r = e.throttle(b"other", peek).expect("ok");
    assert_eq!((r.limited, r.remaining, r.reset_after_s), (false, 1, 0));
    assert_eq!(e.key_count(), 1);
    // Zero rate: refused before touching state.
    let zero = ThrottleArgs { count: 0, ..args };
    assert_eq!(
        e.throttle(b"x", zero),
        Err(CellError(
            "Cell error: Zero rates are not supported".to_string()
        ))
    );
}

#[test]
fn cl_throttle_odd_inputs_do_not_panic() {
    let (e, _clock) = engine();
    let extremes = [i64::MIN, -1, 0, 1, 2, i64::MAX];
    for &max_burst in &extremes {
        for &count in &extremes {
            for &period_s in &extremes {
                for &quantity in &extremes {
                    let args = ThrottleArgs {
                        max_burst,
                        count,
                        period_s,
                        quantity,
                    };
                    let _ = e.throttle(b"k", args);
                }
            }
        }
    }
}
