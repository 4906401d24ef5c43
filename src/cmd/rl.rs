//! The RL.* family: limit management (RL.LIMIT, RL.TIER) and checks (RL.CHECK, RL.PEEK,
//! RL.RESET, RL.EXPLAIN).
//!
//! Arguments are validated here, once, into the engine's types ([`Scope`], [`Limit`]); the
//! engine never sees a malformed limit. Every command is documented in docs/API.md.

use super::{shorten, unknown_subcommand, Session};
use crate::cmd::table::CmdId;
use crate::persist::{ChangeKind, PersistError, RecordKey};
use crate::server::Shared;
use crate::stats::LocalStats;
use bytes::Bytes;
use ratelimitd_engine::{
    Algorithm, CheckResult, EndpointPattern, Limit, LimitError, Scope, Window, MAX_WINDOWS,
};
use ratelimitd_protocol::parse::{format_period, glob_match, parse_rate};
use ratelimitd_protocol::{Parse, ParseError, Reply};

pub fn execute(
    id: CmdId,
    shared: &Shared,
    _session: &mut Session,
    args: &[&[u8]],
    local: &mut LocalStats,
) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let engine = &shared.engine;
    match id {
        CmdId::RlCheck => {
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
            let result = match (local.now, local.prefetched.take()) {
                (Some(now), Some(key)) => {
                    engine.check_prefetched_at(key, client, endpoint, cost, now)
                }
                (Some(now), None) => engine.check_at(client, endpoint, cost, now),
                (None, _) => engine.check(client, endpoint, cost),
            };
            if result.allowed {
                local.allowed += 1;
            } else {
                local.denied += 1;
                // Which kind of scope denied, for metrics and the log summary (the engine
                // reports it with the result; see src/metrics.rs).
                local.denied_scope[result.scope as usize] += 1;
            }
            Ok(check_reply(&result))
        }
        CmdId::RlPeek => {
            let client = parse.next_bytes()?;
            let endpoint = parse.next_bytes()?;
            Ok(check_reply(&engine.peek(client, endpoint)))
        }
        CmdId::RlReset => {
            let client = parse.next_bytes()?;
            let endpoint = parse.next_bytes()?;
            Ok(Reply::Integer(engine.reset(client, endpoint) as i64))
        }
        CmdId::RlExplain => {
            let client = parse.next_bytes()?;
            let endpoint = parse.next_bytes()?;
            Ok(explain(shared, client, endpoint))
        }
        CmdId::RlLimit => limit(shared, args, &mut parse),
        CmdId::RlTier => tier(shared, args, &mut parse),
        _ => Err(ParseError::Syntax),
    }
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

/// Apply a limits-log record or a config-file limit (`RL.LIMIT SET|DEL ...`,
/// `RL.TIER SET|DEL ...`) through exactly the code that serves the live command, so that what
/// was accepted once is read back the same way.
pub fn replay(shared: &Shared, args: &[&[u8]]) -> Result<(), ParseError> {
    let mut parse = Parse::new(args);
    let name = args.first().map(|a| &a[..]).unwrap_or_default();
    if name.eq_ignore_ascii_case(b"RL.LIMIT") {
        limit(shared, args, &mut parse).map(drop)
    } else if name.eq_ignore_ascii_case(b"RL.TIER") {
        tier(shared, args, &mut parse).map(drop)
    } else {
        Err(ParseError::Invalid(format!(
            "not a limit change: '{}'",
            shorten(name, 64)
        )))
    }
}

/// Apply a limit or tier change: logged durably first (src/persist.rs), then applied and fed to
/// the replication stream inside the same commit, so the log, the replicas and the engine see
/// changes in one order. `noop` says the change would change nothing (a DEL of an absent
/// scope), which is then not logged.
fn change<R>(
    shared: &Shared,
    args: &[&[u8]],
    key: RecordKey,
    kind: ChangeKind,
    noop: impl FnOnce() -> bool,
    apply: impl FnOnce() -> R,
) -> Result<R, ParseError> {
    shared
        .persist
        .commit(args, key, kind, noop, || {
            let out = apply();
            shared.repl.feed_limit(args);
            out
        })
        .map_err(persist_error)
}

/// A change that could not be made durable is refused: `ERR persistence: ...`.
fn persist_error(e: PersistError) -> ParseError {
    ParseError::Invalid(format!("persistence: {e}"))
}

fn limit_error(e: LimitError) -> ParseError {
    ParseError::Invalid(e.to_string())
}

fn pattern(b: &[u8]) -> Result<EndpointPattern, ParseError> {
    EndpointPattern::new(b).map_err(limit_error)
}

