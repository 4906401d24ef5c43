//! A cursor over one request's arguments, and the value parsing commands share.
//!
//! Every command parses its arguments through [`Parse`]; the errors it returns carry Redis's
//! wording (`ERR wrong number of arguments for 'x' command`, `ERR value is not an integer or out
//! of range`, `ERR syntax error`), so a client library sees what it would see from Redis.

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
    args: &'a [&'a [u8]],
    pos: usize,
}

impl<'a> Parse<'a> {
    /// A cursor positioned after the command name.
    pub fn new(args: &'a [&'a [u8]]) -> Parse<'a> {
        Parse {
            name: args.first().copied().unwrap_or(&[]),
            args,
            pos: 1,
        }
    }

    /// The command name, lowercased, for error messages.
    pub fn command_name(&self) -> String {
        String::from_utf8_lossy(self.name).to_lowercase()
    }

    /// Arguments not consumed yet.
    pub fn remaining(&self) -> usize {
        self.args.len().saturating_sub(self.pos)
    }

    /// Next argument, or `WrongArity` if there is none. Borrowed: a command that keeps an
    /// argument beyond the request copies it.
    pub fn next_bytes(&mut self) -> Result<&'a [u8], ParseError> {
        self.try_next().ok_or_else(|| self.arity_error())
    }

    /// Next argument if there is one.
    pub fn try_next(&mut self) -> Option<&'a [u8]> {
        let arg = *self.args.get(self.pos)?;
        self.pos += 1;
        Some(arg)
    }

    /// Next argument as UTF-8 text (`ERR invalid UTF-8` style `Invalid` error otherwise).
    pub fn next_string(&mut self) -> Result<String, ParseError> {
        let arg = self.next_bytes()?;
        String::from_utf8(arg.to_vec())
            .map_err(|_| ParseError::Invalid("invalid UTF-8 in argument".to_string()))
    }

    /// Next argument as a signed 64-bit decimal integer, exactly as Redis's `string2ll` accepts
    /// (no spaces, no '+', no leading zeros except "0"); `NotInteger` otherwise.
    pub fn next_i64(&mut self) -> Result<i64, ParseError> {
        parse_i64(self.next_bytes()?).ok_or(ParseError::NotInteger)
    }

    /// Next argument as a non-negative integer fitting u64; `NotInteger` otherwise.
    pub fn next_u64(&mut self) -> Result<u64, ParseError> {
        parse_u64(self.next_bytes()?).ok_or(ParseError::NotInteger)
    }

    /// True (and consumed) if the next argument equals `word`, ASCII case-insensitively.
    pub fn eat_keyword(&mut self, word: &str) -> bool {
        match self.args.get(self.pos) {
            Some(arg) if arg.eq_ignore_ascii_case(word.as_bytes()) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// Error with `WrongArity` unless every argument was consumed.
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.arity_error())
        }
    }

    /// The `WrongArity` error for this command (for commands that check arity themselves).
    pub fn arity_error(&self) -> ParseError {
        ParseError::WrongArity(self.command_name())
    }
}

/// Parse an integer the way Redis's `string2ll` does: optional '-', digits, no leading zeros
/// (except "0" itself), no spaces or '+', within i64.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    // "0" is the only number allowed to start with 0; "-0" and "-" are refused, as in Redis.
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN, whose magnitude does not fit i64, parses too.
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(acc)
    } else {
        acc.checked_neg()
    }
}

/// Parse a non-empty run of ASCII digits that fits u64, with any number of leading zeros.
///
/// The one unsigned decimal reading of the crate, for both protocols: [`Parse::next_u64`], the
/// numbers of a rate, and every numeric field of the memcached decoder. It is the digit core of
/// C's `strtoull`, which is what both reference servers fall back to: memcached reads its
/// fields with `strtoull`/`strtol`, and Redis's `string2ull` with `strtoull` once `string2ll`
/// (no leading zeros) has refused; so `000…001` is 1 whatever its length. A sign or blanks are
/// refused here; [`crate::memcache::parse_number`] adds the blanks and `+` that memcached's
/// `incr`/`decr` skip. Public so that the HTTP check reads its `cost` exactly as RL.CHECK
/// reads `COST`.
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// Period units from largest to smallest, with their length in milliseconds. Shared by
/// [`parse_rate`] and [`format_period`] so the two stay inverse of each other.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parse `<n>/<period>` where period is `<int>ms|s|m|h|d` (unit lowercase or uppercase), e.g.
/// `5/1s`, `1000/1h`, `10/500ms`. Returns `None` on any syntax error or arithmetic overflow.
pub fn parse_rate(b: &[u8]) -> Option<RateSpec> {
    let slash = b.iter().position(|&c| c == b'/')?;
    let count = parse_u64(&b[..slash])?;
    let period = &b[slash + 1..];
    let digits_end = period
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(period.len());
    let (number, unit) = period.split_at(digits_end);
    let number = parse_u64(number)?;
    let (_, unit_ms) = UNITS
        .iter()
        .find(|(name, _)| unit.eq_ignore_ascii_case(name.as_bytes()))?;
    Some(RateSpec {
        count,
        period_ms: number.checked_mul(*unit_ms)?,
    })
}

/// Format a period in milliseconds in the largest exact unit: 1000 -> "1s", 90000 -> "90s",
/// 3_600_000 -> "1h", 1500 -> "1500ms". Inverse of the period part of [`parse_rate`].
pub fn format_period(period_ms: u64) -> String {
    if period_ms == 0 {
        return "0ms".to_string();
    }
    for (name, unit_ms) in UNITS {
        if period_ms.checked_rem(unit_ms) == Some(0) {
            return format!("{}{}", period_ms / unit_ms, name);
        }
    }
    // Unreachable in practice: every number is a whole number of milliseconds.
    format!("{period_ms}ms")
}

/// Redis-style glob match (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\` escape), as used by
/// `RL.LIMIT LIST MATCH`, `CONFIG GET` and the pub/sub patterns.
///
/// Semantics follow Redis's `stringmatchlen` (case-sensitive; a `[` class without its `]` runs
/// to the end of the pattern; reversed ranges like `[z-a]` match too). Unlike the recursive C
/// code, this is iterative with a single backtrack point for the last `*`, so it runs in
/// O(pattern × text) time and constant stack whatever the pattern.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the most recent `*`: (pattern index after the star, text index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                // Collapse runs of stars; a trailing star matches everything left.
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                star = Some((p, t));
                continue;
            }
            if t < text.len() {
                if let Some(next_p) = match_one(pattern, p, text[t]) {
                    p = next_p;
                    t += 1;
                    continue;
                }
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last star swallow one more byte, if there is one.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// Match one text byte against the single pattern element at `p` (not a `*`). Returns the
/// index just past that element on a match.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            loop {
                match pattern.get(i) {
                    // Unterminated class: Redis treats the end of the pattern as its end.
                    None => break,
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < pattern.len() => {
                        if pattern[i + 1] == c {
                            matched = true;
                        }
                        i += 2;
                    }
                    Some(&lo) if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                        let hi = pattern[i + 2];
                        let (lo, hi) = if lo > hi { (hi, lo) } else { (lo, hi) };
                        if (lo..=hi).contains(&c) {
                            matched = true;
                        }
                        i += 3;
                    }
                    Some(&other) => {
                        if other == c {
                            matched = true;
                        }
                        i += 1;
                    }
                }
            }
            (matched != negate).then_some(i)
        }
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        other => (other == c).then_some(p + 1),
    }
}
