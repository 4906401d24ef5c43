//! Request framing: turning the connection's read buffer into whole requests.
//!
//! Two steps, as in mini-redis: [`Decoder::decode`] first scans the headers in the buffer to learn
//! whether a whole frame is there and whether every declared size is within [`Limits`]; only a
//! complete, acceptable frame is then cut into its arguments. Nothing is allocated for a half
//! frame.
//!
//! The scan already finds where every argument starts and ends, so the frame is copied once into
//! an [`Args`] buffer the decoder reuses, with those positions (why a copy and not reference-
//! counted slices of the read buffer: see protocol/src/args.rs). No second parse follows: handing
//! the checked frame to `redis-protocol` would cost 220 ns per RL.CHECK request, more than the
//! engine's check itself (`cargo bench --bench protocol`). `redis-protocol` is the oracle of a
//! differential test instead (`tests/oracle.rs`), which asserts that both agree.
//!
//! An oversized bulk string or array is not fatal: the decoder answers
//! [`Request::Rejected`] at once (so the error reply keeps its place in a pipeline), then
//! silently discards the rest of that request's bytes as they arrive, and the connection carries
//! on. Bytes that are not RESP at all (a bad length, a missing CRLF) are a [`FrameError`]: the
//! stream cannot be resynchronised, so the server replies `-ERR Protocol error: ...` and closes,
//! as Redis does.

use bytes::{Buf, BytesMut};

use crate::args::Args;
use crate::parse::parse_i64;

/// Input size limits, checked before anything is buffered or allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk string, in bytes (default 512 KiB).
    pub max_bulk_len: usize,
    /// Largest accepted number of arguments in one request (default 65536).
    pub max_array_len: usize,
    /// Longest accepted inline command line, in bytes (default 64 KiB, Redis's figure).
    pub max_inline_len: usize,
    /// Largest accepted request in total (sum of its bulk strings; default 16 MiB), so that many
    /// maximal arguments cannot add up to an unbounded buffer.
    pub max_request_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024,
            max_array_len: 64 * 1024,
            max_inline_len: 64 * 1024,
            max_request_len: 16 * 1024 * 1024,
        }
    }
}

/// One decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A command and its arguments (`args.get(0)` is the command name; never empty).
    Command(Args),
    /// A request refused for its size; reply with this error and carry on. The decoder discards
    /// the rest of the request's bytes on later calls.
    Rejected(RejectReason),
}

/// Why a request was refused without closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// A bulk string declared longer than [`Limits::max_bulk_len`] (declared length, limit).
    #[error("ERR Protocol error: bulk string length {0} exceeds the limit of {1} bytes")]
    BulkTooLong(u64, usize),
    /// An array declared with more than [`Limits::max_array_len`] elements (count, limit).
    #[error("ERR Protocol error: array of {0} elements exceeds the limit of {1}")]
    ArrayTooLong(u64, usize),
    /// Bulk strings adding up to more than [`Limits::max_request_len`] (the limit).
    #[error("ERR Protocol error: request of more than {0} bytes")]
    RequestTooLong(usize),
    /// An inline line longer than [`Limits::max_inline_len`]; the rest of the line up to its
    /// `\n` is discarded.
    #[error("ERR Protocol error: too big inline request")]
    InlineTooLong,
    /// An inline line whose quotes do not close (or a closing quote followed by a non-blank).
    /// The line is complete, so the stream stays in sync and the connection can carry on.
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// Bytes that are not a RESP request. The stream cannot be resynchronised: reply
/// `-{self}` and close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The `*<count>` header is not a number Redis's `string2ll` accepts, or is below -1.
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// The `$<len>` header is not a valid number, or is negative (`$-1` is not allowed in a
    /// request).
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An array element that is not a bulk string; carries the type byte found instead.
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// An array of more than [`UNAUTHENTICATED_ARRAY_LEN`] elements from a connection that
    /// has not signed in yet (Redis's text): before AUTH nobody needs more.
    #[error("ERR Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    /// A bulk string longer than [`UNAUTHENTICATED_BULK_LEN`] from a connection that has not
    /// signed in yet (Redis's text).
    #[error("ERR Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
    /// Anything else (e.g. bulk data not followed by CRLF).
    #[error("ERR Protocol error: {0}")]
    Other(String),
}

