//! A cursor over one request's arguments, and the value parsing commands share.
//!
//! Every command parses its arguments through [`Parse`]; the errors it returns carry Redis's
//! wording (`ERR wrong number of arguments for 'x' command`, `ERR value is not an integer or out
//! of range`, `ERR syntax error`), so a client library sees what it would see from Redis.

use bytes::Bytes;

/// Why a command's arguments were refused. `Display` is the full error line, code included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Too few or too many arguments; carries the command name as the client sent it, lowercased.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR syntax error")]
    Syntax,
    /// A message written by the command (without the `ERR ` prefix, which Display adds).
    #[error("ERR {0}")]
    Invalid(String),
}

/// A rate as written in `RATE <n>/<period>`: `n` requests per `period_ms` milliseconds.
/// Only the syntax is checked here (n >= 1 fits u32 is NOT checked); the engine validates
/// ranges when it builds a `Limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub count: u64,
    pub period_ms: u64,
}

/// Cursor over the arguments of one request. `args[0]` (the command name) is skipped.
#[derive(Debug)]
pub struct Parse<'a> {
    name: &'a [u8],
    args: &'a [Bytes],
    pos: usize,
}

impl<'a> Parse<'a> {
    /// A cursor positioned after the command name.
    pub fn new(args: &'a [Bytes]) -> Parse<'a> {
        let _ = args;
        todo!()
    }

    /// The command name, lowercased, for error messages.
    pub fn command_name(&self) -> String {
        todo!()
    }

    /// Arguments not consumed yet.
    pub fn remaining(&self) -> usize {
        todo!()
    }

    /// Next argument, or `WrongArity` if there is none.
    pub fn next_bytes(&mut self) -> Result<Bytes, ParseError> {
        todo!()
    }

    /// Next argument if there is one.
    pub fn try_next(&mut self) -> Option<Bytes> {
        todo!()
    }

    /// Next argument as UTF-8 text (`ERR invalid UTF-8` style `Invalid` error otherwise).
    pub fn next_string(&mut self) -> Result<String, ParseError> {
        todo!()
    }

    /// Next argument as a signed 64-bit decimal integer, exactly as Redis's `string2ll` accepts
    /// (no spaces, no '+', no leading zeros except "0"); `NotInteger` otherwise.
    pub fn next_i64(&mut self) -> Result<i64, ParseError> {
        todo!()
    }

    /// Next argument as a non-negative integer fitting u64; `NotInteger` otherwise.
    pub fn next_u64(&mut self) -> Result<u64, ParseError> {
        todo!()
    }

    /// True (and consumed) if the next argument equals `word`, ASCII case-insensitively.
    pub fn eat_keyword(&mut self, word: &str) -> bool {
        let _ = word;
        todo!()
    }

    /// Error with `WrongArity` unless every argument was consumed.
    pub fn finish(&self) -> Result<(), ParseError> {
        todo!()
    }

    /// The `WrongArity` error for this command (for commands that check arity themselves).
    pub fn arity_error(&self) -> ParseError {
        todo!()
    }
}

/// Parse an integer the way Redis's `string2ll` does: optional '-', digits, no leading zeros
/// (except "0" itself), no spaces or '+', within i64.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    let _ = b;
    todo!()
}

/// Parse `<n>/<period>` where period is `<int>ms|s|m|h|d` (unit lowercase or uppercase), e.g.
/// `5/1s`, `1000/1h`, `10/500ms`. Returns `None` on any syntax error or arithmetic overflow.
pub fn parse_rate(b: &[u8]) -> Option<RateSpec> {
    let _ = b;
    todo!()
}

/// Format a period in milliseconds in the largest exact unit: 1000 -> "1s", 90000 -> "90s",
/// 3_600_000 -> "1h", 1500 -> "1500ms". Inverse of the period part of [`parse_rate`].
pub fn format_period(period_ms: u64) -> String {
    let _ = period_ms;
    todo!()
}

/// Redis-style glob match (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\` escape), as used by
/// `RL.LIMIT LIST MATCH` (and later KEYS/SCAN).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let _ = (pattern, text);
    todo!()
}
