//! `CL.THROTTLE`, reproducing redis-cell (github.com/brandur/redis-cell) bit for bit: argument
//! parsing and error texts, its f64 emission interval, its GCRA loop, its f64/microsecond
//! `remaining`, and its round-up-at-millisecond conversion to whole seconds.
//!
//! Why a separate implementation from RL.CHECK's GCRA: clients port from redis-cell and
//! compare replies number for number, quirks included (limit = max_burst + 1, remaining
//! computed in microseconds, retry_after -1 when a request can never fit). redis-cell does
//! its arithmetic in i64 nanoseconds (wrapping in a release build) and time in wide
//! `time::OffsetDateTime`s; here the i64 products wrap exactly as there and the time
//! arithmetic is done in i128, which is exact over the same range.
//!
//! Where redis-cell would crash — a non-UTF-8 argument makes its argument conversion
//! `unwrap()` panic inside Redis — this implementation instead accepts any bytes as the key
//! (the key is only hashed, so UTF-8 keys behave exactly as in redis-cell) and reports a
//! non-UTF-8 numeric argument as the same "Couldn't parse as integer" error a bad number gets.

use crate::Nanos;

/// The CL.THROTTLE reply: `[limited, limit, remaining, retry_after_s, reset_after_s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleResult {
    pub limited: bool,
    pub limit: i64,
    pub remaining: i64,
    pub retry_after_s: i64,
    pub reset_after_s: i64,
}

/// CL.THROTTLE arguments after redis-cell's own parsing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleArgs {
    pub max_burst: i64,
    pub count: i64,
    pub period_s: i64,
    pub quantity: i64,
}

/// A CL.THROTTLE error; Display is the complete error text redis-cell sends
/// (e.g. `Cell error: ...`), without the leading `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CellError(pub String);

impl CellError {
    /// redis-cell prefixes every command error with `Cell error: ` (its module harness does
    /// `format!("Cell error: {}", e.description())`, and `description()` is the bare message).
    fn new(message: impl std::fmt::Display) -> CellError {
        CellError(format!("Cell error: {message}"))
    }
}

/// redis-cell's usage text; `cl.throttle` is lowercase because it prints its registered name.
pub const THROTTLE_USAGE: &str =
    "Cell error: Usage: cl.throttle <key> <max_burst> <count per period> <period> [<quantity>]";

/// Parse CL.THROTTLE's arguments (everything after the command name: key, max_burst, count,
/// period, [quantity]) exactly as redis-cell does, with its error texts.
///
/// redis-cell registers the command without an arity, so Redis passes any argument count
/// through and the module itself answers a wrong count with its usage error (including for
/// zero arguments). Numbers are parsed with Rust's `i64::from_str`: an optional `+` or `-`,
/// digits only, no spaces; negative values are accepted (redis-cell has no range checks).
/// Arguments are checked left to right; the first bad one is reported.
pub fn parse_throttle_args<'a>(args: &[&'a [u8]]) -> Result<(&'a [u8], ThrottleArgs), CellError> {
    if args.len() != 4 && args.len() != 5 {
        return Err(CellError(THROTTLE_USAGE.to_string()));
    }
    let key = args[0];
    let max_burst = parse_i64(args[1])?;
    let count = parse_i64(args[2])?;
    let period_s = parse_i64(args[3])?;
    let quantity = match args.get(4) {
        Some(q) => parse_i64(q)?,
        None => 1,
    };
    Ok((
        key,
        ThrottleArgs {
            max_burst,
            count,
            period_s,
            quantity,
        },
    ))
}

fn parse_i64(arg: &[u8]) -> Result<i64, CellError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            CellError::new(format_args!(
                "Couldn't parse as integer: {}",
                String::from_utf8_lossy(arg)
            ))
        })
}

const NS_PER_S: i128 = 1_000_000_000;
const NS_PER_MS: i128 = 1_000_000;
const NS_PER_US: i128 = 1_000;

/// redis-cell's rate limiter constants for one set of arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CellParams {
    /// Emission interval T in ns (may be negative for negative count or period, as there).
    t: i64,
    /// Delay variation tolerance: T * (max_burst + 1), i64 wrapping as in a release build.
    tau: i64,
    /// max_burst + 1.
    limit: i64,
    /// T * quantity.
    increment: i64,
}

