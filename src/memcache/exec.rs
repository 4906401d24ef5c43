//! memcached command semantics over the engine's key-value space: what each [`McRequest`] does
//! and which reply it gets.
//!
//! memcached's own rules, not Redis's: `incr`/`decr` need an existing key holding a decimal
//! number that fits 64 bits (read as memcached's strtoull reads it), `decr` floors at 0,
//! `incr` wraps at 2^64, and neither changes the TTL; an exptime over 30 days (2592000 s) is an
//! absolute Unix time, a negative one is already expired; `cas` answers `EXISTS`/`NOT_FOUND`.
//! Every request runs in one engine transaction over its keys, so read-modify-write commands
//! (`incr`, `append`, `cas`, `ma`) are atomic against RESP clients too.
//!
//! Authentication is memcached's own for the text protocol (its `-Y` mode): while the default
//! user needs a password, a connection's first `set` carries `<user> <password>` as its data
//! and answers `STORED` when they sign in, and every other request answers
//! `CLIENT_ERROR unauthenticated`. The users are the daemon's (src/acl/), and a request is
//! allowed as the RESP command that does the same thing (`get`, `set`, `incrby`, `del`,
//! `expire`, `flushall`, `info`), keys and all.

use super::{McState, McStats};
use crate::acl::User;
use crate::clients::ClientHandle;
use crate::cmd::COMMANDS;
use crate::counters::LocalCounters;
use crate::state::Shared;
use bytes::Bytes;
use ratelimitd_engine::{Item, KvError, KvTxn, KvWrite, Nanos};
use ratelimitd_protocol::memcache::{
    McError, McReply, McRequest, McValue, MetaCmd, MetaRequest, StoreCmd,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The memcached version reported by `version` and `stats`: the protocol level implemented
/// (clients such as Dalli use it to pick features). `stats` adds `ratelimitd_version`.
pub const MEMCACHED_VERSION: &str = "1.6.21";

/// memcached's boundary between relative and absolute exptimes (30 days, in seconds).
const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

const NS_PER_S: u64 = 1_000_000_000;

/// What the connection does after a request.
pub enum Outcome {
    Reply(McReply),
    /// `quit`: close without a reply.
    Close,
}

/// An exptime read with memcached's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Never,
    At(Nanos),
    /// Negative, or an absolute time already past: the item is stored and gone at once.
    Expired,
}

fn expiry(now: Nanos, exptime: i64) -> Expiry {
    match exptime {
        0 => Expiry::Never,
        e if e < 0 => Expiry::Expired,
        e if e <= REALTIME_MAXDELTA => Expiry::At(now.saturating_add(e as u64 * NS_PER_S)),
        e => {
            let at = (e as u64).saturating_mul(NS_PER_S);
            if at <= now {
                Expiry::Expired
            } else {
                Expiry::At(at)
            }
        }
    }
}

impl Expiry {
    fn as_option(self) -> Option<Nanos> {
        match self {
            Expiry::At(at) => Some(at),
            _ => None,
        }
    }
}

/// True when `req` changes the item space: refused on a replica (whose items come from its
/// primary alone, so a local write would never be reconciled) and on a primary short of good
/// replicas, as RESP writes are.
fn is_write(req: &McRequest) -> bool {
    match req {
        McRequest::Store { .. }
        | McRequest::TooLarge { .. }
        | McRequest::Arith { .. }
        | McRequest::Delete { .. }
        | McRequest::Touch { .. }
        | McRequest::FlushAll { .. }
        | McRequest::Gat { .. } => true,
        McRequest::Meta(m) => match m.cmd {
            MetaCmd::Get => m.flags.ttl.is_some() || m.flags.vivify.is_some(),
            MetaCmd::Set | MetaCmd::Delete | MetaCmd::Arithmetic => true,
        },
        McRequest::Get { .. }
        | McRequest::Version
        | McRequest::Verbosity { .. }
        | McRequest::Stats { .. }
        | McRequest::Quit
        | McRequest::MetaNoop => false,
    }
}