/// Most arguments a request may have before its connection signs in (Redis's figure): AUTH
/// and HELLO need no more, and a stranger cannot make the daemon buffer a large request.
pub const UNAUTHENTICATED_ARRAY_LEN: u64 = 10;

/// Longest bulk string a request may carry before its connection signs in (Redis's figure).
pub const UNAUTHENTICATED_BULK_LEN: u64 = 16 * 1024;

/// Stateful request decoder for one connection.
///
/// It is meant to be handed the same read buffer on every call, with new bytes only ever
/// appended between calls: it remembers how far it has scanned a half frame (so a request
/// trickling in one byte at a time is not rescanned from the start on every read, which would be
/// quadratic) and how much of a rejected request is still to be discarded.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    /// The connection has not signed in while the daemon requires it: requests over the
    /// unauthenticated bounds are a fatal error (the peer is closed), as in Redis.
    unauthenticated: bool,
    /// Rest of a rejected request still to be thrown away as it arrives.
    discard: Discard,
    /// How far the half frame at the front of the buffer has already been checked.
    progress: Progress,
    /// (start, length) of each argument of the multibulk being scanned, relative to the start
    /// of the buffer; reused from request to request.
    spans: Vec<(usize, usize)>,
    /// Argument buffers handed back by [`Decoder::recycle`], refilled by the next requests so
    /// that a steady pipeline allocates none.
    spare: Vec<Args>,
}

/// Most argument buffers a decoder keeps for reuse: one lookahead run's worth (the daemon
/// decodes up to 16 pipelined checks ahead), so at most 16 x [`MAX_SPARE_BYTES`] per
/// connection.
const MAX_SPARE: usize = 16;

/// Largest argument buffer (bytes of storage) kept for reuse: a request far above the usual
/// size does not keep its memory pinned to the connection.
const MAX_SPARE_BYTES: usize = 4096;

/// The part of a rejected request that has not arrived yet and must be skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Discard {
    #[default]
    Nothing,
    /// The rest of an oversized inline line, up to and including the next `\n`.
    Line,
    /// `bytes` more of the current bulk string (data and CRLF), then `elems` more bulk strings.
    Multibulk { elems: u64, bytes: u64 },
}

/// Scan state of the incomplete frame at the front of the buffer, so a later call resumes
/// where the previous one stopped instead of rescanning every header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Progress {
    #[default]
    Fresh,
    /// A multibulk whose array header and first elements are checked: `pos` is the offset of the
    /// next element header, `elems_left` the elements still to come, `total` the sum of the bulk
    /// lengths seen so far.
    Multibulk {
        pos: usize,
        elems_left: u64,
        total: u64,
    },
    /// An inline line whose first `checked` bytes hold no `\n`.
    Inline { checked: usize },
}

/// Outcome of scanning the front of the buffer.
enum Scan {
    /// More bytes are needed.
    Incomplete,
    /// A request that carries no command (`*0`, `*-1`, an empty inline line): this many bytes
    /// are still to be skipped (0 for an inline line, already consumed).
    Skip(usize),
    /// A whole, acceptable multibulk frame of this many bytes.
    Multibulk(usize),
    /// A request already turned into its result (an inline command or a rejection).
    Done(Request),
}

/// Longest valid length header after the type byte: `-9223372036854775808` is 20 characters,
/// so a header with no `\r` within 21 bytes can never become valid and is refused at once
/// instead of being buffered.
const MAX_HEADER_DIGITS: usize = 20;

/// Read the decimal length header starting at `start` (just after the `*` or `$`) and ending
/// in CRLF. `Ok(None)` if it is not complete yet; `Err(())` if it can never be valid. On success,
/// returns the value and the offset just past the CRLF.
fn read_header(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, ()> {
    let rest = buf.get(start..).unwrap_or(&[]);
    let window = &rest[..rest.len().min(MAX_HEADER_DIGITS + 1)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) => match rest.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => match parse_i64(&rest[..i]) {
                Some(v) => Ok(Some((v, start + i + 2))),
                None => Err(()),
            },
            Some(_) => Err(()),
        },
        None if rest.len() > MAX_HEADER_DIGITS => Err(()),
        None => Ok(None),
    }
}

