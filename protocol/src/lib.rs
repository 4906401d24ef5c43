//! # ratelimitd-protocol
//!
//! Pure protocol code: bytes in, typed values out, and back. Nothing here touches a socket or
//! knows how rate-limit state is stored, so every function can be unit-tested and fuzzed.
//!
//! ## Layout
//! - [`frame`]: RESP request framing. A [`frame::Decoder`] takes the connection's read buffer and
//!   yields whole requests (RESP arrays of bulk strings, or inline commands). It first checks that
//!   a whole frame is buffered and that every declared size is within [`Limits`], and only then
//!   decodes it, so a half-sent frame costs no allocation and an oversized one is refused before
//!   it is buffered.
//! - [`args`]: [`Args`], one request's arguments copied into a single buffer the decoder
//!   reuses; commands read them as plain `&[u8]` slices, with no reference count per argument.
//! - [`parse`]: a cursor over one request's arguments ([`Parse`]) and [`ParseError`], whose
//!   messages are Redis's own wording; integer readings (Redis's `string2ll` as
//!   [`parse::parse_i64`], and [`parse::parse_u64`], the one unsigned decimal reading, which the
//!   memcached decoder uses too); rates (`<n>/<period>`) and their formatting; Redis's glob
//!   matching.
//! - [`reply`]: the [`Reply`] value a command produces, and [`reply::compose`], which writes it as
//!   RESP2 or RESP3 bytes (doubles formatted as Redis formats them).
//! - [`memcache`]: the memcached text and meta protocols, for the `--memcached-port` listener:
//!   [`memcache::McDecoder`] (bounded, resynchronises after a refused data block the way
//!   memcached does), the request and reply types, and [`memcache::compose_mc`]. Its own header
//!   lists its files.
//!
//! Requests are cut into arguments by [`frame::Decoder::decode`] from the positions its bounded
//! scan finds, with no second parse: the `redis-protocol` crate's would cost more than a
//! rate-limit check (see `frame`'s header). That crate is the independent oracle of a
//! differential test instead (`tests/oracle.rs`). Replies are written directly by
//! [`reply::compose`]: going through `redis-protocol`'s encoders would cost a frame tree per
//! reply, and Redis's double formatting is not theirs.
//!
//! ## Fuzzing
//! [`frame::Decoder::decode`] and [`memcache::McDecoder::decode`] accept any bytes without
//! panicking (errors are values), so a fuzz target is just: append the input to a `BytesMut`,
//! possibly in chunks, and call `decode` until it returns `Ok(None)` or `Err`. The targets are
//! in `fuzz/`; `tests/fuzz_smoke.rs` is their stable stand-in. [`parse::parse_rate`],
//! [`parse::parse_i64`], [`parse::parse_u64`] and [`parse::glob_match`] are total functions
//! over bytes too.

pub mod args;
pub mod frame;
pub mod memcache;
pub mod parse;
pub mod reply;

pub use args::Args;
pub use frame::{
    Decoder, FrameError, Limits, RejectReason, Request, UNAUTHENTICATED_ARRAY_LEN,
    UNAUTHENTICATED_BULK_LEN,
};
pub use parse::{Parse, ParseError};
pub use reply::{compose, ProtoVersion, Reply};