/// What a memcached request runs with: the shared state, the listener's own state, the
/// connection's counters (which count every write for the snapshot) and who it signed in as.
pub struct McCtx<'a> {
    pub shared: &'a Arc<Shared>,
    pub state: &'a Arc<McState>,
    pub counters: &'a mut LocalCounters,
    pub auth: &'a mut McAuth,
    /// What CLIENT LIST and CLIENT KILL see of the connection (its user, once signed in).
    pub handle: &'a ClientHandle,
}

/// Who a memcached connection runs as.
#[derive(Debug, Default)]
pub struct McAuth {
    /// The user it signed in as, and the registry's generation then; None: the default user,
    /// which serves only while it is `on nopass`.
    user: Option<(Arc<User>, u64)>,
}

/// The RESP rows whose permissions a memcached request needs, and whether it writes its keys.
fn needs(req: &McRequest) -> (&'static [&'static str], bool) {
    match req {
        McRequest::Get { .. } => (&["get"], false),
        McRequest::Gat { .. } => (&["get", "expire"], true),
        McRequest::Store { .. } | McRequest::TooLarge { .. } => (&["set"], true),
        McRequest::Arith { incr: true, .. } => (&["incrby"], true),
        McRequest::Arith { incr: false, .. } => (&["decrby"], true),
        McRequest::Delete { .. } => (&["del"], true),
        McRequest::Touch { .. } => (&["expire"], true),
        McRequest::FlushAll { .. } => (&["flushall"], true),
        McRequest::Stats { .. } => (&["info"], false),
        McRequest::Meta(m) => match m.cmd {
            MetaCmd::Get if m.flags.ttl.is_some() || m.flags.vivify.is_some() => {
                (&["get", "set"], true)
            }
            MetaCmd::Get => (&["get"], false),
            MetaCmd::Set => (&["set"], true),
            MetaCmd::Delete => (&["del"], true),
            MetaCmd::Arithmetic => (&["incrby"], true),
        },
        McRequest::Version
        | McRequest::Verbosity { .. }
        | McRequest::Quit
        | McRequest::MetaNoop => (&[], false),
    }
}

/// The keys a memcached request names.
fn keys_of(req: &McRequest) -> Vec<&[u8]> {
    match req {
        McRequest::Get { keys, .. } | McRequest::Gat { keys, .. } => {
            keys.iter().map(|k| &k[..]).collect()
        }
        McRequest::Store { key, .. }
        | McRequest::TooLarge { key, .. }
        | McRequest::Arith { key, .. }
        | McRequest::Delete { key, .. }
        | McRequest::Touch { key, .. } => vec![&key[..]],
        McRequest::Meta(m) => vec![&m.key[..]],
        _ => Vec::new(),
    }
}

/// Sign in, or refuse what the connection's user may not do: None lets the request run.
fn authorize(cx: &mut McCtx<'_>, req: &McRequest) -> Option<Outcome> {
    let users = &cx.shared.users;
    if cx.auth.user.is_none() && !users.default_open() {
        if let McRequest::Store {
            cmd: StoreCmd::Set,
            data,
            noreply,
            ..
        } = req
        {
            let text = String::from_utf8_lossy(data);
            let mut words = text.split_ascii_whitespace();
            let signed = match (words.next(), words.next(), words.next()) {
                (Some(user), Some(pass), None) => users
                    .authenticate(Some(user.as_bytes()), pass.as_bytes())
                    .ok(),
                _ => None,
            };
            return Some(Outcome::Reply(match signed {
                Some(user) => {
                    cx.handle.set_user(&user.name);
                    cx.handle.signed_in.store(true, Ordering::Relaxed);
                    cx.auth.user = Some((user, users.generation()));
                    quiet(McReply::Status("STORED"), *noreply)
                }
                None => McReply::Error("CLIENT_ERROR authentication failure".into()),
            }));
        }
        if matches!(req, McRequest::Quit) {
            return None;
        }
        return Some(Outcome::Reply(McReply::Error(
            "CLIENT_ERROR unauthenticated".into(),
        )));
    }
    let generation = users.generation();
    let user = match cx.auth.user.as_mut() {
        Some((user, at)) => {
            if *at != generation {
                // The users changed: take this one again; a deleted user's connection ends.
                let Some(now) = users.get(&user.name) else {
                    return Some(Outcome::Close);
                };
                *user = now;
                *at = generation;
            }
            user.clone()
        }
        None => users.default_user(),
    };
    let (rows, write) = needs(req);
    let catalog = users.catalog();
    for name in rows {
        let Some(id) = COMMANDS.lookup(name.as_bytes()).map(|f| f.index) else {
            continue;
        };
        if !user.may_run(id) {
            return Some(Outcome::Reply(McReply::Error(format!(
                "CLIENT_ERROR NOPERM User {} has no permissions to run the '{}' command",
                user.name,
                catalog.entry(id).map_or(*name, |e| e.name.as_str())
            ))));
        }
    }
    if !user.all_keys() && keys_of(req).iter().any(|k| !user.may_access(k, write)) {
        return Some(Outcome::Reply(McReply::Error(
            "CLIENT_ERROR NOPERM No permissions to access a key".into(),
        )));
    }
    None
}

