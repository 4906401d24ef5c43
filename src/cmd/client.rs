//! CLIENT and its subcommands: what client libraries send on connect (SETNAME, SETINFO),
//! what operators inspect (LIST, INFO) and what Sentinel sends in a failover (KILL).

use super::connection::{set_name, validate_name};
use super::reply::{help_reply, text_reply};
use super::spec::{sub_args, Ctx};
use crate::text::shorten;
use ratelimitd_protocol::{ParseError, Reply};
use std::sync::atomic::Ordering;

/// CLIENT SETNAME name.
pub fn setname(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let name = sub_args(args).next_bytes()?;
    validate_name(name)?;
    set_name(ctx.session, name);
    Ok(Reply::ok())
}

/// CLIENT GETNAME.
pub fn getname(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let name = ctx.session.handle.name.lock().ok().and_then(|n| n.clone());
    Ok(name.map(Reply::Bulk).unwrap_or(Reply::Null))
}

/// CLIENT ID.
pub fn id(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Integer(ctx.session.handle.id as i64))
}

/// CLIENT INFO.
pub fn info(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(text_reply(format!("{}\n", ctx.session.handle.describe())))
}

/// CLIENT LIST [TYPE normal] [ID id ...].
pub fn list(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let mut ids: Option<Vec<u64>> = None;
    while let Some(opt) = parse.try_next() {
        if opt.eq_ignore_ascii_case(b"TYPE") {
            let t = parse.next_bytes()?;
            if !t.eq_ignore_ascii_case(b"normal") {
                let known = [&b"master"[..], b"replica", b"slave", b"pubsub"];
                if known.iter().any(|k| t.eq_ignore_ascii_case(k)) {
                    return Ok(text_reply(String::new()));
                }
                return Err(ParseError::Invalid(format!(
                    "Unknown client type '{}'",
                    shorten(t, 64)
                )));
            }
        } else if opt.eq_ignore_ascii_case(b"ID") {
            let mut list = Vec::new();
            while parse.remaining() > 0 {
                list.push(
                    parse
                        .next_u64()
                        .map_err(|_| ParseError::Invalid("Invalid client ID".into()))?,
                );
            }
            ids = Some(list);
        } else {
            return Err(ParseError::Syntax);
        }
    }
    let mut out = String::new();
    for c in ctx.shared.clients.snapshot() {
        if ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
            out.push_str(&c.describe());
            out.push('\n');
        }
    }
    Ok(text_reply(out))
}

/// CLIENT KILL TYPE master|replica|slave|normal|pubsub: the number of connections dropped.
/// The caller is never dropped, as with Redis's default `SKIPME yes`: the Sentinel that sends
/// `CLIENT KILL TYPE normal` inside its failover MULTI must get its EXEC reply.
pub fn kill(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let shared = ctx.shared;
    let caller = ctx.session.handle.id;
    let mut killed = 0;
    while let Some(opt) = parse.try_next() {
        if !opt.eq_ignore_ascii_case(b"TYPE") {
            return Err(ParseError::Invalid(
                "CLIENT KILL supports TYPE master|replica|slave|normal|pubsub here".into(),
            ));
        }
        let t = parse.next_bytes()?;
        if t.eq_ignore_ascii_case(b"master") {
            killed += shared.repl.kill_link();
        } else if t.eq_ignore_ascii_case(b"replica") || t.eq_ignore_ascii_case(b"slave") {
            killed += shared.repl.kill_replicas();
        } else if t.eq_ignore_ascii_case(b"normal") || t.eq_ignore_ascii_case(b"pubsub") {
            let want = if t.eq_ignore_ascii_case(b"normal") {
                "normal"
            } else {
                "pubsub"
            };
            for c in shared.clients.snapshot() {
                if c.id != caller && c.kind() == want && !c.killed.load(Ordering::Relaxed) {
                    c.kill();
                    killed += 1;
                }
            }
        } else {
            return Err(ParseError::Invalid(format!(
                "Unknown client type '{}'",
                shorten(t, 64)
            )));
        }
    }
    Ok(Reply::Integer(killed as i64))
}

/// CLIENT SETINFO LIB-NAME|LIB-VER value: redis-py and others send it on connect; accepted
/// and not stored.
pub fn setinfo(_: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let attr = sub_args(args).next_bytes()?;
    if attr.eq_ignore_ascii_case(b"LIB-NAME") || attr.eq_ignore_ascii_case(b"LIB-VER") {
        Ok(Reply::ok())
    } else {
        Err(ParseError::Invalid(format!(
            "Unrecognized option '{}'",
            shorten(attr, 64)
        )))
    }
}

/// CLIENT NO-EVICT|NO-TOUCH on|off: accepted (nothing here evicts or tracks a client).
pub fn on_off(_: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mode = sub_args(args).next_bytes()?;
    if mode.eq_ignore_ascii_case(b"on") || mode.eq_ignore_ascii_case(b"off") {
        Ok(Reply::ok())
    } else {
        Err(ParseError::Syntax)
    }
}

/// CLIENT HELP.
pub fn help(_: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL TYPE <master|replica|slave|normal|pubsub>",
        "    Close the connections of that type (never the caller's).",
        "LIST [TYPE normal] [ID <id> ...]",
        "    Return information about client connections.",
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Accepted for compatibility; not stored.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
    ]))
}