impl CellParams {
    /// `Rate::per_period(count, Duration::seconds(period))` then `RateLimiter::new`:
    /// T = trunc(period_ns as f64 / count as f64), with period_ns the period's whole
    /// nanoseconds as an i128 (`Rate::per_period`: a period beyond 292 years does not wrap).
    /// A zero T (count 0, period 0, or count > period_ns) is refused as redis-cell refuses
    /// it, before touching any state.
    pub fn new(a: &ThrottleArgs) -> Result<CellParams, CellError> {
        let period_ns = i128::from(a.period_s) * NS_PER_S;
        let t = if a.count == 0 || period_ns == 0 {
            0
        } else {
            ((period_ns as f64) / (a.count as f64)) as i64
        };
        if t == 0 {
            return Err(CellError::new("Zero rates are not supported"));
        }
        let limit = a.max_burst.wrapping_add(1);
        Ok(CellParams {
            t,
            tau: t.wrapping_mul(limit),
            limit,
            increment: t.wrapping_mul(a.quantity),
        })
    }
}

/// What the store should do with the key after a throttle decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Keep the state as it is (limited).
    None,
    /// Store this TAT (it is in the future).
    Store(Nanos),
    /// The new TAT is not in the future: the key expires at once, i.e. is absent.
    Remove,
}

/// One pass of redis-cell's `rate_limit` loop. `tat` is the stored TAT if the key is live.
/// (redis-cell's loop only retries on a lost compare-and-swap, which cannot happen under
/// the shard lock, so one pass is the whole algorithm.)
pub(crate) fn decide(p: &CellParams, tat: Option<Nanos>, now: Nanos) -> (ThrottleResult, Write) {
    let now = i128::from(now);
    let tat = tat.map_or(now, i128::from);
    let increment = i128::from(p.increment);
    let tau = i128::from(p.tau);
    let t = i128::from(p.t);

    let new_tat = if now > tat {
        now + increment
    } else {
        tat + increment
    };
    let allow_at = new_tat - tau;
    let diff = now - allow_at;

    let mut retry_after = -NS_PER_S; // Duration::seconds(-1)
    let (limited, ttl, write) = if diff < 0 {
        if increment <= tau {
            retry_after = -diff;
        }
        (true, tat - now, Write::None)
    } else {
        let write = if new_tat > now {
            Write::Store(u64::try_from(new_tat).unwrap_or(u64::MAX))
        } else {
            Write::Remove
        };
        (false, new_tat - now, write)
    };

    let next = tau - ttl;
    let remaining = if next > -t {
        // Duration::whole_microseconds truncates toward zero; the division is in f64 and the
        // cast saturates (x/0.0 for T < 1µs gives ±inf -> i64::MAX/MIN, or NaN -> 0).
        ((next / NS_PER_US) as f64 / (t / NS_PER_US) as f64) as i64
    } else {
        0
    };

    (
        ThrottleResult {
            limited,
            limit: p.limit,
            remaining,
            retry_after_s: whole_seconds_rounded_up(retry_after),
            reset_after_s: whole_seconds_rounded_up(ttl),
        },
        write,
    )
}

