//! [`McReply`], what the server answers a memcached request with, and [`compose_mc`], which
//! writes it as memcached's bytes. Apart from the decoder, as `crate::reply` is apart from
//! `crate::frame`: the server builds a reply without knowing how the request was read.

use bytes::{Bytes, BytesMut};
use std::fmt::Write as _;

use super::McError;
use crate::reply::extend_one_line;

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
            extend_one_line(out, s.as_bytes());
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
