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
}

/// Append `reply`, encoded for `version`, to `out`.
pub fn compose(reply: &Reply, version: ProtoVersion, out: &mut BytesMut) {
    let _ = (reply, version, out);
    todo!()
}
