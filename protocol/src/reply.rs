//! Replies: the value a command produces, and its encoding as RESP2 or RESP3.
//!
//! Commands build a [`Reply`] without knowing which protocol version the connection speaks;
//! [`compose`] writes RESP3 types as their RESP2 equivalents where needed (a map becomes a flat
//! array of key, value, ...; a boolean an integer 0/1; a double a bulk string; null `$-1`).

use bytes::{Bytes, BytesMut};

/// Protocol version negotiated by `HELLO` (RESP2 until a client asks for 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtoVersion {
    #[default]
    Resp2,
    Resp3,
}

/// A reply to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`-style status line. Must not contain CR or LF.
    Simple(Bytes),
    /// An error line; the text starts with its code (`ERR ...`, `WRONGTYPE ...`, `NOAUTH ...`).
    /// Must not contain CR or LF (compose replaces them with spaces).
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// The null reply (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// The null array (`*-1` in RESP2, `_` in RESP3).
    NullArray,
    Array(Vec<Reply>),
    /// RESP3 map; RESP2 gets a flat array `k1 v1 k2 v2 ...`.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 set; RESP2 gets an array.
    Set(Vec<Reply>),
    /// RESP3 double; RESP2 gets a bulk string.
    Double(f64),
    /// RESP3 boolean; RESP2 gets integer 1 or 0.
    Boolean(bool),
    /// RESP3 verbatim string with its three-letter format (`txt`); RESP2 gets a bulk string.
    Verbatim(&'static str, Bytes),
    /// An array of integers, the same bytes as `Array` of `Integer`s, without a heap
    /// allocation: RL.CHECK and CL.THROTTLE answer every check with one.
    IntArray(IntArray),
}

/// Up to [`IntArray::MAX`] integers held inline (see [`Reply::IntArray`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntArray {
    len: u8,
    items: [i64; IntArray::MAX],
}

impl IntArray {
    pub const MAX: usize = 8;

    /// `None` if there are more than [`IntArray::MAX`] items (use `Reply::Array` then).
    pub fn new(items: &[i64]) -> Option<IntArray> {
        let len = u8::try_from(items.len())
            .ok()
            .filter(|&n| usize::from(n) <= Self::MAX)?;
        let mut out = IntArray {
            len,
            items: [0; Self::MAX],
        };
        out.items[..items.len()].copy_from_slice(items);
        Some(out)
    }

    pub fn as_slice(&self) -> &[i64] {
        &self.items[..usize::from(self.len)]
    }
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Bytes::from_static(b"OK"))
    }

    /// A simple status string from a static text.
    pub fn simple(s: &'static str) -> Reply {
        Reply::Simple(Bytes::from_static(s.as_bytes()))
    }

    /// An error reply; `msg` must start with the error code, e.g. `"ERR unknown command"`.
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply::Error(Bytes::from(msg.into()))
    }

    /// A bulk string.
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// An array of integers; inline (no allocation) for up to [`IntArray::MAX`] of them.
    pub fn ints(items: &[i64]) -> Reply {
        IntArray::new(items)
            .map(Reply::IntArray)
            .unwrap_or_else(|| Reply::Array(items.iter().map(|&n| Reply::Integer(n)).collect()))
    }
}

