//! Pub/sub commands: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH and PUBSUB.
//!
//! Redis Sentinel needs these to discover the other Sentinels watching the same primary (it
//! publishes hello messages through every monitored node and reads them back on a subscribed
//! connection), so replies follow Redis byte for byte: one `subscribe` confirmation per channel
//! and Redis's error for what subscribed mode refuses (src/cmd/dispatch.rs). The registry and
//! the per-connection outbox are src/pubsub.rs.

use super::reply::help_reply;
use super::spec::{sub_args, Ctx};
use crate::pubsub::{Kind, Subscriber};
use bytes::Bytes;
use ratelimitd_protocol::{Parse, ParseError, Reply};

/// SUBSCRIBE channel [channel ...].
pub fn subscribe(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    change(ctx, args, Kind::Subscribe)
}

/// UNSUBSCRIBE [channel ...].
pub fn unsubscribe(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    change(ctx, args, Kind::Unsubscribe)
}

/// PSUBSCRIBE pattern [pattern ...].
pub fn psubscribe(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    change(ctx, args, Kind::Psubscribe)
}

/// PUNSUBSCRIBE [pattern ...].
pub fn punsubscribe(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    change(ctx, args, Kind::Punsubscribe)
}

/// The confirmations go to `Subscriber::frames`; the connection writes them instead of the
/// reply this returns. (Dispatch refuses these inside MULTI: subscriptions make no sense
/// replayed at EXEC.)
fn change(ctx: &mut Ctx<'_>, args: &[&[u8]], kind: Kind) -> Result<Reply, ParseError> {
    let session = &mut *ctx.session;
    let proto = session.proto;
    let handle = session.handle.clone();
    let sub = session
        .pubsub
        .get_or_insert_with(|| Box::new(Subscriber::new(handle)));
    sub.apply(
        &ctx.shared.pubsub,
        kind,
        &crate::args::owned(&args[1..]),
        proto,
    );
    Ok(Reply::Null)
}

/// PUBLISH channel message: the number of subscribers that received it.
pub fn publish(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let channel = parse.next_bytes()?;
    let payload = parse.next_bytes()?;
    parse.finish()?;
    let n = ctx.shared.pubsub.publish(
        Bytes::copy_from_slice(channel),
        Bytes::copy_from_slice(payload),
    );
    Ok(Reply::Integer(n as i64))
}

/// PUBSUB CHANNELS [pattern]: the active channels.
pub fn channels(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let pattern = parse.try_next();
    parse.finish()?;
    Ok(Reply::Array(
        ctx.shared
            .pubsub
            .channels(pattern)
            .into_iter()
            .map(Reply::Bulk)
            .collect(),
    ))
}

/// PUBSUB NUMSUB [channel ...]: each channel and its number of subscribers.
pub fn numsub(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let mut out = Vec::new();
    while let Some(ch) = parse.try_next() {
        let n = ctx.shared.pubsub.subscribers(ch);
        out.push(Reply::Bulk(Bytes::copy_from_slice(ch)));
        out.push(Reply::Integer(n as i64));
    }
    Ok(Reply::Array(out))
}

/// PUBSUB NUMPAT: pattern subscriptions.
pub fn numpat(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Integer(ctx.shared.pubsub.pattern_count() as i64))
}

/// PUBSUB HELP.
pub fn help(_: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels.",
        "NUMPAT",
        "    Return the number of subscriptions to patterns.",
    ]))
}
