//! The counting algorithms: fixed windows and the two-window sliding counter.
//!
//! Both are pure functions of (capacity, period, stored counts, now, cost), like
//! [`crate::gcra::decide`], and return the same [`Decision`] so the engine combines windows
//! the same way whatever the algorithm. All arithmetic is in u128 nanoseconds x counts, so no
//! capacity (up to 2^33) or period (up to 30 days) can overflow.
//!
//! - **fixed**: windows aligned to the Unix epoch (`[k*P, (k+1)*P)`), as envoy's ratelimit
//!   counts. Admits at most `capacity` per aligned window; simple and cheap, but a client can
//!   spend twice the capacity across a window boundary.
//! - **sliding**: the previous window's count, weighted by how much of it still overlaps a
//!   window of length P ending now, plus the current window's count. Smooths the boundary
//!   burst; it still never admits more than `capacity` within one aligned window.

use crate::gcra::Decision;

/// Counts of one window's state: `cur` in aligned window `idx`, `prev` in window `idx - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub idx: u64,
    pub cur: u64,
    pub prev: u64,
}

/// The counts as they stand at aligned window `idx_now`.
fn roll(state: Option<Counts>, idx_now: u64, sliding: bool) -> (u64, u64) {
    match state {
        Some(c) if c.idx == idx_now => (c.cur, if sliding { c.prev } else { 0 }),
        Some(c) if sliding && c.idx + 1 == idx_now => (0, c.cur),
        _ => (0, 0),
    }
}

/// `now`, or the start of the stored state's window if that is later. A reading older than
/// the stored state happens when another thread judged the key at a later instant first (each
/// thread reads the clock before taking the shard lock), or when EXEC judges its whole queue
/// at the instant it started. Judged in the earlier window, [`roll`] would see no count for it
/// and the commit would overwrite the newer window's count, admitting its requests again; so
/// such a reading is judged at the start of the stored window instead.
fn not_before_state(state: Option<Counts>, period_ns: u64, now: u64) -> u64 {
    match state {
        Some(c) if c.idx > now / period_ns => now.max(c.idx.saturating_mul(period_ns)),
        _ => now,
    }
}

/// Fixed window. `period_ns` > 0.
pub(crate) fn decide_fixed(
    capacity: u64,
    period_ns: u64,
    state: Option<Counts>,
    now: u64,
    cost: u64,
) -> (Decision, Counts) {
    let now = not_before_state(state, period_ns, now);
    let p = u128::from(period_ns);
    let idx_now = now / period_ns;
    let end = u128::from(idx_now + 1) * p;
    let now128 = u128::from(now);
    let (cur, _) = roll(state, idx_now, false);
    let cap = u128::from(capacity);
    let after = u128::from(cur) + u128::from(cost);
    let reset = |count: u128| if count > 0 { end - now128 } else { 0 };
    if after <= cap {
        let counts = Counts {
            idx: idx_now,
            cur: u64::try_from(after).unwrap_or(u64::MAX),
            prev: 0,
        };
        let d = Decision {
            allowed: true,
            new_tat: end,
            remaining: to_u64(cap - after),
            retry_after_ns: None,
            reset_if_charged_ns: reset(after),
            reset_uncharged_ns: reset(u128::from(cur)),
        };
        (d, counts)
    } else {
        let d = Decision {
            allowed: false,
            new_tat: end,
            remaining: to_u64(cap.saturating_sub(u128::from(cur))),
            retry_after_ns: (u128::from(cost) <= cap).then(|| end - now128),
            reset_if_charged_ns: reset(u128::from(cur)),
            reset_uncharged_ns: reset(u128::from(cur)),
        };
        (
            d,
            Counts {
                idx: idx_now,
                cur,
                prev: 0,
            },
        )
    }
}

/// Sliding window (two-window weighted counter). `period_ns` > 0.
pub(crate) fn decide_sliding(
    capacity: u64,
    period_ns: u64,
    state: Option<Counts>,
    now: u64,
    cost: u64,
) -> (Decision, Counts) {
    let now = not_before_state(state, period_ns, now);
    let p = u128::from(period_ns);
    let idx_now = now / period_ns;
    let start = u128::from(idx_now) * p;
    let now128 = u128::from(now);
    let e = now128 - start;
    let (cur, prev) = roll(state, idx_now, true);
    let (cur128, prev128, cap, cost128) = (
        u128::from(cur),
        u128::from(prev),
        u128::from(capacity),
        u128::from(cost),
    );
    // Weighted usage times P: prev * (P - e) + cur * P.
    let used = prev128 * (p - e) + cur128 * p;
    let limit = cap * p;
    let reset = |cur: u128| {
        if cur > 0 {
            start + 2 * p - now128
        } else if prev > 0 {
            start + p - now128
        } else {
            0
        }
    };
    if used + cost128 * p <= limit {
        let after = cur128 + cost128;
        let counts = Counts {
            idx: idx_now,
            cur: u64::try_from(after).unwrap_or(u64::MAX),
            prev,
        };
        let d = Decision {
            allowed: true,
            new_tat: start + 2 * p,
            remaining: to_u64((limit - used - cost128 * p) / p),
            retry_after_ns: None,
            reset_if_charged_ns: reset(after),
            reset_uncharged_ns: reset(cur128),
        };
        (d, counts)
    } else {
        let retry = (cost128 <= cap).then(|| {
            // A: later in this window, as the previous window's weight falls.
            if prev128 > 0 && cur128 + cost128 <= cap {
                let room = (cap - cur128 - cost128) * p / prev128;
                if room >= 1 {
                    let e_min = p - room.min(p);
                    if e_min > e {
                        return e_min - e;
                    }
                }
            }
            // B: in the next window, where this window's count becomes the previous one.
            if cur128 == 0 {
                return start + p - now128;
            }
            let room = (cap - cost128) * p / cur128;
            if room >= 1 {
                let e_min = p - room.min(p);
                return start + p + e_min - now128;
            }
            // C: the window after, when nothing counted so far weighs anything.
            start + 2 * p - now128
        });
        let d = Decision {
            allowed: false,
            new_tat: start + 2 * p,
            remaining: to_u64(limit.saturating_sub(used) / p),
            retry_after_ns: retry,
            reset_if_charged_ns: reset(cur128),
            reset_uncharged_ns: reset(cur128),
        };
        (
            d,
            Counts {
                idx: idx_now,
                cur,
                prev,
            },
        )
    }
}

