//! [`McDecoder`]: the connection's read buffer in, one whole request out, within [`McLimits`].
//! It finds the line, splits it into tokens, reads each command's fields, waits for a storage
//! command's data block, and skips what a refused request leaves behind (the rules it follows
//! are in the header of `memcache/mod.rs`). No I/O, and no input makes it panic or buffer
//! past its limits, so the fuzz targets call it directly.

use bytes::{Buf, Bytes, BytesMut};

use super::base64::base64_decode;
use super::meta::parse_meta_flags;
use super::number::{parse_i32, parse_number, parse_u32};
use super::{parse_u64, McError, McFatal, McRequest, MetaCmd, MetaRequest, StoreCmd};

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
