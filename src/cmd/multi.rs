//! MULTI, EXEC, DISCARD, WATCH and UNWATCH, with Redis's semantics for the patterns rate-limit
//! libraries use: `MULTI; INCR k; EXPIRE k 60 NX; EXEC` from a pipeline (django-ratelimit,
//! rack-attack's Redis store), and optimistic WATCH/EXEC retries.
//!
//! How EXEC is atomic: all queued key-value commands run inside ONE engine transaction
//! (`Engine::kv_txn`) over the union of their keys and the watched keys. The WATCH comparison
//! happens inside that same transaction, so nothing can change a watched key between the check
//! and the writes. Other commands queued in a MULTI (PING, RL.CHECK, CONFIG, ...) run after the
//! transaction, in their queued order: they use engine locks of their own, which must not be
//! taken while the transaction holds its shards. Their replies keep their places in EXEC's array.
//! FLUSHALL, FLUSHDB and DBSIZE, which act on every key, split the queue into parts run one after
//! the other that way, so they run where they were queued.
//!
//! Queuing-time errors (unknown command, wrong arity, NOAUTH) are recorded by dispatch
//! ([`TxState::flag_error`]) and make EXEC answer EXECABORT; runtime errors inside EXEC are
//! per-element errors, as in Redis.

use super::table::{lookup, CmdId};
use super::{counter, Session};
use crate::server::Shared;
use crate::stats::LocalStats;
use bytes::Bytes;
use ratelimitd_protocol::{ParseError, Reply};

/// A connection's transaction state.
#[derive(Debug, Default)]
pub struct TxState {
    /// The queued requests while in MULTI; None outside.
    queue: Option<Vec<Vec<Bytes>>>,
    /// A queuing-time error happened: EXEC must abort.
    failed: bool,
    /// WATCHed keys and the CAS each had (None: absent) when watched.
    watched: Vec<(Bytes, Option<u64>)>,
}

/// More queued commands than this in one MULTI is refused at EXEC (it bounds the memory a
/// client can make the server hold, like the other input limits).
const MAX_QUEUED: usize = 100_000;

impl TxState {
    /// True between MULTI and EXEC/DISCARD.
    pub fn queuing(&self) -> bool {
        self.queue.is_some()
    }

    /// Record a queuing-time error (a no-op outside MULTI).
    pub fn flag_error(&mut self) {
        if self.queuing() {
            self.failed = true;
        }
    }
}

/// Commands that run at once even inside MULTI (Redis's list).
pub fn runs_immediately(id: CmdId) -> bool {
    matches!(
        id,
        CmdId::Exec | CmdId::Discard | CmdId::Multi | CmdId::Watch | CmdId::Quit
    )
}

/// Queue a request (already checked for name, arity and authentication): `+QUEUED`.
pub fn queue(session: &mut Session, args: &[&[u8]]) -> Reply {
    if let Some(q) = session.tx.queue.as_mut() {
        if q.len() >= MAX_QUEUED {
            session.tx.failed = true;
            return Reply::error(format!(
                "ERR too many commands in a transaction (limit {MAX_QUEUED})"
            ));
        }
        q.push(super::owned(args));
    }
    Reply::simple("QUEUED")
}

