//! The memcached text and meta protocols: request bytes → [`McRequest`], and [`McReply`] → bytes.
//!
//! Pure and bounded, like the RESP side ([`crate::frame`]): a [`McDecoder`] looks at the
//! connection's read buffer, returns one whole request at a time, and never buffers more than
//! [`McLimits`] allow. It exists so that teams rate-limiting with memcached (`add` + `incr`,
//! Dalli's `ma`, envoy's memcache backend) can point their code at ratelimitd unchanged.
//!
//! What it follows from memcached 1.6 (`proto_text.c`):
//! - a request is one line ending in `\n` (an optional `\r` before it is dropped), tokens
//!   separated by spaces; command names are case-sensitive;
//! - storage commands (`set`, `add`, `replace`, `append`, `prepend`, `cas`, meta `ms`) are followed
//!   by a data block of the declared length and `\r\n`;
//! - keys are 1..=250 bytes; we also refuse control characters in keys (memcached's text
//!   protocol would store them, but no client sends them on purpose and they break `stats` and
//!   log lines);
//! - the command line is bounded ([`McLimits::max_line_len`], 2048 as in memcached); retrieval
//!   lines (`get`, `gets`, `gat`, `gats`) may be longer ([`McLimits::max_get_line_len`]), as
//!   memcached allows large multigets.
//!
//! Errors and resynchronisation. A malformed line yields [`McFrame::Error`]: the server writes
//! its line (`ERROR`, `CLIENT_ERROR ...`) and carries on with the next line. For a storage
//! command the data block must then be skipped too, or its bytes would be read as commands:
//! - header valid but value over the cap: the data block (declared length + 2) is swallowed as it
//!   arrives, never buffered, and the reply is `SERVER_ERROR object too large for cache` —
//!   exactly memcached's behaviour;
//! - header invalid (bad key, flags, exptime or cas) but the length token readable: we also
//!   swallow length + 2 bytes. memcached does *not* here (it answers `CLIENT_ERROR` and reads the
//!   data block as a command line); swallowing is stricter and means value bytes are never
//!   executed as commands;
//! - length unreadable or negative: nothing can be known, so, as memcached, the next line is
//!   read as a command (it usually gets `ERROR`);
//! - a line longer than the limit: `CLIENT_ERROR line too long`, and the bytes up to the next
//!   `\n` are discarded (memcached closes the connection instead);
//! - the binary protocol's magic byte (0x80) at the start of a request: [`McFatal::Binary`];
//!   the server writes its line and closes (the two protocols cannot be mixed on a stream).

use bytes::{Buf, Bytes, BytesMut};
use std::fmt::Write as _;

/// The digits of every unsigned field (flags, exptime, lengths, cas, meta flags) are read by
/// the crate's one [`parse::parse_u64`](crate::parse::parse_u64), re-exported here.
pub use crate::parse::parse_u64;

/// Input bounds, checked before anything is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McLimits {
    /// Longest key (memcached's KEY_MAX_LENGTH).
    pub max_key_len: usize,
    /// Longest command line, `\r\n` included, for everything but retrieval commands.
    pub max_line_len: usize,
    /// Longest `get`/`gets`/`gat`/`gats` line (multigets with many keys).
    pub max_get_line_len: usize,
    /// Largest value accepted by a storage command (the daemon's `--max-value-size`).
    pub max_value_len: usize,
}

impl Default for McLimits {
    fn default() -> Self {
        McLimits {
            max_key_len: 250,
            max_line_len: 2048,
            max_get_line_len: 64 * 1024,
            max_value_len: 1024,
        }
    }
}