impl Decoder {
    /// A decoder enforcing `limits` (use `Limits::default()` for Redis-like figures).
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            unauthenticated: false,
            discard: Discard::Nothing,
            progress: Progress::Fresh,
            spans: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Give back a request's arguments once it has run, for the next request to reuse their
    /// storage. Buffers grown by a huge request are dropped rather than kept.
    pub fn recycle(&mut self, mut args: Args) {
        if self.spare.len() < MAX_SPARE && args.capacity() <= MAX_SPARE_BYTES {
            args.clear();
            self.spare.push(args);
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Hold the connection to the unauthenticated bounds ([`UNAUTHENTICATED_ARRAY_LEN`],
    /// [`UNAUTHENTICATED_BULK_LEN`]) until it signs in; they are checked on headers, so an
    /// oversized request fails before its body is buffered.
    pub fn set_unauthenticated(&mut self, on: bool) {
        self.unauthenticated = on;
    }

    /// True while the unauthenticated bounds apply.
    pub fn is_unauthenticated(&self) -> bool {
        self.unauthenticated
    }

    /// Decode the next request at the front of `buf`, removing its bytes from `buf`.
    ///
    /// `Ok(None)`: more bytes are needed (a half frame; `buf` may have been partly consumed by
    /// discarding a rejected request). Empty inline lines are skipped, as Redis does.
    ///
    /// Never panics, whatever the bytes: it is safe to feed it arbitrary input (a fuzz target
    /// only needs to call it in a loop until it returns `Ok(None)` or an error).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        loop {
            if !self.run_discard(buf)? {
                return Ok(None);
            }
            let Some(&first) = buf.first() else {
                self.progress = Progress::Fresh;
                return Ok(None);
            };
            let scan = if first == b'*' {
                self.scan_multibulk(buf)?
            } else {
                self.scan_inline(buf)
            };
            match scan {
                Scan::Incomplete => return Ok(None),
                Scan::Skip(n) => {
                    self.progress = Progress::Fresh;
                    buf.advance(n);
                }
                Scan::Multibulk(n) => {
                    self.progress = Progress::Fresh;
                    // Copied, not split off: see protocol/src/args.rs for why.
                    let mut args = self.spare.pop().unwrap_or_default();
                    args.fill_frame(&buf[..n], &self.spans);
                    buf.advance(n);
                    return Ok(Some(Request::Command(args)));
                }
                Scan::Done(req) => {
                    self.progress = Progress::Fresh;
                    return Ok(Some(req));
                }
            }
        }
    }

    /// Throw away the buffered part of a rejected request. Returns `Ok(true)` once nothing is
    /// left to discard (the buffer then starts at the next request), `Ok(false)` if the buffer
    /// ran out first. On error the state is left untouched, so the error surfaces again on the
    /// next call even if the caller ignored it here.
    fn run_discard(&mut self, buf: &mut BytesMut) -> Result<bool, FrameError> {
        loop {
            match self.discard {
                Discard::Nothing => return Ok(true),
                Discard::Line => match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discard = Discard::Nothing;
                    }
                    None => {
                        buf.clear();
                        return Ok(false);
                    }
                },
                Discard::Multibulk { elems, bytes } if bytes > 0 => {
                    let n = usize::try_from(bytes).unwrap_or(usize::MAX).min(buf.len());
                    buf.advance(n);
                    let bytes = bytes - n as u64;
                    self.discard = Discard::Multibulk { elems, bytes };
                    if bytes > 0 {
                        return Ok(false);
                    }
                }
                Discard::Multibulk { elems: 0, .. } => self.discard = Discard::Nothing,
                Discard::Multibulk { elems, .. } => {
                    // The next element of the rejected request: its header must still be valid
                    // RESP, since that is the only way to find where the request ends.
                    let Some(&first) = buf.first() else {
                        return Ok(false);
                    };
                    if first != b'$' {
                        return Err(FrameError::ExpectedBulk(char::from(first)));
                    }
                    match read_header(buf, 1) {
                        Err(()) => return Err(FrameError::InvalidBulkLength),
                        Ok(None) => return Ok(false),
                        Ok(Some((len, _))) if len < 0 => return Err(FrameError::InvalidBulkLength),
                        Ok(Some((len, next))) => {
                            buf.advance(next);
                            self.discard = Discard::Multibulk {
                                elems: elems - 1,
                                bytes: len.unsigned_abs().saturating_add(2),
                            };
                        }
                    }
                }
            }
        }
    }

    /// Consume `consumed` bytes (the rejected request's headers and data scanned so far), set
    /// up the discarding of the rest, and discard whatever of it is already buffered.
    fn reject(
        &mut self,
        buf: &mut BytesMut,
        consumed: usize,
        discard: Discard,
        reason: RejectReason,
    ) -> Scan {
        buf.advance(consumed.min(buf.len()));
        self.discard = discard;
        // A malformed header further on is reported by the next call: the state is kept.
        let _ = self.run_discard(buf);
        Scan::Done(Request::Rejected(reason))
    }

    /// Check the multibulk at the front of `buf` (which starts with `*`) without decoding it.
    fn scan_multibulk(&mut self, buf: &mut BytesMut) -> Result<Scan, FrameError> {
        let limits = self.limits;
        let (mut pos, mut elems_left, mut total) = match self.progress {
            Progress::Multibulk {
                pos,
                elems_left,
                total,
            } if pos <= buf.len() => (pos, elems_left, total),
            _ => {
                let (count, next) = match read_header(buf, 1) {
                    Err(()) => return Err(FrameError::InvalidMultibulkLength),
                    Ok(None) => return Ok(Scan::Incomplete),
                    Ok(Some(header)) => header,
                };
                if count == 0 || count == -1 {
                    return Ok(Scan::Skip(next));
                }
                if count < 0 {
                    return Err(FrameError::InvalidMultibulkLength);
                }
                let count = count.unsigned_abs();
                if self.unauthenticated && count > UNAUTHENTICATED_ARRAY_LEN {
                    return Err(FrameError::UnauthenticatedMultibulk);
                }
                self.spans.clear();
                if count > limits.max_array_len as u64 {
                    let discard = Discard::Multibulk {
                        elems: count,
                        bytes: 0,
                    };
                    let reason = RejectReason::ArrayTooLong(count, limits.max_array_len);
                    return Ok(self.reject(buf, next, discard, reason));
                }
                (next, count, 0u64)
            }
        };
        while elems_left > 0 {
            let Some(&kind) = buf.get(pos) else {
                break;
            };
            if kind != b'$' {
                return Err(FrameError::ExpectedBulk(char::from(kind)));
            }
            let (len, data) = match read_header(buf, pos + 1) {
                Err(()) => return Err(FrameError::InvalidBulkLength),
                Ok(None) => break,
                Ok(Some((len, _))) if len < 0 => return Err(FrameError::InvalidBulkLength),
                Ok(Some((len, data))) => (len.unsigned_abs(), data),
            };
            if self.unauthenticated && len > UNAUTHENTICATED_BULK_LEN {
                return Err(FrameError::UnauthenticatedBulk);
            }
            let rest = Discard::Multibulk {
                elems: elems_left - 1,
                bytes: len.saturating_add(2),
            };
            if len > limits.max_bulk_len as u64 {
                let reason = RejectReason::BulkTooLong(len, limits.max_bulk_len);
                return Ok(self.reject(buf, data, rest, reason));
            }
            if total.saturating_add(len) > limits.max_request_len as u64 {
                let reason = RejectReason::RequestTooLong(limits.max_request_len);
                return Ok(self.reject(buf, data, rest, reason));
            }
            // len <= max_bulk_len, a usize, so these cannot overflow on any real buffer.
            let end = data.saturating_add(len as usize);
            let Some(crlf) = buf.get(end..end.saturating_add(2)) else {
                break;
            };
            if crlf != b"\r\n" {
                return Err(FrameError::Other(
                    "bulk string not followed by CRLF".to_string(),
                ));
            }
            self.spans.push((data, len as usize));
            pos = end + 2;
            total += len;
            elems_left -= 1;
        }
        if elems_left > 0 {
            self.progress = Progress::Multibulk {
                pos,
                elems_left,
                total,
            };
            return Ok(Scan::Incomplete);
        }
        Ok(Scan::Multibulk(pos))
    }

    /// Check, and if complete split, the inline command at the front of `buf`.
    fn scan_inline(&mut self, buf: &mut BytesMut) -> Scan {
        let max = self.limits.max_inline_len;
        // A line of `max` bytes may be followed by "\r\n": look no further than that.
        let window = buf.len().min(max.saturating_add(2));
        let checked = match self.progress {
            Progress::Inline { checked } => checked.min(window),
            _ => 0,
        };
        let Some(nl) = buf[checked..window].iter().position(|&b| b == b'\n') else {
            if buf.len() >= max.saturating_add(2) {
                return self.reject(buf, 0, Discard::Line, RejectReason::InlineTooLong);
            }
            self.progress = Progress::Inline { checked: window };
            return Scan::Incomplete;
        };
        let nl = checked + nl;
        let content_len = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let split = (content_len <= max).then(|| {
            let mut args = self.spare.pop().unwrap_or_default();
            args.clear();
            split_args(&buf[..content_len], args)
        });
        buf.advance(nl + 1);
        match split {
            None => Scan::Done(Request::Rejected(RejectReason::InlineTooLong)),
            Some(None) => Scan::Done(Request::Rejected(RejectReason::UnbalancedQuotes)),
            Some(Some(args)) if args.is_empty() => Scan::Skip(0),
            Some(Some(args)) => Scan::Done(Request::Command(args)),
        }
    }
}

