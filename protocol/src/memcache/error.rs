//! The two ways a memcached request fails: [`McError`], a line the server answers before it
//! reads the next request, and [`McFatal`], bytes after which the stream cannot be read as
//! memcached text. `Display` is the exact line memcached writes, so the server sends it as is.

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
