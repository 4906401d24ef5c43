//! CL.THROTTLE, a drop-in for the redis-cell module: same arguments, same reply
//! `[limited, max_burst+1, remaining, retry_after_s, reset_after_s]`, same arithmetic and the
//! same `Cell error: ...` texts. The engine holds the arithmetic; this file only adapts.

use crate::server::Shared;
use crate::stats::LocalStats;
use ratelimitd_engine::parse_throttle_args;
use ratelimitd_protocol::{ParseError, Reply};

pub fn execute(
    shared: &Shared,
    args: &[&[u8]],
    local: &mut LocalStats,
) -> Result<Reply, ParseError> {
    let (key, throttle) = match parse_throttle_args(&args[1..]) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Reply::error(e.to_string())),
    };
    let result = match (local.now, local.prefetched.take()) {
        (Some(now), Some(hint)) => shared
            .engine
            .throttle_prefetched_at(hint, key, throttle, now),
        (Some(now), None) => shared.engine.throttle_at(key, throttle, now),
        (None, _) => shared.engine.throttle(key, throttle),
    };
    match result {
        Ok(r) => {
            if r.limited {
                local.denied += 1;
            } else {
                local.allowed += 1;
            }
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
