//! Dispatch: the rules every command goes through before its handler runs, read from its row
//! of the command table, in Redis's order and with Redis's error texts.
//!
//! 1. arity (an EXEC with arguments also discards the transaction, as Redis's
//!    `execCommandAbort`), then the subcommand's arity for a container;
//! 2. authentication (`-NOAUTH`) unless the row is flagged `no_auth`;
//! 3. a write on a replica (`-READONLY`) or on a primary short of good replicas
//!    (`-NOREPLICAS`);
//! 4. RESP2 subscribed mode, where only the rows flagged `Subscribed` may run;
//! 5. inside MULTI, every row not flagged `TxControl` is queued (`no_multi` ones refused);
//! 6. then the handler: a plain one with the request's context, a key-value one inside an
//!    engine transaction over the row's keys.
//!
//! An unknown subcommand is not a queuing-time error: inside MULTI it is queued and fails
//! at EXEC on its own, so a Sentinel's failover transaction (`CLIENT KILL ...`,
//! `CONFIG REWRITE`) is not discarded because of one subcommand this daemon lacks.

use super::reply::{unknown_command, unknown_subcommand};
use super::spec::{CommandSpec, Commands, Ctx, Flag, Found, Run};
use crate::state::Shared;
use crate::text::shorten;
use ratelimitd_protocol::{ParseError, Reply};

/// Execute one request (`args[0]` is the command name); `found` is its row if the caller
/// looked it up already (the connection's look-ahead does), else it is looked up here.
pub fn execute(ctx: &mut Ctx<'_>, args: &[&[u8]], found: Option<Found>) -> Reply {
    let Some(name) = args.first() else {
        ctx.counters.call(ctx.commands.unknown_index(), true);
        return Reply::error("ERR empty command");
    };
    let Some(found) = found.or_else(|| ctx.commands.lookup(name)) else {
        ctx.counters.call(ctx.commands.unknown_index(), true);
        ctx.session.tx.flag_error();
        return unknown_command(name, &args[1..]);
    };
    let reply = run(ctx, args, found.spec);
    ctx.counters
        .call(found.index, matches!(reply, Reply::Error(_)));
    reply
}

fn run(ctx: &mut Ctx<'_>, args: &[&[u8]], spec: &'static CommandSpec) -> Reply {
    let session = &mut *ctx.session;
    if !spec.arity_ok(args.len()) {
        let err = ParseError::WrongArity(spec.name.to_string()).to_string();
        if spec.flags.has(Flag::EndsTx) {
            session.tx = Default::default();
            let why = err.strip_prefix("ERR ").unwrap_or(&err);
            return Reply::error(format!("EXECABORT Transaction discarded because of: {why}"));
        }
        session.tx.flag_error();
        return Reply::error(err);
    }
    // The row that decides: a container's subcommand, or the command itself.
    let mut row = spec;
    let mut unknown_sub = None;
    if let Run::Container(bare) = spec.run {
        match args.get(1) {
            Some(sub) => match spec.subcommand(sub) {
                Some(s) if !s.arity_ok(args.len()) => {
                    session.tx.flag_error();
                    return Reply::error(
                        ParseError::WrongArity(format!("{}|{}", spec.name, s.name)).to_string(),
                    );
                }
                Some(s) => row = s,
                None => unknown_sub = Some(*sub),
            },
            None if bare.is_none() => {
                session.tx.flag_error();
                return Reply::error(ParseError::WrongArity(spec.name.to_string()).to_string());
            }
            None => {}
        }
    }
    if !session.authenticated && !row.flags.has(Flag::NoAuth) {
        session.tx.flag_error();
        return Reply::error("NOAUTH Authentication required.");
    }
    if row.flags.has(Flag::Write) {
        if let Some(why) = ctx.shared.repl.write_refusal() {
            session.tx.flag_error();
            return Reply::error(why);
        }
    }
    if session.pubsub.is_some() && session.in_subscribed_mode() && !row.flags.has(Flag::Subscribed)
    {
        return Reply::error(format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        ));
    }
    if session.tx.queuing() && !row.flags.has(Flag::TxControl) {
        if row.flags.has(Flag::NoMulti) {
            session.tx.flag_error();
            return Reply::error(format!(
                "ERR Command not allowed inside a transaction: {}",
                spec.name
            ));
        }
        return session.tx.queue(args);
    }
    if let Some(sub) = unknown_sub {
        return Reply::error(unknown_subcommand(sub, &spec.name.to_ascii_uppercase()).to_string());
    }
    session.last_cmd = Some(spec.name);
    let result = match row.run {
        Run::Plain(handler) | Run::Container(Some(handler)) => handler(ctx, args),
        Run::Change(handler) => handler(ctx.shared, args),
        Run::Kv(handler) => Ok(run_kv(ctx, args, row, handler)),
        Run::Container(None) => Err(ParseError::Syntax),
    };
    result.unwrap_or_else(|e| Reply::error(e.to_string()))
}

/// A key-value command alone: one engine transaction over its keys. Its writes mark the
/// state changed for the snapshot.
fn run_kv(
    ctx: &mut Ctx<'_>,
    args: &[&[u8]],
    row: &CommandSpec,
    handler: super::spec::KvHandler,
) -> Reply {
    let keys = row.keys.of(args);
    let max_value = ctx.shared.config.max_value_size;
    let (reply, writes) = ctx.shared.engine.kv_txn(&keys, |txn| {
        let reply = handler(txn, args, max_value);
        (reply, txn.writes())
    });
    ctx.counters.changed(writes);
    reply
}

/// Apply a limit or tier change that was accepted once (a limits-log record, a config-file
/// table, a record of the primary's stream) through the row that serves the live command, so
/// that it is read back exactly as it was accepted. Dispatch's other rules do not apply: the
/// change was authorised when it was made (a replica applies its primary's changes although
/// it refuses clients' writes).
pub fn replay(shared: &Shared, commands: &Commands, args: &[&[u8]]) -> Result<(), ParseError> {
    let name = args.first().copied().unwrap_or_default();
    let row = commands
        .lookup(name)
        .and_then(|found| match found.spec.run {
            Run::Container(_) => args.get(1).and_then(|sub| found.spec.subcommand(sub)),
            _ => Some(found.spec),
        });
    match row.map(|r| (r, r.run)) {
        Some((row, Run::Change(handler))) if row.arity_ok(args.len()) => {
            handler(shared, args).map(drop)
        }
        Some((row, Run::Change(_))) => Err(ParseError::WrongArity(row.name.to_string())),
        _ => Err(ParseError::Invalid(format!(
            "not a limit change: '{}'",
            shorten(name, 64)
        ))),
    }
}