/// True for the bytes C's `isspace` accepts in the "C" locale, which `sdssplitargs` uses to
/// skip blanks between arguments and to end a quoted argument.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Split an inline command line into arguments with Redis's `sdssplitargs` rules: blanks
/// separate arguments; `"..."` understands `\n \r \t \b \a \xHH` and `\<any>`; `'...'`
/// understands only `\'`; a closing quote must be followed by a blank or the end of the line.
/// Like the C original, a NUL byte ends the line. `None` means unbalanced quotes.
///
/// The arguments are appended to `args` (an empty buffer, reused). Quoted arguments are
/// unescaped into a copy first.
fn split_args(line: &[u8], mut args: Args) -> Option<Args> {
    // The C code reads a NUL-terminated string: everything after an embedded NUL is invisible.
    let len = line.iter().position(|&b| b == 0).unwrap_or(line.len());
    let at = |i: usize| if i < len { line[i] } else { 0 };
    let mut p = 0;
    loop {
        while p < len && is_c_space(line[p]) {
            p += 1;
        }
        if p >= len {
            return Some(args);
        }
        let start = p;
        // Only allocated once a quote shows up; until then the argument is line[start..p].
        let mut owned: Option<Vec<u8>> = None;
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            let c = at(p);
            if in_dq {
                let cur = owned.get_or_insert_with(Vec::new);
                // `\xHH` only with two hex digits; otherwise `\x` is just an escaped `x`.
                if let (b'\\', b'x', Some(hi), Some(lo)) =
                    (c, at(p + 1), hex(at(p + 2)), hex(at(p + 3)))
                {
                    cur.push(hi * 16 + lo);
                    p += 4;
                    continue;
                }
                if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    cur.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                let cur = owned.get_or_insert_with(Vec::new);
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' | b'\'' => {
                        // A quote may open mid-argument (`foo"bar"`): keep what came before.
                        owned.get_or_insert_with(|| line[start..p].to_vec());
                        if c == b'"' {
                            in_dq = true;
                        } else {
                            in_sq = true;
                        }
                    }
                    _ => {
                        if let Some(cur) = owned.as_mut() {
                            cur.push(c);
                        }
                    }
                }
            }
            p += 1;
        }
        match owned {
            Some(v) => args.push(&v),
            None => args.push(&line[start..p]),
        }
    }
}

/// Value of an ASCII hex digit.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
