//! Request framing: turning the connection's read buffer into whole requests.
//!
//! Two steps, as in mini-redis: [`Decoder::decode`] first scans the headers in the buffer to learn
//! whether a whole frame is there and whether every declared size is within [`Limits`]; only a
//! complete, acceptable frame is then decoded. Nothing is allocated for a half frame.
//!
//! An oversized bulk string or array is not fatal: the decoder answers
//! [`Request::Rejected`] at once (so the error reply keeps its place in a pipeline), then
//! silently discards the rest of that request's bytes as they arrive, and the connection carries
//! on. Bytes that are not RESP at all (a bad length, a missing CRLF) are a [`FrameError`]: the
//! stream cannot be resynchronised, so the server replies `-ERR Protocol error: ...` and closes,
//! as Redis does.

use bytes::{Bytes, BytesMut};

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
    /// A command and its arguments (`args[0]` is the command name, never empty).
    Command(Vec<Bytes>),
    /// A request refused for its size; reply with this error and carry on. The decoder discards
    /// the rest of the request's bytes on later calls.
    Rejected(RejectReason),
}

/// Why a request was refused without closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("ERR Protocol error: bulk string length {0} exceeds the limit of {1} bytes")]
    BulkTooLong(u64, usize),
    #[error("ERR Protocol error: array of {0} elements exceeds the limit of {1}")]
    ArrayTooLong(u64, usize),
    #[error("ERR Protocol error: request of more than {0} bytes")]
    RequestTooLong(usize),
    #[error("ERR Protocol error: too big inline request")]
    InlineTooLong,
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// Bytes that are not a RESP request. The stream cannot be resynchronised: reply
/// `-{self}` and close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("ERR Protocol error: {0}")]
    Other(String),
}

/// Stateful request decoder for one connection.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    // Implementation detail: the state of a rejected request whose bytes are still being
    // discarded (elements left, bytes left in the current one).
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        let _ = limits;
        todo!()
    }

    /// Decode the next request at the front of `buf`, removing its bytes from `buf`.
    ///
    /// `Ok(None)`: more bytes are needed (a half frame; `buf` may have been partly consumed by
    /// discarding a rejected request). Empty inline lines are skipped, as Redis does.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        let _ = buf;
        todo!()
    }
}
