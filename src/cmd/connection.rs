//! Connection commands: PING, ECHO, HELLO, AUTH, QUIT and SELECT.
//!
//! These are what a Redis client library sends on connect (HELLO, AUTH, SELECT 0) and what
//! health checks send (PING), so their replies follow Redis byte for byte.

use super::session::Session;
use super::spec::Ctx;
use crate::acl::LogReason;
use crate::text::shorten;
use bytes::Bytes;
use ratelimitd_protocol::{Parse, ParseError, ProtoVersion, Reply};
use std::sync::atomic::Ordering;

/// Redis version we are compatible with, reported by HELLO and INFO for clients that gate
/// features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// PING [message]; in RESP2 subscribed mode `["pong", message or ""]`, as Redis answers there.
pub fn ping(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let msg = parse.try_next();
    if ctx.session.in_subscribed_mode() {
        return Ok(Reply::Array(vec![
            Reply::bulk("pong"),
            Reply::Bulk(Bytes::copy_from_slice(msg.unwrap_or_default())),
        ]));
    }
    match msg {
        None => Ok(Reply::simple("PONG")),
        Some(msg) => {
            parse.finish()?;
            Ok(Reply::Bulk(Bytes::copy_from_slice(msg)))
        }
    }
}

/// ECHO message.
pub fn echo(_: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Bulk(Bytes::copy_from_slice(
        Parse::new(args).next_bytes()?,
    )))
}

/// QUIT: the connection writes the reply and closes.
pub fn quit(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    ctx.session.quit = true;
    Ok(Reply::ok())
}

/// SELECT 0 (the only database).
pub fn select(_: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let db = Parse::new(args)
        .next_i64()
        .map_err(|_| ParseError::NotInteger)?;
    if db == 0 {
        Ok(Reply::ok())
    } else {
        Err(ParseError::Invalid("DB index is out of range".into()))
    }
}

/// Sign the connection in as `user` (None: the default user, the one-argument form) with
/// `pass`; a failure is logged for ACL LOG and answered as Redis answers it.
///
/// As in Redis 6+, a `nopass` user takes any password (go-redis v9 sends `HELLO 3 AUTH
/// default <pw>` whenever it has one, and redis-py `AUTH <user> <pw>` when given a username),
/// and the one-argument form is an error while the default user needs no password.
fn sign_in(ctx: &mut Ctx<'_>, user: Option<&[u8]>, pass: &[u8]) -> Result<(), Reply> {
    let users = &ctx.shared.users;
    let generation = users.generation();
    match users.authenticate(user, pass) {
        Ok(u) => {
            ctx.session.sign_in(u, generation);
            Ok(())
        }
        Err(e) => {
            let name = shorten(user.unwrap_or(b"default"), 128);
            let context = if ctx.session.tx.queuing() {
                "multi"
            } else {
                "toplevel"
            };
            users.log(
                LogReason::Auth,
                context,
                "AUTH",
                &name,
                ctx.session.handle.describe(),
            );
            Err(Reply::error(e.to_string()))
        }
    }
}

/// AUTH [username] password.
pub fn auth(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let (user, pass) = match parse.remaining() {
        1 => (None, parse.next_bytes()?),
        2 => {
            let user = parse.next_bytes()?;
            (Some(user), parse.next_bytes()?)
        }
        _ => return Err(ParseError::Syntax),
    };
    Ok(match sign_in(ctx, user, pass) {
        Ok(()) => Reply::ok(),
        Err(reply) => reply,
    })
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]].
pub fn hello(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let mut proto = ctx.session.proto;
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
                if let Err(reply) = sign_in(ctx, Some(user), pass) {
                    return Ok(reply);
                }
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
    let (shared, session) = (ctx.shared, &mut *ctx.session);
    if !session.authenticated && !shared.users.default_open() {
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
pub(super) fn validate_name(name: &[u8]) -> Result<(), ParseError> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(ParseError::Invalid(
            "Client names cannot contain spaces, newlines or special characters.".into(),
        ))
    }
}

pub(super) fn set_name(session: &Session, name: &[u8]) {
    if let Ok(mut n) = session.handle.name.lock() {
        *n = if name.is_empty() {
            None
        } else {
            Some(Bytes::copy_from_slice(name))
        };
    }
}
