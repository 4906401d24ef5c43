//! Dispatch: the rules every command goes through before its handler runs, read from its row
//! of the command table, in Redis's order and with Redis's error texts.
//!
//! 1. arity (an EXEC with arguments also discards the transaction, as Redis's
//!    `execCommandAbort`), then the subcommand's arity for a container;
//! 2. authentication (`-NOAUTH`) unless the row is flagged `no_auth`: a connection that has
//!    not signed in runs as the default user, which serves only while it is `on nopass`;
//! 3. the user's permissions (`-NOPERM`, and an ACL LOG entry): the command (or subcommand),
//!    the keys at the row's key positions, the channels of a pub/sub command;
//! 4. a write on a replica (`-READONLY`) or on a primary short of good replicas
//!    (`-NOREPLICAS`);
//! 5. RESP2 subscribed mode, where only the rows flagged `Subscribed` may run;
//! 6. inside MULTI, every row not flagged `TxControl` is queued (`no_multi` ones refused);
//! 7. then the handler: a plain one with the request's context, a key-value one inside an
//!    engine transaction over the row's keys.
//!
//! An unknown subcommand is not a queuing-time error: inside MULTI it is queued and fails
//! at EXEC on its own, so a Sentinel's failover transaction (`CLIENT KILL ...`,
//! `CONFIG REWRITE`) is not discarded because of one subcommand this daemon lacks.

use super::reply::{unknown_command, unknown_subcommand};
use super::session::Session;
use super::spec::{Channels, CommandSpec, Commands, Ctx, Flag, Found, Run};
use crate::acl::{Catalog, LogReason, User};
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
    let reply = run(ctx, args, found);
    ctx.counters
        .call(found.index, matches!(reply, Reply::Error(_)));
    reply
}

fn run(ctx: &mut Ctx<'_>, args: &[&[u8]], found: Found) -> Reply {
    let spec = found.spec;
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
    let mut sub_pos = None;
    let mut unknown_sub = None;
    if let Run::Container(bare) = spec.run {
        match args.get(1) {
            Some(sub) => match spec.subcommand_at(sub) {
                Some((_, s)) if !s.arity_ok(args.len()) => {
                    session.tx.flag_error();
                    return Reply::error(
                        ParseError::WrongArity(format!("{}|{}", spec.name, s.name)).to_string(),
                    );
                }
                Some((pos, s)) => {
                    row = s;
                    sub_pos = Some(pos);
                }
                None => unknown_sub = Some(*sub),
            },
            None if bare.is_none() => {
                session.tx.flag_error();
                return Reply::error(ParseError::WrongArity(spec.name.to_string()).to_string());
            }
            None => {}
        }
    }
    if !row.flags.has(Flag::NoAuth) {
        let users = &ctx.shared.users;
        if !session.authenticated && !users.default_open() {
            session.tx.flag_error();
            return Reply::error("NOAUTH Authentication required.");
        }
        if session.user_generation != users.generation() && !refresh_user(ctx.shared, session) {
            return Reply::error("NOPERM the user of this connection was deleted");
        }
        let catalog = users.catalog();
        if let Err(denied) = permitted(catalog, &session.user, found.index, sub_pos, row, args) {
            session.tx.flag_error();
            return deny(ctx.shared, session, denied);
        }
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

/// What a user may not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The command or subcommand, by its full name (`config|set`).
    Command(String),
    Key(Vec<u8>),
    Channel(Vec<u8>),
}

impl Denied {
    /// Redis's text for the refusal (without naming the key or channel, as Redis's own
    /// replies do not).
    pub fn message(&self, user: &str) -> String {
        match self {
            Denied::Command(name) => {
                format!("NOPERM User {user} has no permissions to run the '{name}' command")
            }
            Denied::Key(_) => "NOPERM No permissions to access a key".to_string(),
            Denied::Channel(_) => "NOPERM No permissions to access a channel".to_string(),
        }
    }
}

/// Whether `user` may run `args` through `row`: the row `index` of the table, or its
/// subcommand at `sub` (an unknown subcommand is judged as its container).
pub fn permitted(
    catalog: &Catalog,
    user: &User,
    index: usize,
    sub: Option<usize>,
    row: &CommandSpec,
    args: &[&[u8]],
) -> Result<(), Denied> {
    let id = match sub {
        Some(pos) => catalog.sub_id(index, pos).unwrap_or(usize::MAX),
        None => index,
    };
    if !user.may_run(id) {
        let name = catalog
            .entry(id)
            .map_or_else(|| row.name.to_string(), |e| e.name.clone());
        return Err(Denied::Command(name));
    }
    if !user.all_keys() {
        let write = row.flags.has(Flag::Write);
        if let Some(key) = row.keys.iter(args).find(|k| !user.may_access(k, write)) {
            return Err(Denied::Key(key.to_vec()));
        }
    }
    let channels: &[&[u8]] = match row.channels {
        Channels::None => &[],
        Channels::All | Channels::AllPatterns => args.get(1..).unwrap_or_default(),
        Channels::First => args.get(1..2).unwrap_or_default(),
    };
    let literal = row.channels == Channels::AllPatterns;
    if let Some(c) = channels.iter().find(|c| !user.may_use_channel(c, literal)) {
        return Err(Denied::Channel(c.to_vec()));
    }
    Ok(())
}

/// Take the connection's user again after a change to the users; false if it was deleted,
/// in which case the connection is closed, as Redis closes the clients of a deleted user.
fn refresh_user(shared: &Shared, session: &mut Session) -> bool {
    let users = &shared.users;
    let generation = users.generation();
    match users.get(&session.user.name) {
        Some(user) => {
            session.user = user;
            session.user_generation = generation;
            true
        }
        None => {
            session.handle.kill();
            false
        }
    }
}

/// Refuse with `-NOPERM`, and log it for ACL LOG.
fn deny(shared: &Shared, session: &Session, denied: Denied) -> Reply {
    let (reason, object) = match &denied {
        Denied::Command(name) => (LogReason::Command, name.clone()),
        Denied::Key(k) => (LogReason::Key, shorten(k, 128)),
        Denied::Channel(c) => (LogReason::Channel, shorten(c, 128)),
    };
    let context = if session.tx.queuing() {
        "multi"
    } else {
        "toplevel"
    };
    shared.users.log(
        reason,
        context,
        &object,
        &session.user.name,
        session.handle.describe(),
    );
    Reply::error(denied.message(&session.user.name))
}
