//! The pure GCRA (generic cell rate algorithm) decision for one window of RL.CHECK.
//!
//! GCRA keeps a single number per key — the theoretical arrival time (TAT) — instead of a
//! counter and a timestamp, which is what lets a tracked key cost one 16-byte map entry.
//! Everything here is a pure function of (window, stored TAT, now, cost) so it can be tested
//! exhaustively without a store, and all arithmetic is done in u128 so that no cost (up to
//! `u64::MAX`) and no window (up to 2^32-1 per 30 days with 2^32-1 burst) can overflow.

use crate::limit::Window;
use crate::Nanos;

const NANOS_PER_MS: u128 = 1_000_000;

/// The GCRA constants of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Emission interval T: the time one unit of cost takes to drip back, in ns.
    pub t: u128,
    /// Delay variation tolerance tau = T * capacity: how far the TAT may run ahead of now.
    pub tau: u128,
    /// count + burst, the reply's `limit`.
    pub capacity: u64,
    /// [`reciprocal`] of `t` (`t` fits u64: it comes from [`Window::interval_ns`]).
    pub t_recip: u64,
}

impl Params {
    /// T = period_ns / count, truncated. Truncation errs on the permissive side by less than
    /// 1 ns per unit. When period_ns < count (e.g. 4e9 per millisecond) the exact T would be
    /// 0, which would make every cost free; T is then clamped to 1 ns, i.e. the rate is capped
    /// at one unit per nanosecond — far above anything a daemon can serve.
    pub fn of(w: &Window) -> Params {
        let t = u128::from(w.interval_ns());
        let capacity = w.capacity();
        Params {
            t,
            tau: t * u128::from(capacity),
            capacity,
            t_recip: w.interval_recip(),
        }
    }
}

/// floor(2^64 / t), the multiplier [`div_by`] divides by `t` with; 0 stands for `t` <= 1
/// (2^64 does not fit, and dividing by 1 needs no multiplier).
///
/// Why: every check divides by its window's interval (the `remaining` of the reply), the
/// interval is fixed when the limit is set, and a 64-bit `div` was the slowest instruction
/// of a check: ~15 % of the decision's samples in `perf annotate` of `benches/engine.rs` at
/// 1k keys. [`Window`] computes this once, when the limit is validated.
pub(crate) fn reciprocal(t: u64) -> u64 {
    if t <= 1 {
        0
    } else {
        // t >= 2, so the quotient is at most 2^63.
        ((1u128 << 64) / u128::from(t)) as u64
    }
}

/// `x / t`, exactly, given `m = reciprocal(t)`.
///
/// With m = floor(2^64 / t): x/t - 1 < x*m / 2^64 <= x/t for every x < 2^64, so the high half
/// of x*m is floor(x/t) or one less, and one compare-and-add settles which.
#[inline]
pub(crate) fn div_by(x: u64, t: u64, m: u64) -> u64 {
    if m == 0 {
        // t is 1 (Window keeps it at least 1; 0 would be a bug, and gets x too).
        return x;
    }
    let q = ((u128::from(x) * u128::from(m)) >> 64) as u64;
    // q <= floor(x/t), so q * t <= x: no overflow, no underflow.
    if x - q * t >= t {
        q + 1
    } else {
        q
    }
}

/// The outcome of one window for one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    /// The TAT to store if the whole check is allowed (all windows agree).
    pub new_tat: u128,
    /// Units of cost 1 still admissible: after charging when allowed, as things stand when
    /// denied.
    pub remaining: u64,
    /// Denied only: ns after which the same check fits this window; `None` when it never can
    /// (cost * T > tau). Always `None` when allowed.
    pub retry_after_ns: Option<u128>,
    /// ns until the window is back to full if this check is charged (allowed case).
    pub reset_if_charged_ns: u128,
    /// ns until the window is back to full with nothing charged.
    pub reset_uncharged_ns: u128,
}

/// Decide one window. `tat` is the stored TAT, or `None` for a fresh (or decayed) key.
///
/// Computed in u64 whenever nothing overflows it — every real window and cost — and in u128
/// otherwise; both give the same answer (a test compares them). 128-bit arithmetic was ~9 %
/// of a check.
#[inline]
pub(crate) fn decide(p: &Params, tat: Option<Nanos>, now: Nanos, cost: u64) -> Decision {
    decide_u64(p, tat, now, cost).unwrap_or_else(|| decide_wide(p, tat, now, cost))
}