impl McCtx<'_> {
    /// Run `f` in one engine transaction over `keys`, and count the writes it made.
    fn txn<R>(&mut self, keys: &[&[u8]], f: impl FnOnce(&mut KvTxn<'_>) -> R) -> R {
        let (out, writes) = self.shared.engine.kv_txn(keys, |t| {
            let out = f(t);
            (out, t.writes())
        });
        self.counters.changed(writes);
        out
    }
}

/// Execute one request.
pub fn execute(cx: &mut McCtx<'_>, req: McRequest) -> Outcome {
    if let Some(refused) = authorize(cx, &req) {
        return refused;
    }
    let shared = cx.shared;
    if is_write(&req) {
        if let Some(why) = shared.repl.write_refusal() {
            // memcached has no READONLY; a SERVER_ERROR line carrying Redis's text is what
            // memcached clients surface as a server-side refusal. Sent even with noreply.
            return Outcome::Reply(McReply::Error(format!("SERVER_ERROR {why}")));
        }
    }
    let state = cx.state.clone();
    let stats = &state.stats;
    let max_value = shared.config.max_value_size;
    let reply = match req {
        McRequest::Get { keys, cas } => get(cx, &keys, None, cas),
        McRequest::Gat { exptime, keys, cas } => get(cx, &keys, Some(exptime), cas),
        McRequest::Store {
            cmd,
            key,
            flags,
            exptime,
            cas_unique,
            data,
            noreply,
        } => {
            McStats::bump(&stats.cmd_set);
            let reply = cx.txn(&[&key], |t| {
                store(
                    t, stats, cmd, &key, flags, exptime, cas_unique, data, max_value,
                )
            });
            quiet(reply, noreply)
        }
        McRequest::TooLarge { cmd, key, noreply } => {
            McStats::bump(&stats.cmd_set);
            // memcached drops the old value when a `set` fails, so no stale value survives.
            if cmd == StoreCmd::Set {
                cx.txn(&[&key], |t| t.write(&key, KvWrite::Delete).ok());
            }
            quiet(McError::TooLarge.into(), noreply)
        }
        McRequest::Arith {
            incr,
            key,
            delta,
            noreply,
        } => {
            let reply = cx.txn(&[&key], |t| {
                let Some(item) = t.get(&key).cloned() else {
                    McStats::bump(if incr {
                        &stats.incr_misses
                    } else {
                        &stats.decr_misses
                    });
                    return McReply::Status("NOT_FOUND");
                };
                McStats::bump(if incr {
                    &stats.incr_hits
                } else {
                    &stats.decr_hits
                });
                match arith(t, &key, item, incr, delta, None) {
                    Ok((n, _)) => McReply::Number(n),
                    Err(e) => e,
                }
            });
            quiet(reply, noreply)
        }
        McRequest::Delete { key, noreply } => {
            let reply = cx.txn(&[&key], |t| {
                if t.get(&key).is_none() {
                    McStats::bump(&stats.delete_misses);
                    return McReply::Status("NOT_FOUND");
                }
                McStats::bump(&stats.delete_hits);
                match t.write(&key, KvWrite::Delete) {
                    Ok(_) => McReply::Status("DELETED"),
                    Err(e) => oom(e),
                }
            });
            quiet(reply, noreply)
        }
        McRequest::Touch {
            key,
            exptime,
            noreply,
        } => {
            McStats::bump(&stats.cmd_touch);
            let reply = cx.txn(&[&key], |t| {
                let Some(item) = t.get(&key).cloned() else {
                    McStats::bump(&stats.touch_misses);
                    return McReply::Status("NOT_FOUND");
                };
                McStats::bump(&stats.touch_hits);
                match set_expiry(t, &key, item, exptime) {
                    Ok(_) => McReply::Status("TOUCHED"),
                    Err(e) => oom(e),
                }
            });
            quiet(reply, noreply)
        }
        McRequest::FlushAll { delay, noreply } => {
            McStats::bump(&stats.cmd_flush);
            // The delay is an exptime: over 30 days it is an absolute Unix time (and one
            // already past flushes nothing, as in memcached, where it only invalidates items
            // stored before it); 0 or negative flushes now. As in memcached, only the latest
            // flush_all counts: it replaces a pending delayed one.
            let now = shared.engine.now();
            let when = match delay {
                d if d <= 0 => Some(now),
                d => expiry(now, d).as_option(),
            };
            match when {
                Some(at) if at > now => state.set_flush_at(Some(at)),
                // Items only: memcached's flush_all must not hand every rate-limited client a
                // fresh allowance (FLUSHALL over RESP drops both).
                Some(_) => {
                    state.set_flush_at(None);
                    shared.engine.kv_flush();
                    cx.counters.changed(1);
                }
                None => state.set_flush_at(None),
            }
            quiet(McReply::Status("OK"), noreply)
        }
        McRequest::Version => McReply::Version(MEMCACHED_VERSION.to_string()),
        McRequest::Verbosity { noreply } => quiet(McReply::Status("OK"), noreply),
        McRequest::Stats { group } => stats_reply(shared, &state, group.as_deref()),
        McRequest::Quit => return Outcome::Close,
        McRequest::MetaNoop => McReply::Meta {
            code: "MN",
            flags: Vec::new(),
            value: None,
        },
        McRequest::Meta(m) => meta(cx, *m),
    };
    Outcome::Reply(reply)
}