pub fn execute(
    id: CmdId,
    shared: &Shared,
    session: &mut Session,
    args: &[&[u8]],
    local: &mut LocalStats,
) -> Result<Reply, ParseError> {
    match id {
        CmdId::Multi => {
            if session.tx.queuing() {
                return Err(ParseError::Invalid("MULTI calls can not be nested".into()));
            }
            session.tx.queue = Some(Vec::new());
            session.tx.failed = false;
            Ok(Reply::ok())
        }
        CmdId::Discard => {
            if !session.tx.queuing() {
                return Err(ParseError::Invalid("DISCARD without MULTI".into()));
            }
            session.tx = TxState::default();
            Ok(Reply::ok())
        }
        CmdId::Watch => {
            if session.tx.queuing() {
                return Err(ParseError::Invalid(
                    "WATCH inside MULTI is not allowed".into(),
                ));
            }
            for key in &args[1..] {
                if session.tx.watched.iter().any(|(k, _)| k == key) {
                    continue;
                }
                let cas = shared.engine.kv_get(key).map(|i| i.cas);
                session.tx.watched.push((Bytes::copy_from_slice(key), cas));
            }
            Ok(Reply::ok())
        }
        CmdId::Unwatch => {
            session.tx.watched.clear();
            Ok(Reply::ok())
        }
        CmdId::Exec => exec(shared, session, local),
        _ => Err(ParseError::Syntax),
    }
}

fn exec(
    shared: &Shared,
    session: &mut Session,
    local: &mut LocalStats,
) -> Result<Reply, ParseError> {
    let state = std::mem::take(&mut session.tx);
    let Some(queue) = state.queue else {
        return Err(ParseError::Invalid("EXEC without MULTI".into()));
    };
    if state.failed {
        return Ok(Reply::error(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    // Borrowed views of the queued (owned) requests, the form commands take.
    let queue: Vec<Vec<&[u8]>> = queue.iter().map(|args| super::slices(args)).collect();
    let ids: Vec<Option<CmdId>> = queue
        .iter()
        .map(|args| args.first().and_then(|n| lookup(n)).map(|s| s.id))
        .collect();
    let mut replies: Vec<Option<Reply>> = vec![None; queue.len()];
    let max_value = shared.config.max_value_size;
    // FLUSHALL, FLUSHDB and DBSIZE act on the whole key space, which a transaction over some
    // keys cannot hold: they split the queue. Each part's key-value commands run in one engine
    // transaction, then its other commands, then the splitting command, in the queued order
    // (`MULTI; FLUSHDB; SET k 1; EXEC` leaves k set, as in Redis; run after the key-value part,
    // the flush had wiped it). Only such a transaction is atomic part by part, not as a whole.
    let splits =
        |id: &Option<CmdId>| matches!(id, Some(CmdId::Flushall | CmdId::Flushdb | CmdId::Dbsize));
    let mut start = 0;
    loop {
        let end = ids[start..]
            .iter()
            .position(splits)
            .map_or(queue.len(), |p| start + p);
        // WATCH is checked in the first part's transaction, before anything has run.
        let watched: &[(Bytes, Option<u64>)] = if start == 0 { &state.watched } else { &[] };
        let mut keys: Vec<&[u8]> = watched.iter().map(|(k, _)| &k[..]).collect();
        for (args, id) in queue[start..end].iter().zip(&ids[start..end]) {
            if let Some(id) = id.filter(|id| counter::is_kv(*id)) {
                keys.extend(counter::keys_of(id, args));
            }
        }
        let part = start..end;
        let committed = shared.engine.kv_txn(&keys, |txn| {
            let changed = watched
                .iter()
                .any(|(key, cas)| txn.get(key).map(|i| i.cas) != *cas);
            if changed {
                return false;
            }
            for ((args, id), slot) in queue[part.clone()]
                .iter()
                .zip(&ids[part.clone()])
                .zip(replies[part.clone()].iter_mut())
            {
                if let Some(id) = id.filter(|id| counter::is_kv(*id)) {
                    *slot = Some(counter::apply(id, args, txn, max_value));
                }
            }
            true
        });
        if !committed {
            return Ok(Reply::NullArray);
        }
        for i in start..end {
            if replies[i].is_none() {
                replies[i] = Some(super::execute(shared, session, &queue[i], local));
            }
        }
        if end == queue.len() {
            break;
        }
        replies[end] = Some(super::execute(shared, session, &queue[end], local));
        start = end + 1;
    }
    Ok(Reply::Array(replies.into_iter().flatten().collect()))
}
