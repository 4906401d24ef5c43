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
//!
//! ## Layout
//! - `request.rs`: what a decoded request is ([`McRequest`], [`MetaRequest`], [`StoreCmd`],
//!   [`MetaCmd`]).
//! - `decode.rs`: [`McDecoder`] and its [`McLimits`]: lines, tokens, each command's fields,
//!   data blocks, and the skipping of what a refused request leaves behind.
//! - `meta.rs`: the meta commands' flags ([`MetaFlags`]) and how they are read.
//! - `number.rs`: numbers as memcached reads them ([`parse_number`] for `incr`/`decr`, and the
//!   ranges of flags and times), on top of the crate's one [`parse_u64`].
//! - `base64.rs`: the key encoding of the meta `b` flag.
//! - `error.rs`: [`McError`] (answer a line, carry on) and [`McFatal`] (answer, then close).
//! - `reply.rs`: [`McReply`] and [`compose_mc`], which writes it.
//! - `tests/`: the decoder's and composer's tests by topic (text commands, meta commands,
//!   resynchronisation, replies); the small pure functions carry their own.

mod base64;
mod decode;
mod error;
mod meta;
mod number;
mod reply;
mod request;
#[cfg(test)]
mod tests;

pub use base64::{base64_decode, base64_encode};
pub use decode::{valid_key, McDecoder, McFrame, McLimits};
pub use error::{McError, McFatal};
pub use meta::MetaFlags;
pub use number::parse_number;
pub use reply::{compose_mc, McReply, McValue};
pub use request::{McRequest, MetaCmd, MetaRequest, StoreCmd};

/// The digits of every unsigned field (flags, exptime, lengths, cas, meta flags) are read by
/// the crate's one [`parse::parse_u64`](crate::parse::parse_u64), re-exported here.
pub use crate::parse::parse_u64;
