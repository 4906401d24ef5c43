//! Whole-keyspace commands: DBSIZE, FLUSHALL / FLUSHDB, and TIME.

use super::spec::Ctx;
use ratelimitd_protocol::{Parse, ParseError, Reply};

/// DBSIZE: live rate-limit keys.
pub fn dbsize(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Integer(ctx.shared.engine.key_count() as i64))
}

/// FLUSHALL / FLUSHDB [ASYNC|SYNC]: drop all rate state (limits and tiers are kept). ASYNC
/// and SYNC are accepted; dropping rate state is fast either way.
pub fn flush(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    if let Some(mode) = parse.try_next() {
        if !(mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC")) {
            return Err(ParseError::Syntax);
        }
    }
    parse.finish().map_err(|_| ParseError::Syntax)?;
    ctx.shared.engine.flush_state();
    ctx.counters.changed(1);
    Ok(Reply::ok())
}

/// TIME: the server's clock as [seconds, microseconds].
pub fn time(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let now = ctx.shared.engine.now();
    Ok(Reply::Array(vec![
        Reply::bulk((now / 1_000_000_000).to_string()),
        Reply::bulk((now % 1_000_000_000 / 1_000).to_string()),
    ]))
}
