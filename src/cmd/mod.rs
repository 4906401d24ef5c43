//! Command dispatch: look the name up in the command table, check arity and authentication the
//! way Redis does (so every command gets the same error texts), then run the command's family.
//!
//! One file per family:
//! - [`connection`]: PING, ECHO, HELLO, AUTH, QUIT, SELECT, CLIENT.
//! - [`server`]: COMMAND, INFO, DBSIZE, FLUSHALL/FLUSHDB, TIME, CONFIG.
//! - [`rl`]: the RL.* rate-limit API.
//! - [`cell`]: CL.THROTTLE, redis-cell compatible.
//! - [`persistence`]: SAVE, BGSAVE, LASTSAVE (rate-state snapshots).
//! - [`counter`]: the key-value space (GET, SET, INCR, EXPIRE, TTL, ...), for INCR+EXPIRE users.
//! - [`multi`]: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//! - [`replication`]: REPLICAOF/SLAVEOF, ROLE, WAIT, REPLCONF, PSYNC, SYNC; what a replica
//!   refuses (`-READONLY`).
//! - [`pubsub`]: SUBSCRIBE, PUBLISH and friends (what Redis Sentinel needs to discover peers).
//!
//! [`table`] lists every command with its arity and flags; COMMAND reports from it.

pub mod cell;
pub mod connection;
pub mod counter;
pub mod multi;
pub mod persistence;
pub mod pubsub;
pub mod replication;
pub mod rl;
pub mod server;
pub mod table;

use crate::server::Shared;
use crate::stats::{ClientHandle, LocalStats};
use bytes::Bytes;
use ratelimitd_protocol::{ParseError, ProtoVersion, Reply};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use table::CmdId;

/// Per-connection state that commands read and change.
pub struct Session {
    pub handle: Arc<ClientHandle>,
    pub proto: ProtoVersion,
    pub authenticated: bool,
    /// Set by QUIT: the connection writes the reply and closes.
    pub quit: bool,
    /// MULTI queue and WATCHed keys (src/cmd/multi.rs).
    pub tx: multi::TxState,
    /// REPLCONF options and a pending WAIT/PSYNC (src/cmd/replication.rs).
    pub repl: replication::ReplSession,
    /// Subscriptions and the outbox, from the first (P)SUBSCRIBE on (src/pubsub.rs); None for
    /// the connections that never subscribe, which then pay nothing for pub/sub.
    pub pubsub: Option<Box<crate::pubsub::Subscriber>>,
    last_cmd: Option<CmdId>,
}

impl Session {
    pub fn new(handle: Arc<ClientHandle>, authenticated: bool) -> Session {
        Session {
            handle,
            proto: ProtoVersion::Resp2,
            authenticated,
            quit: false,
            tx: multi::TxState::default(),
            repl: replication::ReplSession::default(),
            pubsub: None,
            last_cmd: None,
        }
    }

    /// Record activity for CLIENT LIST (idle= and cmd=); called once per batch, not per command.
    pub fn touch(&mut self) {
        let ms = self.handle.created.elapsed().as_millis() as u64;
        self.handle.last_active_ms.store(ms, Ordering::Relaxed);
        if let Some(id) = self.last_cmd.take() {
            if let Ok(mut c) = self.handle.last_cmd.lock() {
                c.clear();
                c.push_str(table::spec_of(id).name);
            }
        }
    }
}