/// Usage (in requests, rounded down) the state represents at `now`: for rescaling state
/// written under another period.
pub(crate) fn usage_at(sliding: bool, period_ns: u64, state: Counts, now: u64) -> u64 {
    let idx_now = now / period_ns;
    let (cur, prev) = roll(Some(state), idx_now, sliding);
    let p = u128::from(period_ns);
    let e = u128::from(now) - u128::from(idx_now) * p;
    to_u64((u128::from(prev) * (p - e) + u128::from(cur) * p) / p)
}

fn to_u64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    type Decide = fn(u64, u64, Option<Counts>, u64, u64) -> (Decision, Counts);

    fn run(
        f: Decide,
        cap: u64,
        p: u64,
        state: &mut Option<Counts>,
        now: u64,
        cost: u64,
    ) -> Decision {
        let (d, c) = f(cap, p, *state, now, cost);
        if d.allowed && cost > 0 {
            *state = Some(c);
        }
        d
    }

    #[test]
    fn fixed_counts_per_aligned_window() {
        let mut st = None;
        let t0 = 100 * S + S / 2; // half-way through window 100
        for rem in [2, 1, 0] {
            let d = run(decide_fixed, 3, S, &mut st, t0, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, rem);
            assert_eq!(d.reset_if_charged_ns, (S / 2) as u128);
        }
        let d = run(decide_fixed, 3, S, &mut st, t0, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ns, Some((S / 2) as u128));
        // The boundary resets the count.
        let d = run(decide_fixed, 3, S, &mut st, 101 * S, 1);
        assert!(d.allowed && d.remaining == 2);
        // Cost above capacity can never fit.
        let d = run(decide_fixed, 3, S, &mut st, 101 * S, 4);
        assert_eq!((d.allowed, d.retry_after_ns), (false, None));
    }

    #[test]
    fn sliding_weighs_the_previous_window() {
        let mut st = None;
        // 10 used at the end of window 0.
        let d = run(decide_sliding, 10, S, &mut st, S - 1, 10);
        assert!(d.allowed && d.remaining == 0);
        // A quarter into window 1 the previous window weighs 3/4: 7.5 used, 2 admissible.
        let t = S + S / 4;
        let d = run(decide_sliding, 10, S, &mut st, t, 0);
        assert_eq!(d.remaining, 2);
        assert!(run(decide_sliding, 10, S, &mut st, t, 2).allowed);
        let d = run(decide_sliding, 10, S, &mut st, t, 1);
        assert!(!d.allowed);
        // Honest retry: at t + retry the same request fits.
        let wait = d.retry_after_ns.expect("fits later") as u64;
        assert!(run(decide_sliding, 10, S, &mut st, t + wait, 1).allowed);
    }

    #[test]
    fn sliding_retry_can_point_to_the_next_windows() {
        let mut st = None;
        assert!(run(decide_sliding, 4, S, &mut st, 5 * S, 4).allowed);
        let d = run(decide_sliding, 4, S, &mut st, 5 * S, 4);
        // Needs the whole capacity: only when window 5's count no longer weighs at all.
        assert_eq!(d.retry_after_ns, Some(2 * S as u128));
        assert_eq!(d.reset_uncharged_ns, 2 * S as u128);
        assert!(run(decide_sliding, 4, S, &mut st, 7 * S, 4).allowed);
    }

    #[test]
    fn a_reading_older_than_the_state_never_erases_it() {
        // Window 101 is full; a check whose clock reading is still in window 100 (read before
        // another thread's check took the lock) must not reset window 101's count.
        for f in [decide_fixed as Decide, decide_sliding] {
            let mut st = None;
            assert!(run(f, 2, S, &mut st, 101 * S + 10, 2).allowed);
            let d = run(f, 2, S, &mut st, 101 * S - 5, 1);
            assert!(
                !d.allowed,
                "the older reading was judged in the stored window"
            );
            assert_eq!(st.map(|c| (c.idx, c.cur)), Some((101, 2)));
        }
    }

    #[test]
    fn usage_for_rescaling() {
        let st = Counts {
            idx: 9,
            cur: 4,
            prev: 0,
        };
        assert_eq!(usage_at(false, S, st, 9 * S + 5), 4);
        assert_eq!(usage_at(false, S, st, 10 * S), 0);
        assert_eq!(usage_at(true, S, st, 10 * S + S / 2), 2);
    }
}
