//! What a decoded memcached request is: a text-protocol command ([`McRequest`]) or a meta
//! command ([`MetaRequest`]), as [`McDecoder`](super::McDecoder) hands it to the server. Types
//! only, kept apart from the decoder: the server matches on them and needs nothing of the
//! parser.

use bytes::Bytes;

use super::MetaFlags;

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