fn quiet(reply: McReply, noreply: bool) -> McReply {
    // Errors are always sent, even with noreply: a client that asked for silence still needs to
    // learn that its request was refused (memcached drops some of them).
    if noreply && !matches!(reply, McReply::Error(_)) {
        McReply::None
    } else {
        reply
    }
}

fn oom(_: KvError) -> McReply {
    McReply::Error("SERVER_ERROR out of memory storing object".into())
}

/// `get`, `gets`, `gat`, `gats`: one transaction over all keys, so a multiget is a consistent
/// snapshot.
fn get(cx: &mut McCtx<'_>, keys: &[Bytes], touch: Option<i64>, with_cas: bool) -> McReply {
    let state = cx.state.clone();
    let stats = &state.stats;
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    cx.txn(&refs, |t| {
        let mut out = Vec::new();
        for key in keys {
            McStats::bump(&stats.cmd_get);
            if touch.is_some() {
                McStats::bump(&stats.cmd_touch);
            }
            let Some(item) = t.get(key).cloned() else {
                McStats::bump(&stats.get_misses);
                if touch.is_some() {
                    McStats::bump(&stats.touch_misses);
                }
                continue;
            };
            McStats::bump(&stats.get_hits);
            let mut cas = item.cas;
            if let Some(exptime) = touch {
                McStats::bump(&stats.touch_hits);
                match set_expiry(t, key, item.clone(), exptime) {
                    Ok(c) => cas = c.unwrap_or(cas),
                    Err(e) => return oom(e),
                }
            }
            out.push(McValue {
                key: key.clone(),
                flags: item.flags,
                data: Bytes::from(item.value),
                cas: with_cas.then_some(cas),
            });
        }
        McReply::Values(out)
    })
}

