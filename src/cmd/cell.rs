//! CL.THROTTLE, a drop-in for the redis-cell module: same arguments, same reply
//! `[limited, max_burst+1, remaining, retry_after_s, reset_after_s]`, same arithmetic and the
//! same `Cell error: ...` texts. The engine holds the arithmetic; this file only adapts.

use super::spec::Ctx;
use ratelimitd_engine::parse_throttle_args;
use ratelimitd_protocol::{ParseError, Reply};

/// CL.THROTTLE key max_burst count period [quantity].
pub fn throttle(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let (key, throttle) = match parse_throttle_args(&args[1..]) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Reply::error(e.to_string())),
    };
    let engine = &ctx.shared.engine;
    let result = match (ctx.now, ctx.prefetched.take()) {
        (Some(now), Some(hint)) => engine.throttle_prefetched_at(hint, key, throttle, now),
        (Some(now), None) => engine.throttle_at(key, throttle, now),
        (None, _) => engine.throttle(key, throttle),
    };
    match result {
        Ok(r) => {
            ctx.counters.throttle(!r.limited);
            Ok(Reply::ints(&[
                r.limited as i64,
                r.limit,
                r.remaining,
                r.retry_after_s,
                r.reset_after_s,
            ]))
        }
        Err(e) => Ok(Reply::error(e.to_string())),
    }
}