/// [`decide`] in u64 arithmetic; `None` if any step would overflow it.
#[inline]
fn decide_u64(p: &Params, tat: Option<Nanos>, now: Nanos, cost: u64) -> Option<Decision> {
    let t = u64::try_from(p.t).ok()?;
    let tau = u64::try_from(p.tau).ok()?;
    let m = p.t_recip;
    let base = tat.map_or(now, |x| x.max(now));
    let increment = cost.checked_mul(t)?;
    let new_tat = base.checked_add(increment)?;
    let ahead = new_tat - now;
    let ahead_uncharged = base - now;
    Some(if ahead <= tau {
        Decision {
            allowed: true,
            new_tat: u128::from(new_tat),
            remaining: div_by(tau - ahead, t, m),
            retry_after_ns: None,
            reset_if_charged_ns: u128::from(ahead),
            reset_uncharged_ns: u128::from(ahead_uncharged),
        }
    } else {
        Decision {
            allowed: false,
            new_tat: u128::from(new_tat),
            remaining: div_by(tau.saturating_sub(ahead_uncharged), t, m),
            retry_after_ns: (increment <= tau).then(|| u128::from(ahead - tau)),
            reset_if_charged_ns: u128::from(ahead_uncharged),
            reset_uncharged_ns: u128::from(ahead_uncharged),
        }
    })
}

/// [`decide`] in u128 arithmetic, for windows and costs whose products overflow u64.
fn decide_wide(p: &Params, tat: Option<Nanos>, now: Nanos, cost: u64) -> Decision {
    let now = u128::from(now);
    // A TAT in the past means the bucket is full: GCRA treats it exactly as a fresh key.
    let base = tat.map_or(now, |t| u128::from(t).max(now));
    let increment = u128::from(cost) * p.t;
    let new_tat = base + increment;
    let ahead = new_tat - now;
    let ahead_uncharged = base - now;
    if ahead <= p.tau {
        Decision {
            allowed: true,
            new_tat,
            remaining: div(p.tau - ahead, p.t),
            retry_after_ns: None,
            reset_if_charged_ns: ahead,
            reset_uncharged_ns: ahead_uncharged,
        }
    } else {
        // `tau.saturating_sub` only matters for state written under a stricter old limit
        // whose TAT now runs further ahead than this window's tau.
        let remaining = div(p.tau.saturating_sub(ahead_uncharged), p.t);
        let retry_after_ns = (increment <= p.tau).then(|| ahead - p.tau);
        Decision {
            allowed: false,
            new_tat,
            remaining,
            retry_after_ns,
            reset_if_charged_ns: ahead_uncharged,
            reset_uncharged_ns: ahead_uncharged,
        }
    }
}

/// Nanoseconds to whole milliseconds, rounded up (a client told "retry after 200 ms" must not
/// be early), clamped to i64 for the reply.
#[inline]
pub(crate) fn ceil_ms(ns: u128) -> i64 {
    // The u64 path is the common one; a u128 division is a slow library call, kept out of
    // line so that this inlines into every check's reply.
    match u64::try_from(ns) {
        Ok(ns) => (ns.div_ceil(1_000_000) as i64).max(0),
        Err(_) => ceil_ms_wide(ns),
    }
}

#[cold]
fn ceil_ms_wide(ns: u128) -> i64 {
    i64::try_from(ns.div_ceil(NANOS_PER_MS)).unwrap_or(i64::MAX)
}

/// `a / b` as u64 (saturating), dividing in u64 when both fit: the hot path of every check.
#[inline]
fn div(a: u128, b: u128) -> u64 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) if b > 0 => a / b,
        _ => to_u64(a / b.max(1)),
    }
}

