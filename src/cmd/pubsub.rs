//! Pub/sub commands: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB, and
//! what a RESP2 connection in subscribed mode may still send.
//!
//! Redis Sentinel needs these to discover the other Sentinels watching the same primary (it
//! publishes hello messages through every monitored node and reads them back on a subscribed
//! connection), so replies follow Redis byte for byte: one `subscribe` confirmation per channel,
//! `["pong", ""]` for PING in subscribed RESP2 mode, and Redis's error for anything else. The
//! registry and the per-connection outbox are src/pubsub.rs.

use super::table::CmdId;
use super::{unknown_subcommand, Session};
use crate::pubsub::{Kind, Subscriber};
use crate::server::Shared;
use bytes::Bytes;
use ratelimitd_protocol::{Parse, ParseError, ProtoVersion, Reply};

/// True when the connection is in RESP2 subscribed mode, where Redis allows only the
/// subscription commands, PING, QUIT and RESET (RESP3 multiplexes replies and pushes, so it
/// has no such mode).
pub fn in_subscribed_mode(session: &Session) -> bool {
    session.proto == ProtoVersion::Resp2 && session.pubsub.as_ref().is_some_and(|s| s.count() > 0)
}

/// Commands a subscribed RESP2 connection may send.
pub fn allowed_when_subscribed(id: CmdId) -> bool {
    matches!(
        id,
        CmdId::Subscribe
            | CmdId::Unsubscribe
            | CmdId::Psubscribe
            | CmdId::Punsubscribe
            | CmdId::Ping
            | CmdId::Quit
    )
}

/// Redis's refusal in subscribed mode.
pub fn refused_when_subscribed(name: &str) -> Reply {
    Reply::error(format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}

/// PING in subscribed RESP2 mode: `["pong", message or ""]`, as Redis answers there.
pub fn subscribed_ping(args: &[&[u8]]) -> Reply {
    Reply::Array(vec![
        Reply::bulk("pong"),
        Reply::Bulk(Bytes::copy_from_slice(
            args.get(1).copied().unwrap_or_default(),
        )),
    ])
}

pub fn execute(
    id: CmdId,
    shared: &Shared,
    session: &mut Session,
    args: &[&[u8]],
) -> Result<Reply, ParseError> {
    let kind = match id {
        CmdId::Subscribe => Kind::Subscribe,
        CmdId::Unsubscribe => Kind::Unsubscribe,
        CmdId::Psubscribe => Kind::Psubscribe,
        CmdId::Punsubscribe => Kind::Punsubscribe,
        CmdId::Publish => {
            let mut parse = Parse::new(args);
            let channel = parse.next_bytes()?;
            let payload = parse.next_bytes()?;
            parse.finish()?;
            let n = shared.pubsub.publish(
                Bytes::copy_from_slice(channel),
                Bytes::copy_from_slice(payload),
            );
            return Ok(Reply::Integer(n as i64));
        }
        CmdId::Pubsub => return pubsub(shared, args),
        _ => return Err(ParseError::Syntax),
    };
    // (Dispatch refuses these inside MULTI: subscriptions make no sense replayed at EXEC.)
    let proto = session.proto;
    let handle = session.handle.clone();
    let sub = session
        .pubsub
        .get_or_insert_with(|| Box::new(Subscriber::new(handle)));
    sub.apply(&shared.pubsub, kind, &super::owned(&args[1..]), proto);
    // The confirmations are in `sub.frames`; the connection writes them instead of this.
    Ok(Reply::Null)
}

/// PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT.
fn pubsub(shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let sub = parse.next_bytes()?;
    if sub.eq_ignore_ascii_case(b"CHANNELS") {
        let pattern = parse.try_next();
        parse.finish()?;
        Ok(Reply::Array(
            shared
                .pubsub
                .channels(pattern)
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        ))
    } else if sub.eq_ignore_ascii_case(b"NUMSUB") {
        let mut out = Vec::new();
        while let Some(ch) = parse.try_next() {
            let n = shared.pubsub.subscribers(ch);
            out.push(Reply::Bulk(Bytes::copy_from_slice(ch)));
            out.push(Reply::Integer(n as i64));
        }
        Ok(Reply::Array(out))
    } else if sub.eq_ignore_ascii_case(b"NUMPAT") {
        parse.finish()?;
        Ok(Reply::Integer(shared.pubsub.pattern_count() as i64))
    } else if sub.eq_ignore_ascii_case(b"HELP") {
        parse.finish()?;
        Ok(super::help_reply(&[
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels.",
            "NUMPAT",
            "    Return the number of subscriptions to patterns.",
        ]))
    } else {
        Err(unknown_subcommand(sub, "PUBSUB"))
    }
}
