//! Numbers as memcached reads them. memcached's `safe_strto*` functions wrap C's `strtoull`
//! and `strtol`; the digits are read here by the crate's one
//! [`parse_u64`](crate::parse::parse_u64), and each function adds what its kind of field
//! allows: the blanks and `+` that `incr`/`decr` skip ([`parse_number`]), the 32-bit range of
//! client flags, the sign and 32-bit range of times and lengths.

use super::parse_u64;

/// A number as memcached's `incr`/`decr` read it (its `safe_strtoull`, i.e. C's `strtoull`):
/// leading whitespace and a `+` are skipped, then decimal digits (leading zeros allowed) that
/// fit 64 bits, then the end or whitespace (whatever follows it is ignored). Clients and
/// memcached itself store numbers such as `"  10"` or `"5\t"` that a plain digit parse refuses.
pub fn parse_number(b: &[u8]) -> Option<u64> {
    let start = b.iter().position(|c| !c.is_ascii_whitespace())?;
    let b = &b[start..];
    let b = b.strip_prefix(b"+").unwrap_or(b);
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || b.get(digits).is_some_and(|c| !c.is_ascii_whitespace()) {
        return None;
    }
    parse_u64(&b[..digits])
}

pub(super) fn parse_u32(b: &[u8]) -> Option<u32> {
    parse_u64(b).and_then(|n| u32::try_from(n).ok())
}

/// Signed decimal within i32 (memcached's safe_strtol), widened to i64 for arithmetic.
pub(super) fn parse_i32(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let n = parse_u64(digits)? as i128;
    let n = if neg { -n } else { n };
    i32::try_from(n).ok().map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_strtoull_reads_them() {
        for (text, want) in [
            (&b"10"[..], Some(10)),
            (b"  10", Some(10)),
            (b"\t5", Some(5)),
            (b"5\t", Some(5)),
            (b"5 ", Some(5)),
            (b"5 abc", Some(5)),
            (b"+5", Some(5)),
            (b"000000000000000000001", Some(1)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"5x", None),
            (b"-5", None),
            (b"+", None),
            (b"", None),
            (b"   ", None),
            (b"+-5", None),
        ] {
            assert_eq!(
                parse_number(text),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