/// Execute one request. `args[0]` is the command name.
pub fn execute(
    shared: &Shared,
    session: &mut Session,
    args: &[&[u8]],
    local: &mut LocalStats,
) -> Reply {
    local.commands += 1;
    let Some(name) = args.first() else {
        return Reply::error("ERR empty command");
    };
    let Some(spec) = table::lookup(name) else {
        local.unknown += 1;
        session.tx.flag_error();
        return unknown_command(name, &args[1..]);
    };
    local.last_cmd = Some(spec.id);
    let argc = args.len() as i64;
    let arity = spec.arity as i64;
    if (arity > 0 && argc != arity) || (arity < 0 && argc < -arity) {
        let err = ParseError::WrongArity(spec.name.to_string()).to_string();
        if spec.id == CmdId::Exec {
            // As Redis (execCommandAbort): an EXEC refused discards the transaction and the
            // watched keys, and says so with EXECABORT.
            session.tx = multi::TxState::default();
            let why = err.strip_prefix("ERR ").unwrap_or(&err);
            return Reply::error(format!("EXECABORT Transaction discarded because of: {why}"));
        }
        session.tx.flag_error();
        return Reply::error(err);
    }
    if !session.authenticated && !spec.no_auth {
        session.tx.flag_error();
        return Reply::error("NOAUTH Authentication required.");
    }
    if shared.repl.is_replica() && replication::is_write(spec, args) {
        session.tx.flag_error();
        return Reply::error(replication::READONLY);
    }
    if !shared.repl.enough_replicas() && replication::is_write(spec, args) {
        session.tx.flag_error();
        return Reply::error(replication::NOREPLICAS);
    }
    if session.pubsub.is_some() && pubsub::in_subscribed_mode(session) {
        if spec.id == CmdId::Ping {
            session.last_cmd = Some(spec.id);
            return pubsub::subscribed_ping(args);
        }
        if !pubsub::allowed_when_subscribed(spec.id) {
            return pubsub::refused_when_subscribed(spec.name);
        }
    }
    if session.tx.queuing() && !multi::runs_immediately(spec.id) {
        if matches!(
            spec.id,
            CmdId::Subscribe | CmdId::Unsubscribe | CmdId::Psubscribe | CmdId::Punsubscribe
        ) {
            session.tx.flag_error();
            return Reply::error(format!(
                "ERR Command not allowed inside a transaction: {}",
                spec.name
            ));
        }
        return multi::queue(session, args);
    }
    session.last_cmd = Some(spec.id);
    let result = match spec.id {
        CmdId::Ping
        | CmdId::Echo
        | CmdId::Hello
        | CmdId::Auth
        | CmdId::Quit
        | CmdId::Select
        | CmdId::Client => connection::execute(spec.id, shared, session, args),
        CmdId::Command
        | CmdId::Info
        | CmdId::Dbsize
        | CmdId::Flushall
        | CmdId::Flushdb
        | CmdId::Time
        | CmdId::Config => server::execute(spec.id, shared, session, args),
        CmdId::RlLimit
        | CmdId::RlTier
        | CmdId::RlCheck
        | CmdId::RlPeek
        | CmdId::RlReset
        | CmdId::RlExplain => rl::execute(spec.id, shared, session, args, local),
        CmdId::ClThrottle => cell::execute(shared, args, local),
        CmdId::Save | CmdId::Bgsave | CmdId::Lastsave => {
            persistence::execute(spec.id, shared, args)
        }
        id if counter::is_kv(id) => Ok(counter::execute(id, shared, args)),
        CmdId::Multi | CmdId::Exec | CmdId::Discard | CmdId::Watch | CmdId::Unwatch => {
            multi::execute(spec.id, shared, session, args, local)
        }
        CmdId::Replicaof
        | CmdId::Slaveof
        | CmdId::Role
        | CmdId::Wait
        | CmdId::Replconf
        | CmdId::Psync
        | CmdId::Sync => replication::execute(spec.id, shared, session, args),
        CmdId::Subscribe
        | CmdId::Unsubscribe
        | CmdId::Psubscribe
        | CmdId::Punsubscribe
        | CmdId::Publish
        | CmdId::Pubsub => pubsub::execute(spec.id, shared, session, args),
        _ => Err(ParseError::Syntax),
    };
    result.unwrap_or_else(|e| Reply::error(e.to_string()))
}

/// Redis's text: `ERR unknown command 'foo', with args beginning with: 'a' 'b' `.
fn unknown_command(name: &[u8], rest: &[&[u8]]) -> Reply {
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        shorten(name, 128)
    );
    for arg in rest {
        msg.push_str(&format!("'{}' ", shorten(arg, 128)));
        if msg.len() > 512 {
            break;
        }
    }
    Reply::error(msg)
}

/// Borrowed views of owned arguments (a MULTI queue, a replayed record), the form commands take.
pub fn slices(args: &[Bytes]) -> Vec<&[u8]> {
    args.iter().map(|a| &a[..]).collect()
}

/// Owned copies of a request's arguments, for what outlives the request (a MULTI queue,
/// subscriptions, a replication record): the inverse of [`slices`].
pub fn owned(args: &[&[u8]]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

/// Client-sent bytes made safe for an error line: lossy UTF-8, at most `max` characters.
pub fn shorten(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The reply to `CMD HELP`: one status line per entry, as Redis answers it. Every command
/// whose unknown-subcommand error says "Try CMD HELP" answers it.
pub fn help_reply(lines: &[&'static str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
    )
}

/// `ERR unknown subcommand 'x'. Try CMD HELP.`, as Redis words it.
pub fn unknown_subcommand(sub: &[u8], cmd: &str) -> ParseError {
    ParseError::Invalid(format!(
        "unknown subcommand '{}'. Try {} HELP.",
        shorten(sub, 128),
        cmd
    ))
}

/// A text reply that RESP3 clients receive as a verbatim string and RESP2 clients as a bulk
/// string (what Redis does for INFO and CLIENT LIST).
pub fn text_reply(text: String) -> Reply {
    Reply::Verbatim("txt", Bytes::from(text))
}