/// `DEFAULT | CLIENT <id> [ENDPOINT <p>] | TIER <name> [ENDPOINT <p>] | ENDPOINT <p>`.
fn parse_scope(parse: &mut Parse) -> Result<Scope, ParseError> {
    let word = parse.next_bytes()?;
    let optional_endpoint = |parse: &mut Parse| -> Result<Option<EndpointPattern>, ParseError> {
        if parse.eat_keyword("ENDPOINT") {
            Ok(Some(pattern(parse.next_bytes()?)?))
        } else {
            Ok(None)
        }
    };
    if word.eq_ignore_ascii_case(b"DEFAULT") {
        Ok(Scope::Default)
    } else if word.eq_ignore_ascii_case(b"CLIENT") {
        let id = parse.next_bytes()?.to_vec();
        Ok(Scope::Client {
            id,
            endpoint: optional_endpoint(parse)?,
        })
    } else if word.eq_ignore_ascii_case(b"TIER") {
        let name = parse.next_bytes()?.to_vec();
        Ok(Scope::Tier {
            name,
            endpoint: optional_endpoint(parse)?,
        })
    } else if word.eq_ignore_ascii_case(b"ENDPOINT") {
        Ok(Scope::Endpoint(pattern(parse.next_bytes()?)?))
    } else {
        Err(ParseError::Invalid(format!(
            "unknown scope '{}': expected DEFAULT, CLIENT <id> [ENDPOINT <pattern>], TIER <name> [ENDPOINT <pattern>] or ENDPOINT <pattern>",
            shorten(word, 64)
        )))
    }
}

/// `RATE <n>/<period> [BURST <b>] [RATE ... ]`, at least one window.
/// `RATE <n>/<period> [BURST <b>] [RATE ... ] [ALGO gcra|sliding|fixed]`, at least one window;
/// ALGO may stand anywhere after the scope, once.
fn parse_windows(parse: &mut Parse) -> Result<Limit, ParseError> {
    let mut windows = Vec::new();
    let mut algorithm = None;
    while parse.remaining() > 0 {
        if parse.eat_keyword("ALGO") {
            let name = parse.next_bytes()?;
            if algorithm.is_some() {
                return Err(ParseError::Invalid("ALGO given twice".into()));
            }
            algorithm = Some(Algorithm::from_name(name).ok_or_else(|| {
                ParseError::Invalid(format!(
                    "unknown algorithm '{}': expected gcra, sliding or fixed",
                    shorten(name, 64)
                ))
            })?);
            continue;
        }
        if !parse.eat_keyword("RATE") {
            let word = parse.next_bytes()?;
            return Err(ParseError::Invalid(format!(
                "expected RATE <n>/<period> [BURST <b>], got '{}'",
                shorten(word, 64)
            )));
        }
        let text = parse.next_bytes()?;
        let rate = parse_rate(text).ok_or_else(|| {
            ParseError::Invalid(format!(
                "invalid rate '{}': expected <n>/<period> with period <int>ms|s|m|h|d, e.g. 10/1s",
                shorten(text, 64)
            ))
        })?;
        let burst = if parse.eat_keyword("BURST") {
            parse.next_u64()?
        } else {
            0
        };
        windows.push(Window::new(rate.count, rate.period_ms, burst).map_err(limit_error)?);
        if windows.len() > MAX_WINDOWS {
            return Err(limit_error(LimitError::WindowCount(MAX_WINDOWS)));
        }
    }
    if windows.is_empty() {
        return Err(ParseError::Invalid(
            "a limit needs at least one RATE <n>/<period> [BURST <b>]".into(),
        ));
    }
    Ok(Limit::new(windows)
        .map_err(limit_error)?
        .with_algorithm(algorithm.unwrap_or_default()))
}

/// A limit as the flat list RL.LIMIT SET takes:
/// `RATE 5/1s BURST 0 RATE 1000/1h BURST 0 ALGO gcra`.
fn limit_reply(limit: &Limit) -> Reply {
    let mut out = Vec::with_capacity(limit.windows().len() * 4);
    for w in limit.windows() {
        out.push(Reply::bulk("RATE"));
        out.push(Reply::bulk(format!(
            "{}/{}",
            w.count(),
            format_period(w.period_ms())
        )));
        out.push(Reply::bulk("BURST"));
        out.push(Reply::Integer(w.burst() as i64));
    }
    out.push(Reply::bulk("ALGO"));
    out.push(Reply::bulk(limit.algorithm().name()));
    Reply::Array(out)
}

