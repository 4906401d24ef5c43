//! The key-value commands over RESP: GET, SET (EX/PX/EXAT/PXAT/NX/XX/KEEPTTL/GET), SETEX,
//! PSETEX, SETNX, GETDEL, DEL, UNLINK, EXISTS, INCR/INCRBY/DECR/DECRBY, EXPIRE/PEXPIRE/
//! EXPIREAT/PEXPIREAT (NX/XX/GT/LT), TTL, PTTL, PERSIST, TYPE and MGET.
//!
//! They exist so that code rate-limiting with `INCR` + `EXPIRE` on Redis (django-ratelimit,
//! rack-attack, hand-written Lua-free patterns) runs unchanged against ratelimitd. Semantics and
//! error texts are Redis 7's. Every command runs inside one [`KvTxn`] over its keys, so each is
//! atomic by itself, and [`apply`] can also run inside the one transaction `EXEC` opens for a
//! whole `MULTI` block (src/cmd/multi.rs).
//!
//! Every value is a string, so `WRONGTYPE` cannot arise. Values are capped by
//! `--max-value-size`.

use super::table::{spec_of, CmdId};
use crate::server::Shared;
use bytes::Bytes;
use ratelimitd_engine::{Item, KvError, KvTxn, KvWrite, Nanos};
use ratelimitd_protocol::parse::parse_i64;
use ratelimitd_protocol::{Parse, ParseError, Reply};

const NS_PER_MS: u64 = 1_000_000;

/// Why a key-value command failed. `Display` is the whole error line, code included.
#[derive(Debug, thiserror::Error)]
pub enum KvCmdError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The memory bound refused a new key (Redis's OOM text).
    #[error(transparent)]
    Engine(#[from] KvError),
    #[error("ERR value is larger than max-value-size ({0} bytes)")]
    TooLarge(usize),
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// Carries the command name, lowercased.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR NX and XX, GT or LT options at the same time are not compatible")]
    NxWithOthers,
    #[error("ERR GT and LT options at the same time are not compatible")]
    GtAndLt,
    #[error("ERR Unsupported option {0}")]
    UnsupportedOption(String),
}

/// True for the commands of this family (those EXEC runs inside its transaction).
pub fn is_kv(id: CmdId) -> bool {
    matches!(
        id,
        CmdId::Get
            | CmdId::Set
            | CmdId::Setex
            | CmdId::Psetex
            | CmdId::Setnx
            | CmdId::Getdel
            | CmdId::Del
            | CmdId::Unlink
            | CmdId::Exists
            | CmdId::Incr
            | CmdId::Incrby
            | CmdId::Decr
            | CmdId::Decrby
            | CmdId::Expire
            | CmdId::Pexpire
            | CmdId::Expireat
            | CmdId::Pexpireat
            | CmdId::Ttl
            | CmdId::Pttl
            | CmdId::Persist
            | CmdId::Type
            | CmdId::Mget
    )
}

/// The keys a request names, from the command table's key positions (the same metadata
/// COMMAND reports, so the two cannot disagree).
pub fn keys_of<'a>(id: CmdId, args: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let spec = spec_of(id);
    if spec.first_key <= 0 || spec.step <= 0 {
        return Vec::new();
    }
    let argc = args.len() as i64;
    let last = if spec.last_key < 0 {
        argc + spec.last_key
    } else {
        spec.last_key.min(argc - 1)
    };
    (spec.first_key..=last)
        .step_by(spec.step as usize)
        .filter_map(|i| args.get(i as usize).map(|a| &a[..]))
        .collect()
}

/// Run one command atomically: lock its keys, apply, unlock.
pub fn execute(id: CmdId, shared: &Shared, args: &[&[u8]]) -> Reply {
    let keys = keys_of(id, args);
    let max_value = shared.config.max_value_size;
    shared
        .engine
        .kv_txn(&keys, |txn| apply(id, args, txn, max_value))
}

/// Run one command inside an open transaction (which must cover its keys).
pub fn apply(id: CmdId, args: &[&[u8]], txn: &mut KvTxn<'_>, max_value: usize) -> Reply {
    run(id, args, txn, max_value).unwrap_or_else(|e| Reply::error(e.to_string()))
}