/// The text protocol's storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCmd {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// One decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McRequest {
    /// `get`/`gets <key>+` (`cas`: gets).
    Get {
        keys: Vec<Bytes>,
        cas: bool,
    },
    /// `gat`/`gats <exptime> <key>+`: get and touch.
    Gat {
        exptime: i64,
        keys: Vec<Bytes>,
        cas: bool,
    },
    /// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]` and
    /// `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]`, with the data block.
    Store {
        cmd: StoreCmd,
        key: Bytes,
        flags: u32,
        exptime: i64,
        /// The `cas` command's unique (0 for the others).
        cas_unique: u64,
        data: Bytes,
        noreply: bool,
    },
    /// The header of a storage command was valid but its value is over the cap; the data
    /// block is being swallowed. memcached also drops the old value on a failed `set`.
    TooLarge {
        cmd: StoreCmd,
        key: Bytes,
        noreply: bool,
    },
    /// `incr`/`decr <key> <delta> [noreply]`.
    Arith {
        incr: bool,
        key: Bytes,
        delta: u64,
        noreply: bool,
    },
    /// `delete <key> [0] [noreply]`.
    Delete {
        key: Bytes,
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        key: Bytes,
        exptime: i64,
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`.
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Version,
    /// `verbosity <n> [noreply]` (accepted, no effect).
    Verbosity {
        noreply: bool,
    },
    /// `stats [group]`.
    Stats {
        group: Option<Bytes>,
    },
    Quit,
    /// `mn`: the meta no-op, which clients use to mark the end of a quiet batch.
    MetaNoop,
    /// `mg`, `ms`, `md`, `ma` (boxed: it is the largest request by far).
    Meta(Box<MetaRequest>),
}

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCmd {
    Get,
    Set,
    Delete,
    Arithmetic,
}

/// A meta command: its key (base64-decoded when the `b` flag was given), flags and, for `ms`,
/// the data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    pub cmd: MetaCmd,
    pub key: Bytes,
    /// The key exactly as sent (what `k` echoes back).
    pub raw_key: Bytes,
    pub flags: MetaFlags,
    pub data: Option<Bytes>,
}

/// The meta flags we understand. Return flags (`c f k O s t b`) are echoed in the order the
/// client gave them, as memcached does; [`MetaFlags::returns`] keeps that order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaFlags {
    /// `b`: the key is base64.
    pub base64: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: quiet mode (suppress the common-case reply: EN for mg, HD for ms/md/ma, NF for md).
    pub quiet: bool,
    /// `I`: invalidate (accepted; treated as a plain write/delete).
    pub invalidate: bool,
    /// Return flags in request order: b'c', b'f', b'k', b'O', b's', b't'.
    pub returns: Vec<u8>,
    /// `O<token>`: opaque, echoed back.
    pub opaque: Option<Bytes>,
    /// `T<ttl>`: set the TTL (seconds; memcached's exptime rules).
    pub ttl: Option<i64>,
    /// `N<ttl>`: auto-create on miss with this TTL (mg, ma).
    pub vivify: Option<i64>,
    /// `D<delta>` (ma; default 1).
    pub delta: Option<u64>,
    /// `J<initial>` (ma with N; default 0).
    pub initial: Option<u64>,
    /// `M<mode>`: ms: E add, A append, P prepend, R replace, S set; ma: I/+ incr, D/- decr.
    pub mode: Option<u8>,
    /// `C<cas>`: compare this CAS before writing.
    pub compare_cas: Option<u64>,
    /// `F<flags>`: client flags to store (ms).
    pub client_flags: Option<u32>,
}

/// A line to write back and carry on. `Display` is the exact line without `\r\n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McError {
    /// Unknown command or wrong number of tokens.
    #[error("ERROR")]
    Unknown,
    #[error("CLIENT_ERROR bad command line format")]
    BadFormat,
    #[error("CLIENT_ERROR line too long")]
    LineTooLong,
    #[error("CLIENT_ERROR bad data chunk")]
    BadDataChunk,
    #[error("CLIENT_ERROR invalid numeric delta argument")]
    InvalidDelta,
    #[error("CLIENT_ERROR invalid exptime argument")]
    InvalidExptime,
    #[error("CLIENT_ERROR invalid flag")]
    InvalidFlag,
    #[error("CLIENT_ERROR duplicate flag")]
    DuplicateFlag,
    #[error("CLIENT_ERROR bad token in command line format")]
    BadToken,
    #[error("CLIENT_ERROR error decoding key")]
    BadBase64,
    #[error("SERVER_ERROR object too large for cache")]
    TooLarge,
}

/// Bytes after which the stream cannot be read as memcached text: write the line and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McFatal {
    #[error("CLIENT_ERROR the binary protocol is not supported; use the text or meta protocol")]
    Binary,
}

/// What [`McDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McFrame {
    Request(McRequest),
    /// Reply with this line and carry on.
    Error(McError),
}

/// Splits the read buffer into requests; keeps the state needed to skip the rest of a refused
/// data block or over-long line across reads.
#[derive(Debug, Default)]
pub struct McDecoder {
    limits: McLimits,
    /// Bytes of a refused data block still to be discarded.
    swallow: usize,
    /// Discarding an over-long line up to its `\n`.
    skip_line: bool,
}

impl McDecoder {
    pub fn new(limits: McLimits) -> McDecoder {
        McDecoder {
            limits,
            swallow: 0,
            skip_line: false,
        }
    }