/// Append `reply`, encoded for `version`, to `out`.
///
/// The bytes are written directly rather than through `redis-protocol`'s encoders: that would
/// mean building a second frame tree (an allocation per element) for every reply, and its
/// number formatting is not Redis's for doubles. The output is byte-for-byte what Redis sends.
pub fn compose(reply: &Reply, version: ProtoVersion, out: &mut BytesMut) {
    let resp3 = version == ProtoVersion::Resp3;
    match reply {
        Reply::Simple(text) => line(out, b'+', text),
        Reply::Error(text) if text.is_empty() => line(out, b'-', b"ERR"),
        Reply::Error(text) => line(out, b'-', text),
        Reply::Integer(n) => header(out, b':', *n),
        Reply::Bulk(data) => bulk(out, b'$', data),
        Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::Null => out.extend_from_slice(b"$-1\r\n"),
        Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
        Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(items) => aggregate(out, b'*', items, version),
        Reply::IntArray(ints) => {
            // Encoded whole on the stack and appended once: one small copy per header would
            // cost ~3 % of a worker answering pipelined checks.
            let mut buf = [0u8; HEADER_MAX * (IntArray::MAX + 1)];
            let mut end = encode_header(&mut buf, 0, b'*', len_i64(ints.as_slice().len()));
            for &n in ints.as_slice() {
                end = encode_header(&mut buf, end, b':', n);
            }
            out.extend_from_slice(&buf[..end]);
        }
        Reply::Set(items) => aggregate(out, if resp3 { b'~' } else { b'*' }, items, version),
        Reply::Map(pairs) => {
            if resp3 {
                header(out, b'%', len_i64(pairs.len()));
            } else {
                header(out, b'*', len_i64(pairs.len()).saturating_mul(2));
            }
            for (key, value) in pairs {
                compose(key, version, out);
                compose(value, version, out);
            }
        }
        Reply::Double(d) => {
            let text = format_double(*d);
            if resp3 {
                line(out, b',', text.as_bytes());
            } else {
                bulk(out, b'$', text.as_bytes());
            }
        }
        Reply::Boolean(b) if resp3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Reply::Boolean(b) => header(out, b':', i64::from(*b)),
        Reply::Verbatim(format, data) if resp3 => {
            // Redis always sends a three-letter format; pad or cut anything else so the
            // `=<len>\r\nfmt:` framing stays valid.
            let mut fmt = [b' '; 3];
            for (dst, src) in fmt.iter_mut().zip(format.bytes()) {
                *dst = src;
            }
            header(out, b'=', len_i64(data.len()).saturating_add(4));
            out.extend_from_slice(&fmt);
            out.extend_from_slice(b":");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Verbatim(_, data) => bulk(out, b'$', data),
    }
}

/// Encode `reply` into a new buffer (convenience for tests and one-off replies).
pub fn to_bytes(reply: &Reply, version: ProtoVersion) -> BytesMut {
    let mut out = BytesMut::new();
    compose(reply, version, &mut out);
    out
}

/// Lengths always fit i64 in practice; saturate rather than wrap if one ever did not.
fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `<kind><n>\r\n`, shared by integers and every length header.
fn header(out: &mut BytesMut, kind: u8, n: i64) {
    let mut buf = [0u8; HEADER_MAX];
    let end = encode_header(&mut buf, 0, kind, n);
    out.extend_from_slice(&buf[..end]);
}

/// Longest `<kind><n>\r\n`: kind, sign, 19 digits, CRLF.
const HEADER_MAX: usize = 23;

/// Write `<kind><n>\r\n` into `dst` at `at` (which has [`HEADER_MAX`] bytes of room) and
/// return where it ends. Digits are written by hand: every reply has at least one header (a
/// check's reply has six), and `core::fmt` would cost about 4 % of a busy worker.
fn encode_header(dst: &mut [u8], mut at: usize, kind: u8, n: i64) -> usize {
    dst[at] = kind;
    at += 1;
    if n < 0 {
        dst[at] = b'-';
        at += 1;
    }
    let v = n.unsigned_abs();
    let mut digits = 1;
    let mut rest = v / 10;
    while rest != 0 {
        digits += 1;
        rest /= 10;
    }
    let mut rest = v;
    for d in dst[at..at + digits].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    at += digits;
    dst[at] = b'\r';
    dst[at + 1] = b'\n';
    at + 2
}

/// A one-line reply (`+`, `-`, `,`).
fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.extend_from_slice(&[kind]);
    extend_one_line(out, text);
    out.extend_from_slice(b"\r\n");
}

/// Append `text` with CR and LF replaced by spaces, as Redis does for error messages: either
/// would end the line early and desynchronise the client. Shared by RESP's one-line replies and
/// memcached's error lines.
pub(crate) fn extend_one_line(out: &mut BytesMut, text: &[u8]) {
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// A length-prefixed string (`$`).
fn bulk(out: &mut BytesMut, kind: u8, data: &[u8]) {
    header(out, kind, len_i64(data.len()));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// An array-like aggregate (`*`, `~`): length header, then each element in turn.
fn aggregate(out: &mut BytesMut, kind: u8, items: &[Reply], version: ProtoVersion) {
    header(out, kind, len_i64(items.len()));
    for item in items {
        compose(item, version, out);
    }
}

/// Format a double exactly as Redis's `d2string` does (used for both the RESP3 `,` reply and the
/// RESP2 bulk string): `nan`, `inf`, `-inf`, `0`/`-0`; integral values within ±2^62 as plain
/// integers; anything else as the shortest round-trip digits laid out by `fpconv_dtoa`
/// (plain decimal for moderate exponents, `1.5e+20`-style otherwise).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "nan".to_string();
    }
    if d.is_infinite() {
        return if d < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Redis's double2ll fast path: integral values within ±LLONG_MAX/2 print as integers.
    const HALF: f64 = (i64::MAX / 2) as f64;
    if (-HALF..=HALF).contains(&d) && d.fract() == 0.0 {
        return (d as i64).to_string();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip ("d.ddde[-]x"); re-lay them out
    // the way fpconv's emit_digits does. K is the exponent of the last digit.
    let sci = format!("{:e}", d.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        // Cannot happen for a finite non-zero value; never panic on it either.
        return d.to_string();
    }
    let exp10: i32 = exp.parse().unwrap_or(0);
    let ndigits = digits.len() as i32;
    let k = exp10 - (ndigits - 1);
    let abs_exp = exp10.abs();
    let mut s = String::with_capacity(32);
    if d < 0.0 {
        s.push('-');
    }
    if k >= 0 && abs_exp < ndigits + 7 {
        s.push_str(&digits);
        s.push_str(&"0".repeat(k as usize));
    } else if k < 0 && (k > -7 || abs_exp < 4) {
        let offset = ndigits + k;
        if offset <= 0 {
            s.push_str("0.");
            s.push_str(&"0".repeat((-offset) as usize));
            s.push_str(&digits);
        } else {
            let (int_part, frac_part) = digits.split_at(offset as usize);
            s.push_str(int_part);
            s.push('.');
            s.push_str(frac_part);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if exp10 < 0 { '-' } else { '+' });
        s.push_str(&abs_exp.to_string());
    }
    s
}
