//! Connection commands: PING, ECHO, HELLO, AUTH, QUIT, SELECT and CLIENT.
//!
//! These are what a Redis client library sends on connect (HELLO, AUTH, CLIENT SETNAME/SETINFO,
//! SELECT 0) and what health checks send (PING), so their replies follow Redis byte for byte.

use super::{shorten, text_reply, unknown_subcommand, Session};
use crate::cmd::table::CmdId;
use crate::server::Shared;
use bytes::Bytes;
use ratelimitd_protocol::{Parse, ParseError, ProtoVersion, Reply};
use std::sync::atomic::Ordering;

/// Redis version we are compatible with, reported by HELLO and INFO for clients that gate
/// features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

pub fn execute(
    id: CmdId,
    shared: &Shared,
    session: &mut Session,
    args: &[&[u8]],
) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    match id {
        CmdId::Ping => match parse.try_next() {
            None => Ok(Reply::simple("PONG")),
            Some(msg) => {
                parse.finish()?;
                Ok(Reply::Bulk(Bytes::copy_from_slice(msg)))
            }
        },
        CmdId::Echo => Ok(Reply::Bulk(Bytes::copy_from_slice(parse.next_bytes()?))),
        CmdId::Quit => {
            session.quit = true;
            Ok(Reply::ok())
        }
        CmdId::Select => {
            let db = parse.next_i64().map_err(|_| ParseError::NotInteger)?;
            if db == 0 {
                Ok(Reply::ok())
            } else {
                Err(ParseError::Invalid("DB index is out of range".into()))
            }
        }
        CmdId::Auth => auth(shared, session, &mut parse),
        CmdId::Hello => hello(shared, session, &mut parse),
        CmdId::Client => client(shared, session, &mut parse),
        _ => Err(ParseError::Syntax),
    }
}

/// Redis's answer to a wrong user or password.
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The outcome of checking a username/password pair against `--requirepass`.
fn check_password(shared: &Shared, user: Option<&[u8]>, pass: &[u8]) -> Result<(), Reply> {
    match &shared.config.requirepass {
        // As Redis 6+ without a password: the `default` user is `nopass`, so any password
        // signs it in (go-redis v9 sends `HELLO 3 AUTH default <pw>` whenever it has one, and
        // redis-py `AUTH <user> <pw>` when given a username); another user does not exist.
        // Only the legacy one-argument form is an error.
        None => match user {
            Some(b"default") => Ok(()),
            Some(_) => Err(Reply::error(WRONGPASS)),
            None => Err(Reply::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            )),
        },
        Some(expected) => {
            let user_ok = user.is_none_or(|u| u == b"default");
            // Compare in constant time: a password check should not leak its prefix length.
            let pass_ok = expected.len() == pass.len()
                && expected.as_bytes().iter().zip(pass).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if user_ok && pass_ok {
                Ok(())
            } else {
                Err(Reply::error(WRONGPASS))
            }
        }
    }
}

fn auth(shared: &Shared, session: &mut Session, parse: &mut Parse) -> Result<Reply, ParseError> {
    let (user, pass) = match parse.remaining() {
        1 => (None, parse.next_bytes()?),
        2 => {
            let user = parse.next_bytes()?;
            (Some(user), parse.next_bytes()?)
        }
        _ => return Err(ParseError::Syntax),
    };
    Ok(match check_password(shared, user, pass) {
        Ok(()) => {
            session.authenticated = true;
            Reply::ok()
        }
        Err(reply) => reply,
    })
}

