//! The rate-limit checks: RL.CHECK, RL.PEEK, RL.RESET and RL.EXPLAIN. Limit management
//! (RL.LIMIT, RL.TIER) is src/cmd/limits.rs. Every command is documented in docs/API.md.

use super::spec::Ctx;
use crate::limit_args::rate_text;
use crate::state::Shared;
use bytes::Bytes;
use ratelimitd_engine::CheckResult;
use ratelimitd_protocol::{Parse, ParseError, Reply};

/// RL.CHECK client endpoint [COST n]: check and consume.
pub fn check(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let client = parse.next_bytes()?;
    let endpoint = parse.next_bytes()?;
    let mut cost = 1;
    if let Some(opt) = parse.try_next() {
        if !opt.eq_ignore_ascii_case(b"COST") {
            return Err(ParseError::Syntax);
        }
        cost = parse.next_u64()?;
        parse.finish().map_err(|_| ParseError::Syntax)?;
    }
    let engine = &ctx.shared.engine;
    let result = match (ctx.now, ctx.prefetched.take()) {
        (Some(now), Some(key)) => engine.check_prefetched_at(key, client, endpoint, cost, now),
        (Some(now), None) => engine.check_at(client, endpoint, cost, now),
        (None, _) => engine.check(client, endpoint, cost),
    };
    ctx.counters.check(result.allowed, result.scope);
    Ok(check_reply(&result))
}

/// RL.PEEK client endpoint: what RL.CHECK would answer, consuming nothing.
pub fn peek(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let client = parse.next_bytes()?;
    let endpoint = parse.next_bytes()?;
    Ok(check_reply(&ctx.shared.engine.peek(client, endpoint)))
}

/// RL.RESET client endpoint: the full allowance back; 1 if there was state to drop.
pub fn reset(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let client = parse.next_bytes()?;
    let endpoint = parse.next_bytes()?;
    let dropped = ctx.shared.engine.reset(client, endpoint);
    ctx.counters.changed(u64::from(dropped));
    Ok(Reply::Integer(dropped as i64))
}

/// RL.EXPLAIN client endpoint: which limit applies and its windows' state.
pub fn explain(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let client = parse.next_bytes()?;
    let endpoint = parse.next_bytes()?;
    Ok(explanation(ctx.shared, client, endpoint))
}

/// `[allowed, limit, remaining, retry_after_ms, reset_after_ms]`.
fn check_reply(r: &CheckResult) -> Reply {
    Reply::ints(&[
        r.allowed as i64,
        r.limit,
        r.remaining,
        r.retry_after_ms,
        r.reset_after_ms,
    ])
}

/// A map (a flat array in RESP2): scope, tier, and per window its rate, burst, limit, remaining
/// and reset_after_ms.
fn explanation(shared: &Shared, client: &[u8], endpoint: &[u8]) -> Reply {
    let e = shared.engine.explain(client, endpoint);
    let windows = e
        .windows
        .iter()
        .map(|w| {
            Reply::Map(vec![
                (Reply::bulk("rate"), Reply::bulk(rate_text(&w.window))),
                (
                    Reply::bulk("burst"),
                    Reply::Integer(w.window.burst() as i64),
                ),
                (
                    Reply::bulk("limit"),
                    Reply::Integer(w.window.capacity() as i64),
                ),
                (Reply::bulk("remaining"), Reply::Integer(w.remaining)),
                (
                    Reply::bulk("reset_after_ms"),
                    Reply::Integer(w.reset_after_ms),
                ),
            ])
        })
        .collect();
    Reply::Map(vec![
        (
            Reply::bulk("scope"),
            e.scope
                .map(|s| Reply::bulk(s.to_string()))
                .unwrap_or(Reply::Null),
        ),
        (
            Reply::bulk("tier"),
            e.tier
                .map(|t| Reply::Bulk(Bytes::from(t)))
                .unwrap_or(Reply::Null),
        ),
        (Reply::bulk("windows"), Reply::Array(windows)),
    ])
}