fn limit(shared: &Shared, args: &[&[u8]], parse: &mut Parse) -> Result<Reply, ParseError> {
    let engine = &shared.engine;
    let sub = parse.next_bytes()?;
    if sub.eq_ignore_ascii_case(b"SET") {
        let scope = parse_scope(parse)?;
        let limit = parse_windows(parse)?;
        let key = RecordKey::Limit(scope.clone());
        change(
            shared,
            args,
            key,
            ChangeKind::Set,
            || false,
            || engine.set_limit(scope, limit),
        )?;
        Ok(Reply::ok())
    } else if sub.eq_ignore_ascii_case(b"GET") {
        let scope = parse_scope(parse)?;
        parse.finish()?;
        Ok(engine
            .get_limit(&scope)
            .map(|l| limit_reply(&l))
            .unwrap_or(Reply::NullArray))
    } else if sub.eq_ignore_ascii_case(b"DEL") {
        let scope = parse_scope(parse)?;
        parse.finish()?;
        let key = RecordKey::Limit(scope.clone());
        let absent = || engine.get_limit(&scope).is_none();
        let deleted = change(shared, args, key, ChangeKind::Del, absent, || {
            engine.del_limit(&scope)
        })?;
        Ok(Reply::Integer(deleted as i64))
    } else if sub.eq_ignore_ascii_case(b"LIST") {
        let mut glob: Option<Bytes> = None;
        let mut count = usize::MAX;
        while let Some(opt) = parse.try_next() {
            if opt.eq_ignore_ascii_case(b"MATCH") {
                glob = Some(Bytes::copy_from_slice(parse.next_bytes()?));
            } else if opt.eq_ignore_ascii_case(b"COUNT") {
                let n = parse.next_u64()?;
                if n == 0 {
                    return Err(ParseError::Syntax);
                }
                count = usize::try_from(n).unwrap_or(usize::MAX);
            } else {
                return Err(ParseError::Syntax);
            }
        }
        let mut out = Vec::new();
        for (scope, limit) in engine.list_limits() {
            if out.len() >= count {
                break;
            }
            let text = scope.to_string();
            if glob.as_ref().is_none_or(|g| glob_match(g, text.as_bytes())) {
                out.push(Reply::Array(vec![Reply::bulk(text), limit_reply(&limit)]));
            }
        }
        Ok(Reply::Array(out))
    } else if sub.eq_ignore_ascii_case(b"HELP") {
        parse.finish()?;
        Ok(super::help_reply(&[
            "RL.LIMIT <subcommand> [<arg> ...]. Subcommands are:",
            "SET <scope> RATE <n>/<period> [BURST <b>] [RATE ...] [ALGO gcra|sliding|fixed]",
            "    Set the limit of a scope: DEFAULT, CLIENT <id>, ENDPOINT <pattern>,",
            "    CLIENT <id> ENDPOINT <pattern>, TIER <name> [ENDPOINT <pattern>].",
            "GET <scope>",
            "    Return the limit of a scope, as SET takes it.",
            "DEL <scope>",
            "    Delete the limit of a scope.",
            "LIST [MATCH <pattern>] [COUNT <n>]",
            "    Return every scope and its limit.",
        ]))
    } else {
        Err(unknown_subcommand(sub, "RL.LIMIT"))
    }
}

fn tier(shared: &Shared, args: &[&[u8]], parse: &mut Parse) -> Result<Reply, ParseError> {
    let engine = &shared.engine;
    let sub = parse.next_bytes()?;
    if sub.eq_ignore_ascii_case(b"SET") {
        let client = parse.next_bytes()?;
        let tier = parse.next_bytes()?;
        parse.finish()?;
        if tier.is_empty() {
            return Err(ParseError::Invalid("tier name must not be empty".into()));
        }
        let key = RecordKey::Tier(client.to_vec());
        change(
            shared,
            args,
            key,
            ChangeKind::Set,
            || false,
            || engine.set_tier(client, tier),
        )?;
        Ok(Reply::ok())
    } else if sub.eq_ignore_ascii_case(b"GET") {
        let client = parse.next_bytes()?;
        parse.finish()?;
        Ok(engine
            .get_tier(client)
            .map(|t| Reply::Bulk(Bytes::from(t)))
            .unwrap_or(Reply::Null))
    } else if sub.eq_ignore_ascii_case(b"DEL") {
        let client = parse.next_bytes()?;
        parse.finish()?;
        let key = RecordKey::Tier(client.to_vec());
        let absent = || engine.get_tier(client).is_none();
        let deleted = change(shared, args, key, ChangeKind::Del, absent, || {
            engine.del_tier(client)
        })?;
        Ok(Reply::Integer(deleted as i64))
    } else if sub.eq_ignore_ascii_case(b"HELP") {
        parse.finish()?;
        Ok(super::help_reply(&[
            "RL.TIER <subcommand> [<arg> ...]. Subcommands are:",
            "SET <client> <tier>",
            "    Put a client in a tier (its TIER limits then apply to it).",
            "GET <client>",
            "    Return the tier of a client.",
            "DEL <client>",
            "    Take a client out of its tier.",
        ]))
    } else {
        Err(unknown_subcommand(sub, "RL.TIER"))
    }
}

/// A map (a flat array in RESP2): scope, tier, and per window its rate, burst, limit, remaining
/// and reset_after_ms.
fn explain(shared: &Shared, client: &[u8], endpoint: &[u8]) -> Reply {
    let e = shared.engine.explain(client, endpoint);
    let windows = e
        .windows
        .iter()
        .map(|w| {
            Reply::Map(vec![
                (
                    Reply::bulk("rate"),
                    Reply::bulk(format!(
                        "{}/{}",
                        w.window.count(),
                        format_period(w.window.period_ms())
                    )),
                ),
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
