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
//! Commands that act on every key (FLUSHALL, FLUSHDB, DBSIZE: flagged `WholeKeyspace`) split
//! the queue into parts run one after the other that way, so they run where they were queued.
//!
//! Queuing-time errors (unknown command, wrong arity, NOAUTH) are recorded by dispatch
//! ([`TxState::flag_error`](super::session::TxState::flag_error)) and make EXEC answer
//! EXECABORT; runtime errors inside EXEC are per-element errors, as in Redis.

use super::dispatch::execute;
use super::session::TxState;
use super::spec::{Ctx, Flag, Found, Run};
use bytes::Bytes;
use ratelimitd_protocol::{ParseError, Reply};

/// MULTI.
pub fn multi(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let tx = &mut ctx.session.tx;
    if tx.queuing() {
        return Err(ParseError::Invalid("MULTI calls can not be nested".into()));
    }
    tx.queue = Some(Vec::new());
    tx.failed = false;
    Ok(Reply::ok())
}

/// DISCARD.
pub fn discard(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    if !ctx.session.tx.queuing() {
        return Err(ParseError::Invalid("DISCARD without MULTI".into()));
    }
    ctx.session.tx = TxState::default();
    Ok(Reply::ok())
}

/// WATCH key [key ...]: EXEC fails if one of them changes first.
pub fn watch(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let tx = &mut ctx.session.tx;
    if tx.queuing() {
        return Err(ParseError::Invalid(
            "WATCH inside MULTI is not allowed".into(),
        ));
    }
    for key in &args[1..] {
        if tx.watched.iter().any(|(k, _)| k == key) {
            continue;
        }
        let cas = ctx.shared.engine.kv_get(key).map(|i| i.cas);
        tx.watched.push((Bytes::copy_from_slice(key), cas));
    }
    Ok(Reply::ok())
}

/// UNWATCH.
pub fn unwatch(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    ctx.session.tx.watched.clear();
    Ok(Reply::ok())
}

/// EXEC: run the queued commands; the key-value ones atomically.
pub fn exec(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let state = std::mem::take(&mut ctx.session.tx);
    let Some(queue) = state.queue else {
        return Err(ParseError::Invalid("EXEC without MULTI".into()));
    };
    if state.failed {
        return Ok(Reply::error(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    // Borrowed views of the queued (owned) requests, the form commands take.
    let queue: Vec<Vec<&[u8]>> = queue.iter().map(|args| crate::args::slices(args)).collect();
    let found: Vec<Option<Found>> = queue
        .iter()
        .map(|args| args.first().and_then(|n| ctx.commands.lookup(n)))
        .collect();
    let kv = |f: &Option<Found>| match f.map(|f| f.spec.run) {
        Some(Run::Kv(h)) => Some(h),
        _ => None,
    };
    let mut replies: Vec<Option<Reply>> = vec![None; queue.len()];
    let max_value = ctx.shared.config.max_value_size;
    // A whole-keyspace command cannot run inside a transaction over some keys: it splits the
    // queue. Each part's key-value commands run in one engine transaction, then its other
    // commands, then the splitting command, in the queued order (`MULTI; FLUSHDB; SET k 1;
    // EXEC` leaves k set, as in Redis). Only such a transaction is atomic part by part, not
    // as a whole.
    let splits = |f: &Option<Found>| f.is_some_and(|f| f.spec.flags.has(Flag::WholeKeyspace));
    let mut start = 0;
    loop {
        let end = found[start..]
            .iter()
            .position(splits)
            .map_or(queue.len(), |p| start + p);
        // WATCH is checked in the first part's transaction, before anything has run.
        let watched: &[(Bytes, Option<u64>)] = if start == 0 { &state.watched } else { &[] };
        let mut keys: Vec<&[u8]> = watched.iter().map(|(k, _)| &k[..]).collect();
        for (args, f) in queue[start..end].iter().zip(&found[start..end]) {
            if let (Some(f), Some(_)) = (f, kv(f)) {
                keys.extend(f.spec.keys.of(args));
            }
        }
        let part = start..end;
        let outcome = ctx.shared.engine.kv_txn(&keys, |txn| {
            let changed = watched
                .iter()
                .any(|(key, cas)| txn.get(key).map(|i| i.cas) != *cas);
            if changed {
                return None;
            }
            for ((args, f), slot) in queue[part.clone()]
                .iter()
                .zip(&found[part.clone()])
                .zip(replies[part.clone()].iter_mut())
            {
                if let (Some(f), Some(handler)) = (f, kv(f)) {
                    let reply = handler(txn, args, max_value);
                    ctx.counters.call(f.index, matches!(reply, Reply::Error(_)));
                    *slot = Some(reply);
                }
            }
            Some(txn.writes())
        });
        let Some(writes) = outcome else {
            return Ok(Reply::NullArray);
        };
        ctx.counters.changed(writes);
        for i in start..end {
            if replies[i].is_none() {
                replies[i] = Some(execute(ctx, &queue[i], found[i]));
            }
        }
        if end == queue.len() {
            break;
        }
        replies[end] = Some(execute(ctx, &queue[end], found[end]));
        start = end + 1;
    }
    Ok(Reply::Array(replies.into_iter().flatten().collect()))
}
