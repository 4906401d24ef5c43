//! Limit management: RL.LIMIT (SET, GET, DEL, LIST, HELP) and RL.TIER (SET, GET, DEL, HELP).
//!
//! Arguments are validated here, once, into the engine's types ([`Scope`], [`Limit`]); the
//! engine never sees a malformed limit. A change (SET, DEL) is a [`ChangeHandler`]: it needs
//! only the shared state, so the limits log at start, the config file's tables and a
//! primary's replication stream apply it through the very code that serves the live command
//! (see `dispatch::replay`). Every command is documented in docs/API.md.

use super::durable::change;
use super::reply::help_reply;
use super::spec::sub_args;
use crate::limit_args::rate_text;
use crate::persist::{ChangeKind, RecordKey};
use crate::state::Shared;
use crate::text::shorten;
use bytes::Bytes;
use ratelimitd_engine::{
    Algorithm, EndpointPattern, Limit, LimitError, Scope, Window, MAX_WINDOWS,
};
use ratelimitd_protocol::parse::{glob_match, parse_rate};
use ratelimitd_protocol::{Parse, ParseError, Reply};

/// RL.LIMIT SET scope RATE n/period [BURST b] ... [ALGO a].
pub fn limit_set(shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let (scope, limit) = parse_limit_set(args)?;
    let key = RecordKey::Limit(scope.clone());
    change(
        shared,
        args,
        key,
        ChangeKind::Set,
        || false,
        || shared.engine.set_limit(scope, limit),
    )?;
    Ok(Reply::ok())
}

/// RL.LIMIT DEL scope: 1 if there was such a limit.
pub fn limit_del(shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let scope = parse_scope(&mut parse)?;
    parse.finish()?;
    let engine = &shared.engine;
    let key = RecordKey::Limit(scope.clone());
    let absent = || engine.get_limit(&scope).is_none();
    let deleted = change(shared, args, key, ChangeKind::Del, absent, || {
        engine.del_limit(&scope)
    })?;
    Ok(Reply::Integer(deleted as i64))
}

/// RL.LIMIT GET scope: the limit as SET takes it, or a null array.
pub fn limit_get(ctx: &mut super::spec::Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let scope = parse_scope(&mut parse)?;
    parse.finish()?;
    Ok(ctx
        .shared
        .engine
        .get_limit(&scope)
        .map(|l| limit_reply(&l))
        .unwrap_or(Reply::NullArray))
}

/// RL.LIMIT LIST [MATCH pattern] [COUNT n]: every scope and its limit.
pub fn limit_list(ctx: &mut super::spec::Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
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
    for (scope, limit) in ctx.shared.engine.list_limits() {
        if out.len() >= count {
            break;
        }
        let text = scope.to_string();
        if glob.as_ref().is_none_or(|g| glob_match(g, text.as_bytes())) {
            out.push(Reply::Array(vec![Reply::bulk(text), limit_reply(&limit)]));
        }
    }
    Ok(Reply::Array(out))
}

/// RL.LIMIT HELP.
pub fn limit_help(_: &mut super::spec::Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
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
}

/// `RL.LIMIT SET ...` parsed and validated, nothing applied: what [`limit_set`] applies, and
/// what a replica checks a full sync's limits with before it changes any.
pub fn parse_limit_set(args: &[&[u8]]) -> Result<(Scope, Limit), ParseError> {
    let mut parse = sub_args(args);
    let scope = parse_scope(&mut parse)?;
    let limit = parse_windows(&mut parse)?;
    Ok((scope, limit))
}

/// `RL.TIER SET client tier` checked, nothing applied: the client and the tier.
pub fn parse_tier_set<'a>(args: &'a [&'a [u8]]) -> Result<(&'a [u8], &'a [u8]), ParseError> {
    let mut parse = sub_args(args);
    let client = parse.next_bytes()?;
    let tier = parse.next_bytes()?;
    parse.finish()?;
    if tier.is_empty() {
        return Err(ParseError::Invalid("tier name must not be empty".into()));
    }
    Ok((client, tier))
}

/// RL.TIER SET client tier.
pub fn tier_set(shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let (client, tier) = parse_tier_set(args)?;
    let key = RecordKey::Tier(client.to_vec());
    change(
        shared,
        args,
        key,
        ChangeKind::Set,
        || false,
        || shared.engine.set_tier(client, tier),
    )?;
    Ok(Reply::ok())
}

/// RL.TIER DEL client: 1 if the client had a tier.
pub fn tier_del(shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let client = parse.next_bytes()?;
    parse.finish()?;
    let engine = &shared.engine;
    let key = RecordKey::Tier(client.to_vec());
    let absent = || engine.get_tier(client).is_none();
    let deleted = change(shared, args, key, ChangeKind::Del, absent, || {
        engine.del_tier(client)
    })?;
    Ok(Reply::Integer(deleted as i64))
}

/// RL.TIER GET client: the client's tier, or null.
pub fn tier_get(ctx: &mut super::spec::Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let client = parse.next_bytes()?;
    parse.finish()?;
    Ok(ctx
        .shared
        .engine
        .get_tier(client)
        .map(|t| Reply::Bulk(Bytes::from(t)))
        .unwrap_or(Reply::Null))
}

/// RL.TIER HELP.
pub fn tier_help(_: &mut super::spec::Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
        "RL.TIER <subcommand> [<arg> ...]. Subcommands are:",
        "SET <client> <tier>",
        "    Put a client in a tier (its TIER limits then apply to it).",
        "GET <client>",
        "    Return the tier of a client.",
        "DEL <client>",
        "    Take a client out of its tier.",
    ]))
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
        out.push(Reply::bulk(rate_text(w)));
        out.push(Reply::bulk("BURST"));
        out.push(Reply::Integer(w.burst() as i64));
    }
    out.push(Reply::bulk("ALGO"));
    out.push(Reply::bulk(limit.algorithm().name()));
    Reply::Array(out)
}
