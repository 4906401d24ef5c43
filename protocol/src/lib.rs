//! # ratelimitd-protocol
//!
//! Pure protocol code: bytes in, typed values out, and back. Nothing here touches a socket or
//! knows how rate-limit state is stored, so every function can be unit-tested and fuzzed.
//!
//! ## Layout
//! - [`frame`]: request framing. A [`frame::Decoder`] takes the connection's read buffer and
//!   yields whole requests (RESP arrays of bulk strings, or inline commands). It first checks that
//!   a whole frame is buffered and that every declared size is within [`Limits`], and only then
//!   decodes it, so a half-sent frame costs no allocation and an oversized one is refused before
//!   it is buffered.
//! - [`reply`]: the [`Reply`] value a command produces, and [`reply::compose`], which writes it as
//!   RESP2 or RESP3 bytes.
//! - [`memcache`]: the memcached text and meta protocols, for the `--memcached-port` listener:
//!   [`memcache::McDecoder`] (bounded, resynchronises after a refused data block the way
//!   memcached does) and [`memcache::compose_mc`].
//! - [`parse`]: a cursor over one request's arguments ([`Parse`]), with the integer, keyword
//!   and rate (`<n>/<period>`) parsing the commands share, and [`ParseError`] whose messages are
//!   Redis's own wording.
//!
//! Requests are cut into arguments by [`frame::Decoder::decode`] from the positions its bounded
//! scan finds; the `redis-protocol` crate, which did the second parse at first, is now the
//! independent oracle of a differential test (`tests/oracle.rs`) — the faster path replaced it
//! behind the same function, as planned, once a benchmark showed it cost more than a check.
//! Replies are written directly by [`reply::compose`]: going through `redis-protocol`'s
//! encoders would cost a frame tree per reply, and Redis's double formatting is not theirs.
//!
//! ## Fuzzing
//! [`frame::Decoder::decode`] accepts any bytes without panicking (errors are values), so a fuzz
//! target is just: append the input to a `BytesMut`, possibly in chunks, and call `decode` until
//! it returns `Ok(None)` or `Err`. [`parse::parse_rate`], [`parse::parse_i64`] and
//! [`parse::glob_match`] are total functions over bytes too.

pub mod args;
pub mod frame;
pub mod memcache;
pub mod parse;
pub mod reply;

pub use args::Args;
pub use frame::{Decoder, FrameError, Limits, RejectReason, Request};
pub use parse::{Parse, ParseError};
pub use reply::{compose, ProtoVersion, Reply};