fn hello(shared: &Shared, session: &mut Session, parse: &mut Parse) -> Result<Reply, ParseError> {
    let mut proto = session.proto;
    let mut setname = None;
    if let Some(ver) = parse.try_next() {
        let ver = ratelimitd_protocol::parse::parse_i64(ver).ok_or_else(|| {
            ParseError::Invalid("Protocol version is not an integer or out of range".into())
        })?;
        proto = match ver {
            2 => ProtoVersion::Resp2,
            3 => ProtoVersion::Resp3,
            _ => return Ok(Reply::error("NOPROTO unsupported protocol version")),
        };
        while let Some(opt) = parse.try_next() {
            if opt.eq_ignore_ascii_case(b"AUTH") && parse.remaining() >= 2 {
                let user = parse.next_bytes()?;
                let pass = parse.next_bytes()?;
                if let Err(reply) = check_password(shared, Some(user), pass) {
                    return Ok(reply);
                }
                session.authenticated = true;
            } else if opt.eq_ignore_ascii_case(b"SETNAME") && parse.remaining() >= 1 {
                let name = parse.next_bytes()?;
                validate_name(name)?;
                setname = Some(name);
            } else {
                return Err(ParseError::Invalid(format!(
                    "Syntax error in HELLO option '{}'",
                    shorten(opt, 64)
                )));
            }
        }
    }
    if !session.authenticated {
        return Ok(Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(name) = setname {
        set_name(session, name);
    }
    session.proto = proto;
    session.handle.resp.store(
        if proto == ProtoVersion::Resp3 { 3 } else { 2 },
        Ordering::Relaxed,
    );
    Ok(Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("ratelimitd")),
        (Reply::bulk("version"), Reply::bulk(REDIS_COMPAT_VERSION)),
        (
            Reply::bulk("proto"),
            Reply::Integer(if proto == ProtoVersion::Resp3 { 3 } else { 2 }),
        ),
        (Reply::bulk("id"), Reply::Integer(session.handle.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (
            Reply::bulk("role"),
            Reply::bulk(if shared.repl.is_replica() {
                "replica"
            } else {
                "master"
            }),
        ),
        (Reply::bulk("modules"), Reply::Array(vec![])),
    ]))
}

/// Redis refuses names with spaces, newlines or other special characters (they would break
/// CLIENT LIST's format).
fn validate_name(name: &[u8]) -> Result<(), ParseError> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(ParseError::Invalid(
            "Client names cannot contain spaces, newlines or special characters.".into(),
        ))
    }
}

fn set_name(session: &Session, name: &[u8]) {
    if let Ok(mut n) = session.handle.name.lock() {
        *n = if name.is_empty() {
            None
        } else {
            Some(Bytes::copy_from_slice(name))
        };
    }
}

fn client(shared: &Shared, session: &mut Session, parse: &mut Parse) -> Result<Reply, ParseError> {
    let sub = parse.next_bytes()?;
    let sub_is = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
    if sub_is("SETNAME") {
        let name = parse.next_bytes().map_err(|_| client_arity("setname"))?;
        parse.finish().map_err(|_| client_arity("setname"))?;
        validate_name(name)?;
        set_name(session, name);
        Ok(Reply::ok())
    } else if sub_is("GETNAME") {
        parse.finish().map_err(|_| client_arity("getname"))?;
        let name = session.handle.name.lock().ok().and_then(|n| n.clone());
        Ok(name.map(Reply::Bulk).unwrap_or(Reply::Null))
    } else if sub_is("ID") {
        parse.finish().map_err(|_| client_arity("id"))?;
        Ok(Reply::Integer(session.handle.id as i64))
    } else if sub_is("INFO") {
        parse.finish().map_err(|_| client_arity("info"))?;
        Ok(text_reply(format!("{}\n", session.handle.describe())))
    } else if sub_is("LIST") {
        // CLIENT LIST [TYPE normal] [ID id ...]: every connection here is a normal client.
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
        for c in shared.clients.snapshot() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
                out.push_str(&c.describe());
                out.push('\n');
            }
        }
        Ok(text_reply(out))
    } else if sub_is("KILL") {
        crate::cmd::replication::client_kill(shared, parse, session.handle.id)
    } else if sub_is("SETINFO") {
        // redis-py and others send LIB-NAME/LIB-VER on connect; accepted and not stored.
        let attr = parse.next_bytes().map_err(|_| client_arity("setinfo"))?;
        let _value = parse.next_bytes().map_err(|_| client_arity("setinfo"))?;
        parse.finish().map_err(|_| client_arity("setinfo"))?;
        if attr.eq_ignore_ascii_case(b"LIB-NAME") || attr.eq_ignore_ascii_case(b"LIB-VER") {
            Ok(Reply::ok())
        } else {
            Err(ParseError::Invalid(format!(
                "Unrecognized option '{}'",
                shorten(attr, 64)
            )))
        }
    } else if sub_is("NO-EVICT") || sub_is("NO-TOUCH") {
        let mode = parse.next_bytes()?;
        parse.finish()?;
        if mode.eq_ignore_ascii_case(b"on") || mode.eq_ignore_ascii_case(b"off") {
            Ok(Reply::ok())
        } else {
            Err(ParseError::Syntax)
        }
    } else if sub_is("HELP") {
        parse.finish()?;
        let lines = [
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "LIST [TYPE normal] [ID <id> ...]",
            "    Return information about client connections.",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "    Accepted for compatibility; not stored.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
        ];
        Ok(super::help_reply(&lines))
    } else {
        Err(unknown_subcommand(sub, "CLIENT"))
    }
}

fn client_arity(sub: &str) -> ParseError {
    ParseError::WrongArity(format!("client|{sub}"))
}