    /// The next whole request in `buf` (consumed), `Ok(None)` if more bytes are needed, or
    /// `Err` if the stream is not memcached text. Accepts any bytes without panicking.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<McFrame>, McFatal> {
        {
            if self.swallow > 0 {
                let n = self.swallow.min(buf.len());
                buf.advance(n);
                self.swallow -= n;
                if self.swallow > 0 {
                    return Ok(None);
                }
            }
            if self.skip_line {
                match memchr(b'\n', buf) {
                    Some(pos) => {
                        buf.advance(pos + 1);
                        self.skip_line = false;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first == 0x80 {
                return Err(McFatal::Binary);
            }
            let limit = if is_retrieval(buf) {
                self.limits.max_get_line_len
            } else {
                self.limits.max_line_len
            };
            let Some(nl) = memchr(b'\n', &buf[..buf.len().min(limit)]) else {
                if buf.len() >= limit {
                    // The first `limit` bytes hold no `\n`; drop them and the rest of the line.
                    self.skip_line = true;
                    buf.advance(limit);
                    return Ok(Some(McFrame::Error(McError::LineTooLong)));
                }
                return Ok(None);
            };
            let line_len = nl + 1;
            let mut line = &buf[..nl];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            let tokens: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|t| !t.is_empty())
                .collect();
            if tokens.is_empty() {
                // memcached answers an empty line with ERROR.
                buf.advance(line_len);
                return Ok(Some(McFrame::Error(McError::Unknown)));
            }
            match self.parse_line(&tokens, &buf[line_len..]) {
                Parsed::Done(frame) => {
                    buf.advance(line_len);
                    Ok(Some(frame))
                }
                Parsed::WithData(data_len, frame) => {
                    buf.advance(line_len);
                    let data = buf.split_to(data_len + 2).freeze();
                    Ok(Some(match frame {
                        DataFrame::Store(mut req) => {
                            if !data.ends_with(b"\r\n") {
                                // More bytes than declared, most likely: drop the rest of
                                // that line too, so they are not read as a command.
                                if !data.ends_with(b"\n") {
                                    self.skip_line = true;
                                }
                                McFrame::Error(McError::BadDataChunk)
                            } else {
                                let value = data.slice(..data_len);
                                match &mut req {
                                    McRequest::Store { data, .. } => *data = value,
                                    McRequest::Meta(m) => m.data = Some(value),
                                    _ => {}
                                }
                                McFrame::Request(req)
                            }
                        }
                    }))
                }
                Parsed::NeedData => Ok(None),
                Parsed::Swallow(n, frame) => {
                    buf.advance(line_len);
                    self.swallow = n;
                    Ok(Some(frame))
                }
            }
        }
    }

    fn parse_line(&self, t: &[&[u8]], after: &[u8]) -> Parsed {
        let cmd = t[0];
        let done = |r: Result<McRequest, McError>| match r {
            Ok(req) => Parsed::Done(McFrame::Request(req)),
            Err(e) => Parsed::Done(McFrame::Error(e)),
        };
        match cmd {
            b"get" | b"gets" => {
                if t.len() < 2 {
                    return Parsed::Done(McFrame::Error(McError::Unknown));
                }
                done(self.keys(&t[1..]).map(|keys| McRequest::Get {
                    keys,
                    cas: cmd == b"gets",
                }))
            }
            b"gat" | b"gats" => {
                if t.len() < 3 {
                    return Parsed::Done(McFrame::Error(McError::Unknown));
                }
                let Some(exptime) = parse_i32(t[1]) else {
                    return Parsed::Done(McFrame::Error(McError::InvalidExptime));
                };
                done(self.keys(&t[2..]).map(|keys| McRequest::Gat {
                    exptime,
                    keys,
                    cas: cmd == b"gats",
                }))
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
                self.storage(t, after)
            }
            b"incr" | b"decr" => {
                if !(3..=4).contains(&t.len()) {
                    return Parsed::Done(McFrame::Error(McError::Unknown));
                }
                let noreply = t.len() == 4 && t[3] == b"noreply";
                done((|| {
                    let key = self.key(t[1])?;
                    let delta = parse_number(t[2]).ok_or(McError::InvalidDelta)?;
                    Ok(McRequest::Arith {
                        incr: cmd == b"incr",
                        key,
                        delta,
                        noreply,
                    })
                })())
            }
            b"delete" => {
                // delete <key> [0] [noreply], as memcached's process_delete_command.
                let noreply = t.last() == Some(&&b"noreply"[..]) && t.len() > 2;
                if t.len() < 2 {
                    return Parsed::Done(McFrame::Error(McError::Unknown));
                }
                let valid = match t.len() {
                    2 => true,
                    3 => t[2] == b"0" || noreply,
                    4 => t[2] == b"0" && noreply,
                    _ => false,
                };
                if !valid {
                    return Parsed::Done(McFrame::Error(McError::BadFormat));
                }
                done(self.key(t[1]).map(|key| McRequest::Delete { key, noreply }))
            }
            b"touch" => {
                if !(3..=4).contains(&t.len()) {
                    return Parsed::Done(McFrame::Error(McError::Unknown));
                }
                let noreply = t.len() == 4 && t[3] == b"noreply";
                done((|| {
                    let key = self.key(t[1])?;
                    let exptime = parse_i32(t[2]).ok_or(McError::InvalidExptime)?;
                    Ok(McRequest::Touch {
                        key,
                        exptime,
                        noreply,
                    })
                })())
            }
            b"flush_all" => {
                let noreply = t.last() == Some(&&b"noreply"[..]);
                let args = &t[1..t.len() - usize::from(noreply)];
                match args {
                    [] => done(Ok(McRequest::FlushAll { delay: 0, noreply })),
                    [d] => match parse_i32(d) {
                        Some(delay) => done(Ok(McRequest::FlushAll { delay, noreply })),
                        None => done(Err(McError::BadFormat)),
                    },
                    _ => done(Err(McError::Unknown)),
                }
            }
            b"version" if t.len() == 1 => done(Ok(McRequest::Version)),
            b"quit" if t.len() == 1 => done(Ok(McRequest::Quit)),
            b"mn" if t.len() == 1 => done(Ok(McRequest::MetaNoop)),
            b"verbosity" if (2..=3).contains(&t.len()) => {
                let noreply = t.last() == Some(&&b"noreply"[..]);
                if parse_u64(t[1]).is_none() {
                    return done(Err(McError::BadFormat));
                }
                done(Ok(McRequest::Verbosity { noreply }))
            }
            b"stats" => match t.len() {
                1 => done(Ok(McRequest::Stats { group: None })),
                2 => done(Ok(McRequest::Stats {
                    group: Some(Bytes::copy_from_slice(t[1])),
                })),
                _ => done(Err(McError::Unknown)),
            },
            b"mg" | b"md" | b"ma" | b"ms" => self.meta(t, after),
            _ => done(Err(McError::Unknown)),
        }
    }

    /// `<cmd> <key> <flags> <exptime> <bytes> [cas] [noreply]`.
    fn storage(&self, t: &[&[u8]], after: &[u8]) -> Parsed {
        let cmd = match t[0] {
            b"set" => StoreCmd::Set,
            b"add" => StoreCmd::Add,
            b"replace" => StoreCmd::Replace,
            b"append" => StoreCmd::Append,
            b"prepend" => StoreCmd::Prepend,
            _ => StoreCmd::Cas,
        };
        let base = if cmd == StoreCmd::Cas { 6 } else { 5 };
        if t.len() != base && t.len() != base + 1 {
            return Parsed::Done(McFrame::Error(McError::Unknown));
        }
        let noreply = t.len() == base + 1 && t[base] == b"noreply";
        // The length first: it decides whether the data block can be skipped on any error.
        let len = match parse_i32(t[4]) {
            Some(n) if n >= 0 => n as usize,
            _ => return Parsed::Done(McFrame::Error(McError::BadFormat)),
        };
        let header = (|| {
            let key = self.key(t[1])?;
            let flags = parse_u32(t[2]).ok_or(McError::BadFormat)?;
            let exptime = parse_i32(t[3]).ok_or(McError::BadFormat)?;
            let cas_unique = if cmd == StoreCmd::Cas {
                parse_u64(t[5]).ok_or(McError::BadFormat)?
            } else {
                0
            };
            if t.len() == base + 1 && !noreply {
                return Err(McError::BadFormat);
            }
            Ok((key, flags, exptime, cas_unique))
        })();
        let (key, flags, exptime, cas_unique) = match header {
            Ok(h) => h,
            Err(e) => return Parsed::Swallow(len.saturating_add(2), McFrame::Error(e)),
        };
        if len > self.limits.max_value_len {
            return Parsed::Swallow(
                len.saturating_add(2),
                McFrame::Request(McRequest::TooLarge { cmd, key, noreply }),
            );
        }
        if after.len() < len + 2 {
            return Parsed::NeedData;
        }
        Parsed::WithData(
            len,
            DataFrame::Store(McRequest::Store {
                cmd,
                key,
                flags,
                exptime,
                cas_unique,
                data: Bytes::new(),
                noreply,
            }),
        )
    }

    /// `mg|md|ma <key> <flag>*` and `ms <key> <datalen> <flag>*`.
    fn meta(&self, t: &[&[u8]], after: &[u8]) -> Parsed {
        let cmd = match t[0] {
            b"mg" => MetaCmd::Get,
            b"ms" => MetaCmd::Set,
            b"md" => MetaCmd::Delete,
            _ => MetaCmd::Arithmetic,
        };
        if t.len() < 2 || (cmd == MetaCmd::Set && t.len() < 3) {
            return Parsed::Done(McFrame::Error(McError::BadFormat));
        }
        let (len, flag_tokens) = if cmd == MetaCmd::Set {
            match parse_i32(t[2]) {
                Some(n) if n >= 0 => (Some(n as usize), &t[3..]),
                _ => return Parsed::Done(McFrame::Error(McError::BadDataChunk)),
            }
        } else {
            (None, &t[2..])
        };
        let parsed = (|| {
            let flags = parse_meta_flags(flag_tokens)?;
            let key = if flags.base64 {
                let decoded = base64_decode(t[1]).ok_or(McError::BadBase64)?;
                if decoded.is_empty() || decoded.len() > self.limits.max_key_len {
                    return Err(McError::BadFormat);
                }
                Bytes::from(decoded)
            } else {
                self.key(t[1])?
            };
            Ok(MetaRequest {
                cmd,
                key,
                raw_key: Bytes::copy_from_slice(t[1]),
                flags,
                data: None,
            })
        })();
        let req = match (parsed, len) {
            (Ok(r), _) => r,
            (Err(e), Some(len)) => {
                return Parsed::Swallow(len.saturating_add(2), McFrame::Error(e));
            }
            (Err(e), None) => return Parsed::Done(McFrame::Error(e)),
        };
        let Some(len) = len else {
            return Parsed::Done(McFrame::Request(McRequest::Meta(Box::new(req))));
        };
        if len > self.limits.max_value_len {
            return Parsed::Swallow(len.saturating_add(2), McFrame::Error(McError::TooLarge));
        }
        if after.len() < len + 2 {
            return Parsed::NeedData;
        }
        Parsed::WithData(len, DataFrame::Store(McRequest::Meta(Box::new(req))))
    }

    fn key(&self, k: &[u8]) -> Result<Bytes, McError> {
        if valid_key(k, self.limits.max_key_len) {
            Ok(Bytes::copy_from_slice(k))
        } else {
            Err(McError::BadFormat)
        }
    }

    fn keys(&self, ks: &[&[u8]]) -> Result<Vec<Bytes>, McError> {
        ks.iter().map(|k| self.key(k)).collect()
    }
}

/// Outcome of parsing one line.
enum Parsed {
    Done(McFrame),
    /// The line is a storage header: consume it and `n + 2` bytes of data.
    WithData(usize, DataFrame),
    /// The data block is not all buffered yet; leave the line in the buffer.
    NeedData,
    /// Consume the line, discard the next `n` bytes as they arrive, and answer the frame.
    Swallow(usize, McFrame),
}

enum DataFrame {
    Store(McRequest),
}

/// True if the buffer starts a retrieval command, whose line may be longer.
fn is_retrieval(buf: &[u8]) -> bool {
    [&b"get "[..], b"gets ", b"gat ", b"gats "]
        .iter()
        .any(|p| buf.starts_with(p))
}

/// A key: 1..=max bytes, no control characters or spaces.
pub fn valid_key(k: &[u8], max: usize) -> bool {
    !k.is_empty() && k.len() <= max && k.iter().all(|&b| b > b' ' && b != 0x7f)
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

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

fn parse_u32(b: &[u8]) -> Option<u32> {
    parse_u64(b).and_then(|n| u32::try_from(n).ok())
}

/// Signed decimal within i32 (memcached's safe_strtol), widened to i64 for arithmetic.
fn parse_i32(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let n = parse_u64(digits)? as i128;
    let n = if neg { -n } else { n };
    i32::try_from(n).ok().map(i64::from)
}

fn parse_meta_flags(tokens: &[&[u8]]) -> Result<MetaFlags, McError> {
    let mut f = MetaFlags::default();
    let mut seen = [false; 128];
    for tok in tokens {
        let (&c, rest) = tok.split_first().ok_or(McError::InvalidFlag)?;
        if !c.is_ascii_alphabetic() {
            return Err(McError::InvalidFlag);
        }
        if std::mem::replace(&mut seen[c as usize], true) {
            return Err(McError::DuplicateFlag);
        }
        let num = || parse_u64(rest).ok_or(McError::BadToken);
        let signed = || parse_i32(rest).ok_or(McError::BadToken);
        match c {
            b'b' => f.base64 = true,
            b'v' => f.value = true,
            b'q' => f.quiet = true,
            b'I' => f.invalidate = true,
            b'c' | b'f' | b'k' | b's' | b't' => f.returns.push(c),
            // Accepted and ignored: h (hit before), l (last access), u (no LRU bump),
            // x (remove value, md), E (explicit CAS), R (recache) have no meaning here.
            b'h' | b'l' | b'u' | b'x' => {}
            b'O' => {
                if rest.len() > 32 {
                    return Err(McError::BadToken);
                }
                f.opaque = Some(Bytes::copy_from_slice(rest));
                f.returns.push(b'O');
            }
            b'T' => f.ttl = Some(signed()?),
            b'N' => f.vivify = Some(signed()?),
            b'D' => f.delta = Some(num()?),
            b'J' => f.initial = Some(num()?),
            b'C' => f.compare_cas = Some(num()?),
            b'F' => f.client_flags = Some(u32::try_from(num()?).map_err(|_| McError::BadToken)?),
            b'M' => match rest {
                [m] => f.mode = Some(*m),
                _ => return Err(McError::BadToken),
            },
            _ => return Err(McError::InvalidFlag),
        }
    }
    Ok(f)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding (what the `b` flag uses); None if malformed.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() & 3 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, chunk) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let mut v = [0u8; 4];
        let mut pad = 0;
        for (j, &c) in chunk.iter().enumerate() {
            v[j] = match c {
                b'=' if last && j >= 2 => {
                    pad += 1;
                    0
                }
                _ if pad > 0 => return None,
                _ => B64.iter().position(|&b| b == c)? as u8,
            };
        }
        let n = (u32::from(v[0]) << 18)
            | (u32::from(v[1]) << 12)
            | (u32::from(v[2]) << 6)
            | u32::from(v[3]);
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * j)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One item in a `get` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McValue {
    pub key: Bytes,
    pub flags: u32,
    pub data: Bytes,
    /// Some for `gets`/`gats`.
    pub cas: Option<u64>,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McReply {
    /// Nothing (noreply, or a quiet meta command's common case).
    None,
    /// A status line: `STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`, `DELETED`, `TOUCHED`,
    /// `OK`, `RESET`, `END`.
    Status(&'static str),
    /// An error line (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`).
    Error(String),
    /// incr/decr's new value.
    Number(u64),
    /// `VALUE ...` blocks then `END`.
    Values(Vec<McValue>),
    /// `STAT name value` lines then `END`.
    Stats(Vec<(String, String)>),
    /// `VERSION x`.
    Version(String),
    /// A meta reply: `code flags...` (`HD`, `NF`, `NS`, `EX`, `EN`, `MN`), or `VA <len> flags`
    /// and the value when `value` is Some.
    Meta {
        code: &'static str,
        /// Return flags, already formatted (`c123`, `t-1`, `kfoo`, `Oabc`, `b`).
        flags: Vec<Bytes>,
        value: Option<Bytes>,
    },
}

impl From<McError> for McReply {
    fn from(e: McError) -> McReply {
        McReply::Error(e.to_string())
    }
}

/// Append `reply`'s bytes to `out`. Error text has CR/LF replaced so one reply stays one line.
pub fn compose_mc(reply: &McReply, out: &mut BytesMut) {
    match reply {
        McReply::None => {}
        McReply::Status(s) => {
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        McReply::Error(s) => {
            out.extend(
                s.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
        McReply::Number(n) => {
            let _ = write!(out, "{n}\r\n");
        }
        McReply::Values(items) => {
            for v in items {
                out.extend_from_slice(b"VALUE ");
                out.extend_from_slice(&v.key);
                let _ = write!(out, " {} {}", v.flags, v.data.len());
                if let Some(cas) = v.cas {
                    let _ = write!(out, " {cas}");
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&v.data);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"END\r\n");
        }
        McReply::Stats(lines) => {
            for (k, v) in lines {
                let _ = write!(out, "STAT {k} {v}\r\n");
            }
            out.extend_from_slice(b"END\r\n");
        }
        McReply::Version(v) => {
            let _ = write!(out, "VERSION {v}\r\n");
        }
        McReply::Meta { code, flags, value } => {
            match value {
                Some(v) => {
                    let _ = write!(out, "VA {}", v.len());
                }
                None => out.extend_from_slice(code.as_bytes()),
            }
            for f in flags {
                out.extend_from_slice(b" ");
                out.extend_from_slice(f);
            }
            out.extend_from_slice(b"\r\n");
            if let Some(v) = value {
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// memcached reads its numeric fields with `strtoull`/`strtol`, so zero padding of any
    /// length is accepted (checked against memcached 1.6.18), also past 20 characters.
    #[test]
    fn zero_padded_fields_of_any_length_are_read() {
        let z = |n: u32| format!("{:0>27}", n);
        let neg = |n: u32| format!("-{:0>27}", n);
        let mut d = McDecoder::new(McLimits::default());
        let mut decode = |line: String| {
            let mut buf = BytesMut::from(line.as_bytes());
            let frame = d.decode(&mut buf);
            assert!(buf.is_empty(), "{line:?} left {buf:?}");
            match frame {
                Ok(Some(McFrame::Request(r))) => r,
                other => panic!("{line:?}: {other:?}"),
            }
        };
        assert_eq!(
            decode(format!("set k {} {} {}\r\nabc\r\n", z(5), z(60), z(3))),
            McRequest::Store {
                cmd: StoreCmd::Set,
                key: b("k"),
                flags: 5,
                exptime: 60,
                cas_unique: 0,
                data: b("abc"),
                noreply: false,
            }
        );
        assert!(matches!(
            decode(format!("cas k 0 0 1 {}\r\nx\r\n", z(99))),
            McRequest::Store { cas_unique: 99, .. }
        ));
        assert!(matches!(
            decode(format!("touch k {}\r\n", neg(1))),
            McRequest::Touch { exptime: -1, .. }
        ));
        assert!(matches!(
            decode(format!("gat {} k\r\n", z(10))),
            McRequest::Gat { exptime: 10, .. }
        ));
        assert!(matches!(
            decode(format!("flush_all {}\r\n", z(10))),
            McRequest::FlushAll { delay: 10, .. }
        ));
        assert!(matches!(
            decode(format!("verbosity {}\r\n", z(1))),
            McRequest::Verbosity { .. }
        ));
        assert!(matches!(
            decode(format!("incr k {}\r\n", z(2))),
            McRequest::Arith { delta: 2, .. }
        ));
        let McRequest::Meta(m) = decode(format!(
            "ms k {} T{} F{} C{}\r\nhi\r\n",
            z(2),
            z(10),
            z(3),
            z(7)
        )) else {
            panic!("not a meta request")
        };
        assert_eq!(m.data, Some(b("hi")));
        assert_eq!(
            (m.flags.ttl, m.flags.client_flags, m.flags.compare_cas),
            (Some(10), Some(3), Some(7))
        );
        let McRequest::Meta(m) = decode(format!("ma k D{} J{} N{}\r\n", z(2), z(4), neg(1))) else {
            panic!("not a meta request")
        };
        assert_eq!(
            (m.flags.delta, m.flags.initial, m.flags.vivify),
            (Some(2), Some(4), Some(-1))
        );
    }

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

    fn decode_all(input: &[u8]) -> Vec<Result<McFrame, McFatal>> {
        let mut d = McDecoder::new(McLimits {
            max_value_len: 16,
            max_line_len: 64,
            max_get_line_len: 128,
            ..McLimits::default()
        });
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    fn one(input: &[u8]) -> Result<McFrame, McFatal> {
        let mut all = decode_all(input);
        assert_eq!(
            all.len(),
            1,
            "one frame from {:?}: {all:?}",
            String::from_utf8_lossy(input)
        );
        all.remove(0)
    }

    fn req(r: McRequest) -> Result<McFrame, McFatal> {
        Ok(McFrame::Request(r))
    }

    fn err(e: McError) -> Result<McFrame, McFatal> {
        Ok(McFrame::Error(e))
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn text_requests() {
        let cases: Vec<(&[u8], Result<McFrame, McFatal>)> = vec![
            (
                b"get a\r\n",
                req(McRequest::Get {
                    keys: vec![b("a")],
                    cas: false,
                }),
            ),
            (
                b"gets a  b\n",
                req(McRequest::Get {
                    keys: vec![b("a"), b("b")],
                    cas: true,
                }),
            ),
            (b"get\r\n", err(McError::Unknown)),
            (b"GET a\r\n", err(McError::Unknown)),
            (
                b"gat 10 a b\r\n",
                req(McRequest::Gat {
                    exptime: 10,
                    keys: vec![b("a"), b("b")],
                    cas: false,
                }),
            ),
            (b"gats x a\r\n", err(McError::InvalidExptime)),
            (
                b"set k 5 60 3\r\nabc\r\n",
                req(McRequest::Store {
                    cmd: StoreCmd::Set,
                    key: b("k"),
                    flags: 5,
                    exptime: 60,
                    cas_unique: 0,
                    data: b("abc"),
                    noreply: false,
                }),
            ),
            (
                b"cas k 0 -1 1 99 noreply\r\nx\r\n",
                req(McRequest::Store {
                    cmd: StoreCmd::Cas,
                    key: b("k"),
                    flags: 0,
                    exptime: -1,
                    cas_unique: 99,
                    data: b("x"),
                    noreply: true,
                }),
            ),
            (
                b"append k 0 0 0\r\n\r\n",
                req(McRequest::Store {
                    cmd: StoreCmd::Append,
                    key: b("k"),
                    flags: 0,
                    exptime: 0,
                    cas_unique: 0,
                    data: b(""),
                    noreply: false,
                }),
            ),
            (b"set k 0 0 3\r\nabcd\r\n", err(McError::BadDataChunk)),
            (b"set k 0 0\r\n", err(McError::Unknown)),
            (
                b"incr n 5\r\n",
                req(McRequest::Arith {
                    incr: true,
                    key: b("n"),
                    delta: 5,
                    noreply: false,
                }),
            ),
            (
                b"decr n 18446744073709551615 noreply\r\n",
                req(McRequest::Arith {
                    incr: false,
                    key: b("n"),
                    delta: u64::MAX,
                    noreply: true,
                }),
            ),
            (
                b"incr n 18446744073709551616\r\n",
                err(McError::InvalidDelta),
            ),
            (b"incr n -1\r\n", err(McError::InvalidDelta)),
            (b"incr n\r\n", err(McError::Unknown)),
            (
                b"delete k\r\n",
                req(McRequest::Delete {
                    key: b("k"),
                    noreply: false,
                }),
            ),
            (
                b"delete k 0 noreply\r\n",
                req(McRequest::Delete {
                    key: b("k"),
                    noreply: true,
                }),
            ),
            (b"delete k 5\r\n", err(McError::BadFormat)),
            (
                b"touch k 10\r\n",
                req(McRequest::Touch {
                    key: b("k"),
                    exptime: 10,
                    noreply: false,
                }),
            ),
            (b"touch k x\r\n", err(McError::InvalidExptime)),
            (
                b"flush_all\r\n",
                req(McRequest::FlushAll {
                    delay: 0,
                    noreply: false,
                }),
            ),
            (
                b"flush_all 10 noreply\r\n",
                req(McRequest::FlushAll {
                    delay: 10,
                    noreply: true,
                }),
            ),
            (b"flush_all x\r\n", err(McError::BadFormat)),
            (b"version\r\n", req(McRequest::Version)),
            (
                b"verbosity 1 noreply\r\n",
                req(McRequest::Verbosity { noreply: true }),
            ),
            (b"stats\r\n", req(McRequest::Stats { group: None })),
            (
                b"stats settings\r\n",
                req(McRequest::Stats {
                    group: Some(b("settings")),
                }),
            ),
            (b"quit\r\n", req(McRequest::Quit)),
            (b"mn\r\n", req(McRequest::MetaNoop)),
            (b"\r\n", err(McError::Unknown)),
            (b"bogus\r\n", err(McError::Unknown)),
            (b"\x80\x01\x00\x00", Err(McFatal::Binary)),
            (b"get a\x01b\r\n", err(McError::BadFormat)),
        ];
        for (input, want) in cases {
            assert_eq!(one(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn key_length_is_bounded_at_250() {
        let mut d = McDecoder::new(McLimits::default());
        let ok = format!("get {}\r\n", "k".repeat(250));
        let mut buf = BytesMut::from(ok.as_bytes());
        assert!(matches!(d.decode(&mut buf), Ok(Some(McFrame::Request(_)))));
        let long = format!("get {}\r\n", "k".repeat(251));
        let mut buf = BytesMut::from(long.as_bytes());
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(McFrame::Error(McError::BadFormat)))
        );
    }

    #[test]
    fn meta_requests() {
        let mg = one(b"mg foo v t\r\n");
        let Ok(McFrame::Request(McRequest::Meta(m))) = mg else {
            panic!("{mg:?}")
        };
        assert_eq!(
            (m.cmd, &m.key[..], m.flags.value, &m.flags.returns[..]),
            (MetaCmd::Get, &b"foo"[..], true, &b"t"[..])
        );

        let ma = one(b"ma rl:1 v D2 J0 N60 MI\r\n");
        let Ok(McFrame::Request(McRequest::Meta(m))) = ma else {
            panic!("{ma:?}")
        };
        assert_eq!(m.cmd, MetaCmd::Arithmetic);
        assert_eq!(
            (m.flags.delta, m.flags.initial, m.flags.vivify, m.flags.mode),
            (Some(2), Some(0), Some(60), Some(b'I'))
        );

        let ms = one(b"ms k 2 T10 F3 c O99 q\r\nhi\r\n");
        let Ok(McFrame::Request(McRequest::Meta(m))) = ms else {
            panic!("{ms:?}")
        };
        assert_eq!(m.data, Some(b("hi")));
        assert_eq!(
            (m.flags.ttl, m.flags.client_flags, m.flags.quiet),
            (Some(10), Some(3), true)
        );
        assert_eq!(m.flags.returns, b"cO".to_vec());
        assert_eq!(m.flags.opaque, Some(b("99")));

        let b64 = one(b"mg Zm9v b k v\r\n");
        let Ok(McFrame::Request(McRequest::Meta(m))) = b64 else {
            panic!("{b64:?}")
        };
        assert_eq!((&m.key[..], &m.raw_key[..]), (&b"foo"[..], &b"Zm9v"[..]));

        assert_eq!(one(b"mg k v v\r\n"), err(McError::DuplicateFlag));
        assert_eq!(one(b"mg k !\r\n"), err(McError::InvalidFlag));
        assert_eq!(one(b"ma k Dx\r\n"), err(McError::BadToken));
        assert_eq!(one(b"mg\r\n"), err(McError::BadFormat));
        assert_eq!(one(b"mg Zm9 b\r\n"), err(McError::BadBase64));
        assert_eq!(one(b"ms k x\r\n"), err(McError::BadDataChunk));
    }

    #[test]
    fn refused_data_blocks_are_swallowed_and_the_stream_resynchronises() {
        // Too large (cap 16): swallowed even when sent in pieces, then the next command parses.
        let mut d = McDecoder::new(McLimits {
            max_value_len: 16,
            ..McLimits::default()
        });
        let mut buf = BytesMut::from(&b"set k 0 0 20\r\n0123456789"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(McFrame::Request(McRequest::TooLarge {
                cmd: StoreCmd::Set,
                key: b("k"),
                noreply: false
            })))
        );
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"0123456789\r\nget k\r\n");
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(McFrame::Request(McRequest::Get {
                keys: vec![b("k")],
                cas: false
            })))
        );

        // A bad header with a readable length: the data is not executed as a command.
        let frames = decode_all(b"set k x 0 9\r\nflush_all\r\nversion\r\n");
        assert_eq!(
            frames,
            vec![err(McError::BadFormat), req(McRequest::Version)]
        );
        // A bad length: as memcached, the next line is read as a command.
        let frames = decode_all(b"set k 0 0 -1\r\nversion\r\n");
        assert_eq!(
            frames,
            vec![err(McError::BadFormat), req(McRequest::Version)]
        );
        // Meta set over the cap.
        let frames = decode_all(b"ms k 17 T0\r\n01234567890123456\r\nmn\r\n");
        assert_eq!(
            frames,
            vec![err(McError::TooLarge), req(McRequest::MetaNoop)]
        );
    }

    #[test]
    fn half_sent_requests_wait_and_long_lines_are_refused() {
        let mut d = McDecoder::new(McLimits::default());
        let mut buf = BytesMut::from(&b"set k 0 0 3\r\nab"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 15, "nothing consumed for a half request");
        buf.extend_from_slice(b"c\r\nge");
        assert!(matches!(
            d.decode(&mut buf),
            Ok(Some(McFrame::Request(McRequest::Store { .. })))
        ));
        assert_eq!(d.decode(&mut buf), Ok(None));

        let frames = decode_all(&[&[b'x'; 100][..], b"\r\nversion\r\n"].concat());
        assert_eq!(
            frames,
            vec![err(McError::LineTooLong), req(McRequest::Version)]
        );
        // A get line may be longer than other lines (limit 128 in this test).
        let long_get = format!("get {}\r\n", ["k"; 40].join(" "));
        assert!(matches!(
            one(long_get.as_bytes()),
            Ok(McFrame::Request(McRequest::Get { .. }))
        ));
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let frames = decode_all(b"set a 0 0 1\r\n1\r\nincr a 2\r\nget a\r\nmn\r\n");
        assert_eq!(frames.len(), 4);
        assert!(matches!(
            frames[1],
            Ok(McFrame::Request(McRequest::Arith { .. }))
        ));
    }

    #[test]
    fn replies() {
        let cases: Vec<(McReply, &[u8])> = vec![
            (McReply::Status("STORED"), b"STORED\r\n"),
            (McReply::None, b""),
            (McReply::Number(42), b"42\r\n"),
            (
                McReply::Error("CLIENT_ERROR a\r\nb".into()),
                b"CLIENT_ERROR a  b\r\n",
            ),
            (
                McError::TooLarge.into(),
                b"SERVER_ERROR object too large for cache\r\n",
            ),
            (
                McReply::Values(vec![
                    McValue {
                        key: b("a"),
                        flags: 3,
                        data: b("xy"),
                        cas: None,
                    },
                    McValue {
                        key: b("b"),
                        flags: 0,
                        data: b(""),
                        cas: Some(7),
                    },
                ]),
                b"VALUE a 3 2\r\nxy\r\nVALUE b 0 0 7\r\n\r\nEND\r\n",
            ),
            (McReply::Values(vec![]), b"END\r\n"),
            (
                McReply::Stats(vec![("pid".into(), "1".into())]),
                b"STAT pid 1\r\nEND\r\n",
            ),
            (McReply::Version("1.6.21".into()), b"VERSION 1.6.21\r\n"),
            (
                McReply::Meta {
                    code: "HD",
                    flags: vec![],
                    value: None,
                },
                b"HD\r\n",
            ),
            (
                McReply::Meta {
                    code: "EN",
                    flags: vec![b("Oab")],
                    value: None,
                },
                b"EN Oab\r\n",
            ),
            (
                McReply::Meta {
                    code: "VA",
                    flags: vec![b("t-1")],
                    value: Some(b("10")),
                },
                b"VA 2 t-1\r\n10\r\n",
            ),
        ];
        for (reply, want) in cases {
            let mut out = BytesMut::new();
            compose_mc(&reply, &mut out);
            assert_eq!(&out[..], want, "{reply:?}");
        }
    }

    #[test]
    fn base64_round_trips() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\x10"] {
            let e = base64_encode(s);
            assert_eq!(base64_decode(e.as_bytes()).as_deref(), Some(s));
        }
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_decode(b"Zg=="), Some(b"f".to_vec()));
        assert_eq!(base64_decode(b"Z==g"), None);
        assert_eq!(base64_decode(b"Zm9"), None);
    }
}