/// Give an existing item a new exptime, keeping its CAS as memcached does (a `gets` token
/// taken before a `touch` still matches). Returns that CAS, or None if it expired at once.
fn set_expiry(
    t: &mut KvTxn<'_>,
    key: &[u8],
    item: Item,
    exptime: i64,
) -> Result<Option<u64>, KvError> {
    match expiry(t.now(), exptime) {
        Expiry::Expired => t.write(key, KvWrite::Delete).map(|_| None),
        e => t
            .write(
                key,
                KvWrite::Retime(Item {
                    expires_at: e.as_option(),
                    ..item
                }),
            )
            .map(Some),
    }
}

/// Write a value with memcached's exptime rules; returns the new CAS (0 if it expired at once).
fn put(
    t: &mut KvTxn<'_>,
    key: &[u8],
    value: Vec<u8>,
    flags: u32,
    expires: Expiry,
) -> Result<u64, KvError> {
    if expires == Expiry::Expired {
        return t.write(key, KvWrite::Delete);
    }
    t.write(
        key,
        KvWrite::Put(Item {
            value,
            flags,
            cas: 0,
            expires_at: expires.as_option(),
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn store(
    t: &mut KvTxn<'_>,
    stats: &McStats,
    cmd: StoreCmd,
    key: &[u8],
    flags: u32,
    exptime: i64,
    cas_unique: u64,
    data: Bytes,
    max_value: usize,
) -> McReply {
    let old = t.get(key).cloned();
    let expires = expiry(t.now(), exptime);
    let (value, flags, expires) = match (cmd, &old) {
        (StoreCmd::Add, Some(_)) | (StoreCmd::Replace, None) => {
            return McReply::Status("NOT_STORED")
        }
        (StoreCmd::Append | StoreCmd::Prepend, None) => return McReply::Status("NOT_STORED"),
        (StoreCmd::Cas, None) => {
            McStats::bump(&stats.cas_misses);
            return McReply::Status("NOT_FOUND");
        }
        (StoreCmd::Cas, Some(o)) if o.cas != cas_unique => {
            McStats::bump(&stats.cas_badval);
            return McReply::Status("EXISTS");
        }
        (StoreCmd::Append | StoreCmd::Prepend, Some(o)) => {
            // The flags and exptime of the command are ignored, as in memcached.
            if o.value.len() + data.len() > max_value {
                return McError::TooLarge.into();
            }
            let value = if cmd == StoreCmd::Append {
                [&o.value[..], &data[..]].concat()
            } else {
                [&data[..], &o.value[..]].concat()
            };
            let e = o.expires_at.map(Expiry::At).unwrap_or(Expiry::Never);
            (value, o.flags, e)
        }
        _ => {
            if cmd == StoreCmd::Cas {
                McStats::bump(&stats.cas_hits);
            }
            (data.to_vec(), flags, expires)
        }
    };
    match put(t, key, value, flags, expires) {
        Ok(_) => {
            McStats::bump(&stats.total_items);
            McReply::Status("STORED")
        }
        Err(e) => oom(e),
    }
}

/// Read a stored value as memcached's incr/decr does (see
/// [`ratelimitd_protocol::memcache::parse_number`]): `"5"`, `"  10"`, `"+5"`, `"0007"`, and
/// the space-padded numbers memcached leaves after shrinking one.
fn stored_number(v: &[u8]) -> Option<u64> {
    ratelimitd_protocol::memcache::parse_number(v)
}

/// Apply a delta to an existing item, keeping its flags and TTL unless `ttl` is given. Returns
/// the new number and CAS.
fn arith(
    t: &mut KvTxn<'_>,
    key: &[u8],
    item: Item,
    incr: bool,
    delta: u64,
    ttl: Option<i64>,
) -> Result<(u64, u64), McReply> {
    let Some(current) = stored_number(&item.value) else {
        return Err(McReply::Error(
            "CLIENT_ERROR cannot increment or decrement non-numeric value".into(),
        ));
    };
    let next = if incr {
        current.wrapping_add(delta)
    } else {
        current.saturating_sub(delta)
    };
    let expires = match ttl {
        Some(ttl) => expiry(t.now(), ttl),
        None => item.expires_at.map(Expiry::At).unwrap_or(Expiry::Never),
    };
    let cas = put(t, key, next.to_string().into_bytes(), item.flags, expires).map_err(oom)?;
    Ok((next, cas))
}

/// The return flags a meta reply carries, in the order the client asked for them.
fn meta_flags(m: &MetaRequest, item: Option<&Item>, now: Nanos) -> Vec<Bytes> {
    let mut out = Vec::new();
    for &c in &m.flags.returns {
        let f = match (c, item) {
            (b'k', _) => Some([&b"k"[..], &m.raw_key].concat()),
            (b'O', _) => m.flags.opaque.as_ref().map(|o| [&b"O"[..], o].concat()),
            (b'c', Some(i)) => Some(format!("c{}", i.cas).into_bytes()),
            (b'f', Some(i)) => Some(format!("f{}", i.flags).into_bytes()),
            (b's', Some(i)) => Some(format!("s{}", i.value.len()).into_bytes()),
            (b't', Some(i)) => Some(
                match i.expires_at {
                    None => "t-1".to_string(),
                    Some(at) => format!("t{}", at.saturating_sub(now).div_ceil(NS_PER_S)),
                }
                .into_bytes(),
            ),
            _ => None,
        };
        out.extend(f.map(Bytes::from));
    }
    if m.flags.base64 && m.flags.returns.contains(&b'k') {
        out.push(Bytes::from_static(b"b"));
    }
    out
}

fn meta_reply(code: &'static str, m: &MetaRequest, item: Option<&Item>, now: Nanos) -> McReply {
    McReply::Meta {
        code,
        flags: meta_flags(m, item, now),
        value: None,
    }
}

/// `mg`, `ms`, `md`, `ma`.
fn meta(cx: &mut McCtx<'_>, m: MetaRequest) -> McReply {
    let state = cx.state.clone();
    let stats = &state.stats;
    let max_value = cx.shared.config.max_value_size;
    let key = m.key.clone();
    cx.txn(&[&key], |t| {
        let now = t.now();
        let old = t.get(&key).cloned();
        let q = m.flags.quiet;
        match m.cmd {
            MetaCmd::Get => {
                McStats::bump(&stats.cmd_get);
                let Some(mut item) = old else {
                    McStats::bump(&stats.get_misses);
                    return if q {
                        McReply::None
                    } else {
                        meta_reply("EN", &m, None, now)
                    };
                };
                McStats::bump(&stats.get_hits);
                if let Some(ttl) = m.flags.ttl {
                    match set_expiry(t, &key, item.clone(), ttl) {
                        Ok(cas) => {
                            item.cas = cas.unwrap_or(item.cas);
                            item.expires_at = expiry(now, ttl).as_option();
                        }
                        Err(e) => return oom(e),
                    }
                }
                let flags = meta_flags(&m, Some(&item), now);
                McReply::Meta {
                    code: "HD",
                    flags,
                    value: m.flags.value.then(|| Bytes::from(item.value)),
                }
            }
            MetaCmd::Set => {
                McStats::bump(&stats.cmd_set);
                let data = m.data.clone().unwrap_or_default();
                if let Some(c) = m.flags.compare_cas {
                    match &old {
                        None => return meta_reply("NF", &m, None, now),
                        Some(o) if o.cas != c => return meta_reply("EX", &m, None, now),
                        _ => {}
                    }
                }
                let cmd = match m.flags.mode.map(|c| c.to_ascii_uppercase()) {
                    None | Some(b'S') => StoreCmd::Set,
                    Some(b'E') => StoreCmd::Add,
                    Some(b'A') => StoreCmd::Append,
                    Some(b'P') => StoreCmd::Prepend,
                    Some(b'R') => StoreCmd::Replace,
                    Some(_) => {
                        return McReply::Error("CLIENT_ERROR invalid mode for ms STORE".into())
                    }
                };
                let flags = m.flags.client_flags.unwrap_or(0);
                let exptime = m.flags.ttl.unwrap_or(0);
                match store(t, stats, cmd, &key, flags, exptime, 0, data, max_value) {
                    McReply::Status("STORED") => {
                        let item = t.get(&key).cloned();
                        if q {
                            McReply::None
                        } else {
                            meta_reply("HD", &m, item.as_ref(), now)
                        }
                    }
                    McReply::Status(_) => meta_reply("NS", &m, None, now),
                    other => other,
                }
            }
            MetaCmd::Delete => {
                let Some(o) = old else {
                    McStats::bump(&stats.delete_misses);
                    return if q {
                        McReply::None
                    } else {
                        meta_reply("NF", &m, None, now)
                    };
                };
                if m.flags.compare_cas.is_some_and(|c| c != o.cas) {
                    return meta_reply("EX", &m, None, now);
                }
                McStats::bump(&stats.delete_hits);
                match t.write(&key, KvWrite::Delete) {
                    Ok(_) if q => McReply::None,
                    Ok(_) => meta_reply("HD", &m, None, now),
                    Err(e) => oom(e),
                }
            }
            MetaCmd::Arithmetic => {
                let incr = match m.flags.mode {
                    None | Some(b'I' | b'i' | b'+') => true,
                    Some(b'D' | b'd' | b'-') => false,
                    Some(_) => return McReply::Error("CLIENT_ERROR invalid mode for ma".into()),
                };
                let item = match old {
                    Some(o) => {
                        if m.flags.compare_cas.is_some_and(|c| c != o.cas) {
                            return meta_reply("EX", &m, None, now);
                        }
                        McStats::bump(if incr {
                            &stats.incr_hits
                        } else {
                            &stats.decr_hits
                        });
                        let delta = m.flags.delta.unwrap_or(1);
                        if let Err(e) = arith(t, &key, o, incr, delta, m.flags.ttl) {
                            return e;
                        }
                        t.get(&key).cloned()
                    }
                    None => {
                        McStats::bump(if incr {
                            &stats.incr_misses
                        } else {
                            &stats.decr_misses
                        });
                        let Some(ttl) = m.flags.vivify else {
                            return if q {
                                McReply::None
                            } else {
                                meta_reply("NF", &m, None, now)
                            };
                        };
                        // Auto-create with the initial value; the delta is not applied.
                        let initial = m.flags.initial.unwrap_or(0).to_string().into_bytes();
                        if let Err(e) = put(t, &key, initial, 0, expiry(now, ttl)) {
                            return oom(e);
                        }
                        McStats::bump(&stats.total_items);
                        // A vivified item with a past TTL is gone at once; report its value.
                        Some(t.get(&key).cloned().unwrap_or(Item {
                            value: m.flags.initial.unwrap_or(0).to_string().into_bytes(),
                            ..Item::default()
                        }))
                    }
                };
                if q {
                    return McReply::None;
                }
                let flags = meta_flags(&m, item.as_ref(), now);
                McReply::Meta {
                    code: "HD",
                    flags,
                    value: if m.flags.value {
                        item.map(|i| Bytes::from(i.value))
                    } else {
                        None
                    },
                }
            }
        }
    })
}

/// `stats` with memcached's field names (the ones client libraries and dashboards read).
fn stats_reply(shared: &Shared, state: &McState, group: Option<&[u8]>) -> McReply {
    let s = &state.stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed).to_string();
    match group {
        None => {}
        Some(b"reset") => {
            for c in [
                &s.cmd_get,
                &s.cmd_set,
                &s.cmd_flush,
                &s.cmd_touch,
                &s.get_hits,
                &s.get_misses,
                &s.delete_hits,
                &s.delete_misses,
                &s.incr_hits,
                &s.incr_misses,
                &s.decr_hits,
                &s.decr_misses,
                &s.cas_hits,
                &s.cas_misses,
                &s.cas_badval,
                &s.touch_hits,
                &s.touch_misses,
                &s.total_items,
                &s.total_connections,
                &s.rejected_connections,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            return McReply::Status("RESET");
        }
        Some(b"settings") => {
            return McReply::Stats(vec![
                ("maxbytes".into(), limit_maxbytes(shared).to_string()),
                ("maxconns".into(), shared.config.maxclients.to_string()),
                (
                    "tcpport".into(),
                    shared.ports.memcached.unwrap_or(0).to_string(),
                ),
                (
                    "item_size_max".into(),
                    shared.config.max_value_size.to_string(),
                ),
                ("cas_enabled".into(), "yes".into()),
                ("binding_protocol".into(), "ascii".into()),
            ])
        }
        Some(b"items" | b"slabs" | b"sizes" | b"conns") => return McReply::Stats(Vec::new()),
        Some(_) => return McReply::Error("ERROR".into()),
    }
    let engine = shared.engine.stats();
    let uptime = shared.started.elapsed();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let threads = shared
        .config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    McReply::Stats(vec![
        ("pid".into(), std::process::id().to_string()),
        ("uptime".into(), uptime.as_secs().to_string()),
        ("time".into(), now.to_string()),
        ("version".into(), MEMCACHED_VERSION.into()),
        (
            "ratelimitd_version".into(),
            env!("CARGO_PKG_VERSION").into(),
        ),
        ("pointer_size".into(), (usize::BITS).to_string()),
        ("curr_connections".into(), get(&s.curr_connections)),
        ("total_connections".into(), get(&s.total_connections)),
        ("rejected_connections".into(), get(&s.rejected_connections)),
        ("cmd_get".into(), get(&s.cmd_get)),
        ("cmd_set".into(), get(&s.cmd_set)),
        ("cmd_flush".into(), get(&s.cmd_flush)),
        ("cmd_touch".into(), get(&s.cmd_touch)),
        ("get_hits".into(), get(&s.get_hits)),
        ("get_misses".into(), get(&s.get_misses)),
        ("get_expired".into(), "0".into()),
        ("delete_misses".into(), get(&s.delete_misses)),
        ("delete_hits".into(), get(&s.delete_hits)),
        ("incr_misses".into(), get(&s.incr_misses)),
        ("incr_hits".into(), get(&s.incr_hits)),
        ("decr_misses".into(), get(&s.decr_misses)),
        ("decr_hits".into(), get(&s.decr_hits)),
        ("cas_misses".into(), get(&s.cas_misses)),
        ("cas_hits".into(), get(&s.cas_hits)),
        ("cas_badval".into(), get(&s.cas_badval)),
        ("touch_hits".into(), get(&s.touch_hits)),
        ("touch_misses".into(), get(&s.touch_misses)),
        ("threads".into(), threads.to_string()),
        ("bytes".into(), engine.memory_bytes.to_string()),
        // Items only; rate-limit state is not a memcached item (it shares the memory bound).
        ("curr_items".into(), shared.engine.kv_count().to_string()),
        ("total_items".into(), get(&s.total_items)),
        ("expired_unfetched".into(), "0".into()),
        ("evicted_unfetched".into(), "0".into()),
        ("evictions".into(), engine.evicted.to_string()),
        ("reclaimed".into(), engine.expired.to_string()),
        ("limit_maxbytes".into(), limit_maxbytes(shared).to_string()),
    ])
}

/// `--maxmemory` in bytes, or 0 when unbounded.
fn limit_maxbytes(shared: &Shared) -> u64 {
    shared.config.maxmemory.map_or(0, |m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptimes_follow_memcached() {
        let now = 1_700_000_000 * NS_PER_S;
        assert_eq!(expiry(now, 0), Expiry::Never);
        assert_eq!(expiry(now, -1), Expiry::Expired);
        assert_eq!(expiry(now, 60), Expiry::At(now + 60 * NS_PER_S));
        assert_eq!(
            expiry(now, REALTIME_MAXDELTA),
            Expiry::At(now + REALTIME_MAXDELTA as u64 * NS_PER_S)
        );
        assert_eq!(
            expiry(now, REALTIME_MAXDELTA + 1),
            Expiry::Expired,
            "1970 is past"
        );
        assert_eq!(
            expiry(now, 1_800_000_000),
            Expiry::At(1_800_000_000 * NS_PER_S)
        );
    }

    #[test]
    fn stored_numbers() {
        assert_eq!(stored_number(b"42"), Some(42));
        assert_eq!(stored_number(b"99 "), Some(99));
        assert_eq!(stored_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(stored_number(b"18446744073709551616"), None);
        assert_eq!(stored_number(b"-1"), None);
        assert_eq!(stored_number(b""), None);
        assert_eq!(stored_number(b"1x"), None);
    }
}