fn run(
    id: CmdId,
    args: &[&[u8]],
    txn: &mut KvTxn<'_>,
    max_value: usize,
) -> Result<Reply, KvCmdError> {
    let mut p = Parse::new(args);
    let now = txn.now();
    match id {
        CmdId::Get => {
            let key = p.next_bytes()?;
            p.finish()?;
            Ok(value_reply(txn.get(key)))
        }
        CmdId::Mget => {
            let mut out = Vec::with_capacity(p.remaining());
            while let Some(key) = p.try_next() {
                out.push(value_reply(txn.get(key)));
            }
            Ok(Reply::Array(out))
        }
        CmdId::Set => set(&mut p, txn, max_value),
        CmdId::Setex | CmdId::Psetex => {
            let key = p.next_bytes()?;
            let amount = p.next_i64()?;
            let value = p.next_bytes()?;
            p.finish()?;
            let unit = if id == CmdId::Setex { 1000 } else { 1 };
            let name = p.command_name();
            let at = deadline(now, amount, unit, false, &name)?;
            check_size(value, max_value)?;
            put(txn, key, value.to_vec(), 0, Some(at))?;
            Ok(Reply::ok())
        }
        CmdId::Setnx => {
            let key = p.next_bytes()?;
            let value = p.next_bytes()?;
            p.finish()?;
            check_size(value, max_value)?;
            if txn.get(key).is_some() {
                return Ok(Reply::Integer(0));
            }
            put(txn, key, value.to_vec(), 0, None)?;
            Ok(Reply::Integer(1))
        }
        CmdId::Getdel => {
            let key = p.next_bytes()?;
            p.finish()?;
            let reply = value_reply(txn.get(key));
            if !matches!(reply, Reply::Null) {
                txn.write(key, KvWrite::Delete)?;
            }
            Ok(reply)
        }
        CmdId::Del | CmdId::Unlink => {
            let mut n = 0;
            while let Some(key) = p.try_next() {
                if txn.get(key).is_some() {
                    txn.write(key, KvWrite::Delete)?;
                    n += 1;
                }
            }
            Ok(Reply::Integer(n))
        }
        CmdId::Exists => {
            let mut n = 0;
            while let Some(key) = p.try_next() {
                n += i64::from(txn.get(key).is_some());
            }
            Ok(Reply::Integer(n))
        }
        CmdId::Incr | CmdId::Decr | CmdId::Incrby | CmdId::Decrby => {
            let key = p.next_bytes()?;
            let delta = match id {
                CmdId::Incr => 1,
                CmdId::Decr => -1,
                CmdId::Incrby => p.next_i64()?,
                _ => {
                    let d = p.next_i64()?;
                    d.checked_neg().ok_or(KvCmdError::DecrementOverflow)?
                }
            };
            p.finish()?;
            let (current, flags, expires_at) = match txn.get(key) {
                Some(item) => (
                    parse_i64(&item.value).ok_or(ParseError::NotInteger)?,
                    item.flags,
                    item.expires_at,
                ),
                None => (0, 0, None),
            };
            let next = current.checked_add(delta).ok_or(KvCmdError::Overflow)?;
            put(txn, key, next.to_string().into_bytes(), flags, expires_at)?;
            Ok(Reply::Integer(next))
        }
        CmdId::Expire | CmdId::Pexpire | CmdId::Expireat | CmdId::Pexpireat => {
            expire(id, &mut p, txn)
        }
        CmdId::Ttl | CmdId::Pttl => {
            let key = p.next_bytes()?;
            p.finish()?;
            let Some(item) = txn.get(key) else {
                return Ok(Reply::Integer(-2));
            };
            let Some(at) = item.expires_at else {
                return Ok(Reply::Integer(-1));
            };
            let ms = (at.saturating_sub(now) / NS_PER_MS) as i64;
            Ok(Reply::Integer(if id == CmdId::Ttl {
                (ms + 500) / 1000
            } else {
                ms
            }))
        }
        CmdId::Persist => {
            let key = p.next_bytes()?;
            p.finish()?;
            match txn.get(key) {
                Some(item) if item.expires_at.is_some() => {
                    let item = Item {
                        expires_at: None,
                        ..item.clone()
                    };
                    txn.write(key, KvWrite::Put(item))?;
                    Ok(Reply::Integer(1))
                }
                _ => Ok(Reply::Integer(0)),
            }
        }
        CmdId::Type => {
            let key = p.next_bytes()?;
            p.finish()?;
            Ok(Reply::simple(if txn.get(key).is_some() {
                "string"
            } else {
                "none"
            }))
        }
        _ => Err(ParseError::Syntax.into()),
    }
}