fn to_u64(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// A TAT as a u64 (tests store TATs this way). A TAT beyond u64 nanoseconds (year 2554) can only come from
/// a degenerate window whose tau exceeds centuries; clamping it errs on the permissive side.
#[cfg(test)]
pub(crate) fn store_tat(t: u128) -> Nanos {
    to_u64(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(count: u64, period_ms: u64, burst: u64) -> Params {
        Params::of(&Window::new(count, period_ms, burst).expect("valid window"))
    }

    #[test]
    fn emission_interval_and_tau() {
        let p = params(5, 1000, 2);
        assert_eq!((p.t, p.tau, p.capacity), (200_000_000, 1_400_000_000, 7));
        // period_ns < count: T clamps to 1 ns.
        let p = params(u64::from(u32::MAX), 1, 0);
        assert_eq!(p.t, 1);
        // The largest window cannot overflow.
        let max = u64::from(u32::MAX);
        let p = params(max, 30 * 24 * 3600 * 1000, max);
        assert_eq!(p.tau, p.t * 2 * u128::from(max));
        // A window whose emptied allowance would take over 30 years to refill is refused
        // (its TAT would not fit the stored word): 1/30d with a burst of 365 takes 30.1 years.
        let month = 30 * 24 * 3600 * 1000;
        assert_eq!(
            Window::new(1, month, 365),
            Err(crate::limit::LimitError::RefillTooLong)
        );
        assert!(Window::new(1, month, 363).is_ok());
        assert_eq!(
            Window::new(1, month, max),
            Err(crate::limit::LimitError::RefillTooLong)
        );
    }

    #[test]
    fn five_per_second_at_one_instant() {
        let p = params(5, 1000, 0);
        let now = 1_000_000_000_000;
        let mut tat = None;
        for want_remaining in [4, 3, 2, 1, 0] {
            let d = decide(&p, tat, now, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, want_remaining);
            tat = Some(store_tat(d.new_tat));
        }
        let d = decide(&p, tat, now, 1);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_ns.map(ceil_ms), Some(200));
        assert_eq!(ceil_ms(d.reset_uncharged_ns), 1000);
    }

    #[test]
    fn huge_cost_never_fits_and_does_not_overflow() {
        let p = params(
            u64::from(u32::MAX),
            30 * 24 * 3600 * 1000,
            u64::from(u32::MAX),
        );
        let d = decide(&p, Some(u64::MAX), u64::MAX, u64::MAX);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ns, None);
    }

    #[test]
    fn division_by_reciprocal_at_the_edges() {
        let ts = [
            1,
            2,
            3,
            7,
            1000,
            3_600_000,
            u64::from(u32::MAX),
            1 << 33,
            u64::MAX / 3,
        ];
        let ts = ts.into_iter().chain([u64::MAX - 1, u64::MAX]);
        for t in ts {
            let m = reciprocal(t);
            for x in [0, 1, t - 1, t, t.saturating_add(1), u64::MAX - 1, u64::MAX] {
                assert_eq!(div_by(x, t, m), x / t, "{x} / {t}");
            }
            // Exact multiples and the numbers just below them, across the whole range.
            for q in [1, 2, 1000, u64::MAX / t] {
                let x = q.saturating_mul(t);
                assert_eq!(div_by(x, t, m), x / t, "{x} / {t}");
                assert_eq!(div_by(x - 1, t, m), (x - 1) / t, "{} / {t}", x - 1);
            }
        }
    }

    proptest::proptest! {
        /// Division by a window's reciprocal is exact for every dividend and interval.
        #[test]
        fn division_by_reciprocal_is_exact(
            x in proptest::prop_oneof![0u64..=u64::MAX, 0u64..=1_000_000],
            t in proptest::prop_oneof![1u64..=u64::MAX, 1u64..=10_000_000_000],
        ) {
            proptest::prop_assert_eq!(div_by(x, t, reciprocal(t)), x / t);
        }

        /// The u64 path, when it applies, decides exactly as the u128 one.
        #[test]
        fn u64_and_u128_paths_agree(
            count in 1u64..=u64::from(u32::MAX),
            period_ms in 1u64..=30 * 24 * 3600 * 1000,
            burst in 0u64..=u64::from(u32::MAX),
            now in 0u64..=u64::MAX / 2,
            ahead in proptest::option::of(0u64..=u64::MAX / 4),
            cost in proptest::prop_oneof![0u64..=100, 0u64..=u64::MAX],
        ) {
            // A window refilling over 30 years is refused when the limit is set
            // (`LimitError::RefillTooLong`), so no check ever decides under one: e.g. 1/300ms
            // BURST 3153600000, the case proptest found (proptest-regressions/gcra.txt).
            proptest::prop_assume!(Window::new(count, period_ms, burst).is_ok());
            let p = params(count, period_ms, burst);
            let tat = ahead.map(|a| now.saturating_add(a).saturating_sub(a / 3));
            if let Some(fast) = decide_u64(&p, tat, now, cost) {
                proptest::prop_assert_eq!(fast, decide_wide(&p, tat, now, cost));
            }
        }
    }

    #[test]
    fn the_u64_path_serves_ordinary_windows() {
        let p = params(1000, 3_600_000, 50);
        assert!(decide_u64(
            &p,
            Some(2_000_000_000_000_000_000),
            1_900_000_000_000_000_000,
            3
        )
        .is_some());
    }

    #[test]
    fn ceil_ms_rounds_up() {
        assert_eq!(ceil_ms(0), 0);
        assert_eq!(ceil_ms(1), 1);
        assert_eq!(ceil_ms(1_000_000), 1);
        assert_eq!(ceil_ms(1_000_001), 2);
        assert_eq!(ceil_ms(u128::MAX), i64::MAX);
    }
}