/// redis-cell's reply conversion: `whole_seconds()`, plus one if `subsec_milliseconds() > 0`.
/// So it rounds up at millisecond precision: 1.0009 s -> 1, 1.001 s -> 2, -1 s stays -1.
fn whole_seconds_rounded_up(ns: i128) -> i64 {
    let whole = ns / NS_PER_S;
    let sub_ms = (ns % NS_PER_S) / NS_PER_MS;
    let secs = if sub_ms > 0 { whole + 1 } else { whole };
    i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Result<(Vec<u8>, ThrottleArgs), CellError>;

    fn args(parts: &[&str]) -> Parsed {
        let bytes: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
        parse_throttle_args(&bytes).map(|(k, a)| (k.to_vec(), a))
    }

    fn err(s: &str) -> Parsed {
        Err(CellError(s.to_string()))
    }

    #[test]
    fn parsing_table() {
        let ok = |b, c, p, q| {
            Ok((
                b"k".to_vec(),
                ThrottleArgs {
                    max_burst: b,
                    count: c,
                    period_s: p,
                    quantity: q,
                },
            ))
        };
        let cases: Vec<(Vec<&str>, Parsed)> = vec![
            (vec!["k", "4", "1", "1"], ok(4, 1, 1, 1)),
            (vec!["k", "4", "1", "1", "3"], ok(4, 1, 1, 3)),
            (vec!["k", "+4", "-1", "-2", "-3"], ok(4, -1, -2, -3)),
            (vec!["k", "4", "0", "0", "0"], ok(4, 0, 0, 0)),
            (vec![], err(THROTTLE_USAGE)),
            (vec!["k"], err(THROTTLE_USAGE)),
            (vec!["k", "4", "1"], err(THROTTLE_USAGE)),
            (vec!["k", "4", "1", "1", "1", "1"], err(THROTTLE_USAGE)),
            // Arity is checked before any number.
            (vec!["k", "x", "1"], err(THROTTLE_USAGE)),
            (
                vec!["k", "x", "1", "1"],
                err("Cell error: Couldn't parse as integer: x"),
            ),
            (
                vec!["k", "4", "1.5", "1"],
                err("Cell error: Couldn't parse as integer: 1.5"),
            ),
            (
                vec!["k", "4", "1", " 1"],
                err("Cell error: Couldn't parse as integer:  1"),
            ),
            (
                vec!["k", "4", "1", "1", ""],
                err("Cell error: Couldn't parse as integer: "),
            ),
            (
                vec!["k", "4", "1", "1", "9223372036854775808"],
                err("Cell error: Couldn't parse as integer: 9223372036854775808"),
            ),
            // Left to right: the first bad argument is reported.
            (
                vec!["k", "a", "b", "c"],
                err("Cell error: Couldn't parse as integer: a"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(args(&input), want, "{input:?}");
        }
        assert_eq!(
            THROTTLE_USAGE,
            "Cell error: Usage: cl.throttle <key> <max_burst> <count per period> <period> \
             [<quantity>]"
        );
    }

    #[test]
    fn binary_key_accepted_binary_number_refused() {
        let got = parse_throttle_args(&[&[0xff, 0x00], b"1", b"1", b"1"]);
        assert_eq!(got.map(|(k, _)| k.to_vec()), Ok(vec![0xff, 0x00]));
        let got = parse_throttle_args(&[b"k", &[0xff], b"1", b"1"]);
        assert_eq!(
            got,
            Err(CellError(
                "Cell error: Couldn't parse as integer: \u{fffd}".to_string()
            ))
        );
    }

    #[test]
    fn zero_rates_refused() {
        let zero = Err(CellError(
            "Cell error: Zero rates are not supported".to_string(),
        ));
        for (count, period_s) in [(0, 1), (1, 0), (0, 0), (2_000_000_000, 1)] {
            let a = ThrottleArgs {
                max_burst: 1,
                count,
                period_s,
                quantity: 1,
            };
            assert_eq!(CellParams::new(&a), zero, "count {count} period {period_s}");
        }
    }

    #[test]
    fn emission_interval_is_f64_truncated() {
        let a = ThrottleArgs {
            max_burst: 4,
            count: 3,
            period_s: 1,
            quantity: 2,
        };
        let p = CellParams::new(&a).expect("valid");
        assert_eq!(p.t, 333_333_333);
        assert_eq!(p.tau, 333_333_333 * 5);
        assert_eq!(p.limit, 5);
        assert_eq!(p.increment, 666_666_666);
    }

    #[test]
    fn a_period_beyond_292_years_does_not_wrap() {
        // Its nanoseconds pass i64; redis-cell divides the i128 nanoseconds, so 1e10 s per
        // 1e9 is an interval of 10 s, and 2^55 s (which an i64 cast wraps to 0) is no zero
        // rate.
        let a = ThrottleArgs {
            max_burst: 5,
            count: 1_000_000_000,
            period_s: 10_000_000_000,
            quantity: 1,
        };
        let p = CellParams::new(&a).expect("valid");
        assert_eq!((p.t, p.limit), (10 * NS_PER_S as i64, 6));
        let a = ThrottleArgs {
            count: 1 << 40,
            period_s: 1 << 55,
            ..a
        };
        let p = CellParams::new(&a).expect("not a zero rate");
        assert_eq!(p.t, (1 << 15) * NS_PER_S as i64);
    }

    #[test]
    fn seconds_conversion() {
        let cases = [
            (0, 0),
            (-NS_PER_S, -1),
            (NS_PER_S, 1),
            (NS_PER_S + 999_999, 1),
            (NS_PER_S + 1_000_000, 2),
            (3_900_000_000, 4),
            (500_000, 0),
        ];
        for (ns, want) in cases {
            assert_eq!(whole_seconds_rounded_up(ns), want, "{ns}");
        }
    }
}