fn value_reply(item: Option<&Item>) -> Reply {
    match item {
        Some(i) => Reply::Bulk(Bytes::copy_from_slice(&i.value)),
        None => Reply::Null,
    }
}

fn check_size(value: &[u8], max: usize) -> Result<(), KvCmdError> {
    if value.len() > max {
        Err(KvCmdError::TooLarge(max))
    } else {
        Ok(())
    }
}

/// Store a value (a new CAS is assigned by the engine).
fn put(
    txn: &mut KvTxn<'_>,
    key: &[u8],
    value: Vec<u8>,
    flags: u32,
    expires_at: Option<Nanos>,
) -> Result<(), KvCmdError> {
    txn.write(
        key,
        KvWrite::Put(Item {
            value,
            flags,
            cas: 0,
            expires_at,
        }),
    )?;
    Ok(())
}

/// An absolute deadline in ns from a client's number: relative (`absolute` false) or a Unix
/// time, in seconds (`unit_ms` 1000) or milliseconds (1). Redis's rules: the number must be
/// positive, and the arithmetic must not overflow (`ERR invalid expire time in '<cmd>'`).
/// Deadlines beyond what u64 nanoseconds hold (year 2554) saturate.
fn deadline(
    now: Nanos,
    amount: i64,
    unit_ms: i64,
    absolute: bool,
    name: &str,
) -> Result<Nanos, KvCmdError> {
    let invalid = || KvCmdError::InvalidExpire(name.to_string());
    if amount <= 0 {
        return Err(invalid());
    }
    let ms = amount.checked_mul(unit_ms).ok_or_else(invalid)?;
    let at_ms = if absolute {
        ms
    } else {
        ms.checked_add((now / NS_PER_MS) as i64)
            .ok_or_else(invalid)?
    };
    Ok((at_ms as u64).saturating_mul(NS_PER_MS))
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]`, parsed as Redis's
/// `parseExtendedStringArgumentsOrReply` does (any conflict or repeat is a syntax error).
fn set(p: &mut Parse<'_>, txn: &mut KvTxn<'_>, max_value: usize) -> Result<Reply, KvCmdError> {
    let key = p.next_bytes()?;
    let value = p.next_bytes()?;
    let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
    let mut expire: Option<(i64, bool, i64)> = None; // (unit_ms, absolute, amount)
    while let Some(opt) = p.try_next() {
        let o = opt.to_ascii_uppercase();
        match &o[..] {
            b"NX" if !xx => nx = true,
            b"XX" if !nx => xx = true,
            b"GET" => get = true,
            b"KEEPTTL" if expire.is_none() => keepttl = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expire.is_none() && !keepttl => {
                let Some(n) = p.try_next() else {
                    return Err(ParseError::Syntax.into());
                };
                let amount = parse_i64(n).ok_or(ParseError::NotInteger)?;
                let unit = if o[0] == b'E' { 1000 } else { 1 };
                expire = Some((unit, o.len() == 4, amount));
            }
            _ => return Err(ParseError::Syntax.into()),
        }
    }
    let now = txn.now();
    let at = match expire {
        Some((unit, absolute, amount)) => Some(deadline(now, amount, unit, absolute, "set")?),
        None => None,
    };
    check_size(value, max_value)?;
    let old = txn.get(key).cloned();
    let old_reply = || value_reply(old.as_ref());
    if (nx && old.is_some()) || (xx && old.is_none()) {
        return Ok(if get { old_reply() } else { Reply::Null });
    }
    let expires_at = match at {
        Some(at) => Some(at),
        None if keepttl => old.as_ref().and_then(|o| o.expires_at),
        None => None,
    };
    if expires_at.is_some_and(|at| at <= now) {
        // An EXAT/PXAT in the past: the key is set and expires at once, as in Redis.
        txn.write(key, KvWrite::Delete)?;
    } else {
        put(txn, key, value.to_vec(), 0, expires_at)?;
    }
    Ok(if get { old_reply() } else { Reply::ok() })
}

/// `EXPIRE|PEXPIRE|EXPIREAT|PEXPIREAT key n [NX|XX|GT|LT]`. A deadline not in the future deletes
/// the key (reply 1). A key without a TTL counts as an infinite TTL for GT and LT, as in Redis.
fn expire(id: CmdId, p: &mut Parse<'_>, txn: &mut KvTxn<'_>) -> Result<Reply, KvCmdError> {
    let name = p.command_name();
    let key = p.next_bytes()?;
    let amount = p.next_i64()?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    while let Some(opt) = p.try_next() {
        match &opt.to_ascii_uppercase()[..] {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return Err(KvCmdError::UnsupportedOption(super::shorten(opt, 128)));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(KvCmdError::NxWithOthers);
    }
    if gt && lt {
        return Err(KvCmdError::GtAndLt);
    }
    let now = txn.now();
    let now_ms = (now / NS_PER_MS) as i64;
    let unit = if matches!(id, CmdId::Expire | CmdId::Expireat) {
        1000
    } else {
        1
    };
    let invalid = || KvCmdError::InvalidExpire(name.clone());
    let mut at_ms = amount.checked_mul(unit).ok_or_else(invalid)?;
    if matches!(id, CmdId::Expire | CmdId::Pexpire) {
        at_ms = at_ms.checked_add(now_ms).ok_or_else(invalid)?;
    }
    let Some(item) = txn.get(key).cloned() else {
        return Ok(Reply::Integer(0));
    };
    let current_ms = item.expires_at.map(|at| (at / NS_PER_MS) as i64);
    let refused = match current_ms {
        Some(cur) => nx || (gt && at_ms <= cur) || (lt && at_ms >= cur),
        None => xx || gt,
    };
    if refused {
        return Ok(Reply::Integer(0));
    }
    if at_ms <= now_ms {
        txn.write(key, KvWrite::Delete)?;
    } else {
        let item = Item {
            expires_at: Some((at_ms as u64).saturating_mul(NS_PER_MS)),
            ..item
        };
        txn.write(key, KvWrite::Put(item))?;
    }
    Ok(Reply::Integer(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(a: &[&'a str]) -> Vec<&'a [u8]> {
        a.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn keys_come_from_the_table() {
        let a = args(&["set", "k", "v", "EX", "10"]);
        assert_eq!(keys_of(CmdId::Set, &a), vec![&b"k"[..]]);
        let a = args(&["del", "a", "b", "c"]);
        assert_eq!(keys_of(CmdId::Del, &a), vec![&b"a"[..], b"b", b"c"]);
        let a = args(&["ttl", "x"]);
        assert_eq!(keys_of(CmdId::Ttl, &a), vec![&b"x"[..]]);
    }

    #[test]
    fn deadlines_follow_redis_rules() {
        let now = 1_700_000_000_000 * NS_PER_MS;
        assert_eq!(
            deadline(now, 10, 1000, false, "set").ok(),
            Some(now + 10_000 * NS_PER_MS)
        );
        assert_eq!(deadline(now, 5, 1, true, "set").ok(), Some(5 * NS_PER_MS));
        for bad in [0, -1] {
            assert_eq!(
                deadline(now, bad, 1000, false, "setex")
                    .err()
                    .map(|e| e.to_string()),
                Some("ERR invalid expire time in 'setex' command".to_string())
            );
        }
        assert!(deadline(now, i64::MAX, 1000, false, "set").is_err());
        assert!(deadline(now, i64::MAX - 1, 1, false, "set").is_err());
        assert_eq!(deadline(now, i64::MAX, 1, true, "set").ok(), Some(u64::MAX));
    }
}
