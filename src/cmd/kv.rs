//! The key-value commands over RESP: GET, SET (EX/PX/EXAT/PXAT/NX/XX/KEEPTTL/GET), SETEX,
//! PSETEX, SETNX, GETDEL, DEL, UNLINK, EXISTS, INCR/INCRBY/DECR/DECRBY, EXPIRE/PEXPIRE/
//! EXPIREAT/PEXPIREAT (NX/XX/GT/LT), TTL, PTTL, PERSIST, TYPE and MGET.
//!
//! They exist so that code rate-limiting with `INCR` + `EXPIRE` on Redis (django-ratelimit,
//! rack-attack, hand-written Lua-free patterns) runs unchanged against ratelimitd. Semantics and
//! error texts are Redis 7's. Each is a [`KvHandler`](super::spec::KvHandler): it runs inside
//! an engine transaction over its keys (dispatch opens one per command, EXEC one for a whole
//! MULTI block, src/cmd/multi.rs), so each is atomic by itself.
//!
//! Every value is a string, so `WRONGTYPE` cannot arise. Values are capped by
//! `--max-value-size`.

use crate::text::shorten;
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

/// The reply, or the error line.
fn answer(r: Result<Reply, KvCmdError>) -> Reply {
    r.unwrap_or_else(|e| Reply::error(e.to_string()))
}

/// GET key.
pub fn get(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer((|| {
        let mut p = Parse::new(args);
        let key = p.next_bytes()?;
        p.finish()?;
        Ok(value_reply(txn.get(key)))
    })())
}

/// MGET key [key ...].
pub fn mget(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    let mut p = Parse::new(args);
    let mut out = Vec::with_capacity(p.remaining());
    while let Some(key) = p.try_next() {
        out.push(value_reply(txn.get(key)));
    }
    Reply::Array(out)
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL].
pub fn set(txn: &mut KvTxn<'_>, args: &[&[u8]], max_value: usize) -> Reply {
    answer(set_cmd(&mut Parse::new(args), txn, max_value))
}

/// SETEX key seconds value.
pub fn setex(txn: &mut KvTxn<'_>, args: &[&[u8]], max_value: usize) -> Reply {
    answer(set_with_ttl(txn, args, max_value, 1000))
}

/// PSETEX key milliseconds value.
pub fn psetex(txn: &mut KvTxn<'_>, args: &[&[u8]], max_value: usize) -> Reply {
    answer(set_with_ttl(txn, args, max_value, 1))
}

fn set_with_ttl(
    txn: &mut KvTxn<'_>,
    args: &[&[u8]],
    max_value: usize,
    unit_ms: i64,
) -> Result<Reply, KvCmdError> {
    let mut p = Parse::new(args);
    let key = p.next_bytes()?;
    let amount = p.next_i64()?;
    let value = p.next_bytes()?;
    p.finish()?;
    let at = deadline(txn.now(), amount, unit_ms, false, &p.command_name())?;
    check_size(value, max_value)?;
    put(txn, key, value.to_vec(), 0, Some(at))?;
    Ok(Reply::ok())
}

/// SETNX key value.
pub fn setnx(txn: &mut KvTxn<'_>, args: &[&[u8]], max_value: usize) -> Reply {
    answer((|| {
        let mut p = Parse::new(args);
        let key = p.next_bytes()?;
        let value = p.next_bytes()?;
        p.finish()?;
        check_size(value, max_value)?;
        if txn.get(key).is_some() {
            return Ok(Reply::Integer(0));
        }
        put(txn, key, value.to_vec(), 0, None)?;
        Ok(Reply::Integer(1))
    })())
}

/// GETDEL key.
pub fn getdel(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer((|| {
        let mut p = Parse::new(args);
        let key = p.next_bytes()?;
        p.finish()?;
        let reply = value_reply(txn.get(key));
        if !matches!(reply, Reply::Null) {
            txn.write(key, KvWrite::Delete)?;
        }
        Ok(reply)
    })())
}

/// DEL / UNLINK key [key ...]: how many existed.
pub fn del(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer((|| {
        let mut p = Parse::new(args);
        let mut n = 0;
        while let Some(key) = p.try_next() {
            if txn.get(key).is_some() {
                txn.write(key, KvWrite::Delete)?;
                n += 1;
            }
        }
        Ok(Reply::Integer(n))
    })())
}

/// EXISTS key [key ...].
pub fn exists(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    let mut p = Parse::new(args);
    let mut n = 0;
    while let Some(key) = p.try_next() {
        n += i64::from(txn.get(key).is_some());
    }
    Reply::Integer(n)
}

/// INCR key.
pub fn incr(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(add(txn, args, |_| Ok(1)))
}

/// DECR key.
pub fn decr(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(add(txn, args, |_| Ok(-1)))
}

/// INCRBY key increment.
pub fn incrby(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(add(txn, args, |p| Ok(p.next_i64()?)))
}

/// DECRBY key decrement.
pub fn decrby(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(add(txn, args, |p| {
        p.next_i64()?
            .checked_neg()
            .ok_or(KvCmdError::DecrementOverflow)
    }))
}

/// Add the delta `read` takes from the arguments to a counter created at 0; the TTL stays.
fn add(
    txn: &mut KvTxn<'_>,
    args: &[&[u8]],
    read: impl FnOnce(&mut Parse<'_>) -> Result<i64, KvCmdError>,
) -> Result<Reply, KvCmdError> {
    let mut p = Parse::new(args);
    let key = p.next_bytes()?;
    let delta = read(&mut p)?;
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

/// EXPIRE key seconds [NX|XX|GT|LT].
pub fn expire(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(expire_cmd(&mut Parse::new(args), txn, 1000, false))
}

/// PEXPIRE key milliseconds [NX|XX|GT|LT].
pub fn pexpire(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(expire_cmd(&mut Parse::new(args), txn, 1, false))
}

/// EXPIREAT key unix-seconds [NX|XX|GT|LT].
pub fn expireat(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(expire_cmd(&mut Parse::new(args), txn, 1000, true))
}

/// PEXPIREAT key unix-milliseconds [NX|XX|GT|LT].
pub fn pexpireat(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(expire_cmd(&mut Parse::new(args), txn, 1, true))
}

/// TTL key: seconds left, -1 without a TTL, -2 without the key.
pub fn ttl(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(
        time_left(txn, args).map(|ms| Reply::Integer(if ms < 0 { ms } else { (ms + 500) / 1000 })),
    )
}

/// PTTL key: milliseconds left, -1 without a TTL, -2 without the key.
pub fn pttl(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer(time_left(txn, args).map(Reply::Integer))
}

/// Milliseconds until the key expires, or Redis's -1 (no TTL) / -2 (no key).
fn time_left(txn: &mut KvTxn<'_>, args: &[&[u8]]) -> Result<i64, KvCmdError> {
    let mut p = Parse::new(args);
    let key = p.next_bytes()?;
    p.finish()?;
    let now = txn.now();
    let Some(item) = txn.get(key) else {
        return Ok(-2);
    };
    let Some(at) = item.expires_at else {
        return Ok(-1);
    };
    Ok((at.saturating_sub(now) / NS_PER_MS) as i64)
}

/// PERSIST key: 1 if a TTL was removed.
pub fn persist(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer((|| {
        let mut p = Parse::new(args);
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
    })())
}

/// TYPE key: string or none.
pub fn type_of(txn: &mut KvTxn<'_>, args: &[&[u8]], _: usize) -> Reply {
    answer((|| {
        let mut p = Parse::new(args);
        let key = p.next_bytes()?;
        p.finish()?;
        Ok(Reply::simple(if txn.get(key).is_some() {
            "string"
        } else {
            "none"
        }))
    })())
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
fn set_cmd(p: &mut Parse<'_>, txn: &mut KvTxn<'_>, max_value: usize) -> Result<Reply, KvCmdError> {
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
/// `unit_ms`: 1000 for EXPIRE/EXPIREAT, 1 for the P forms; `absolute`: the AT forms.
fn expire_cmd(
    p: &mut Parse<'_>,
    txn: &mut KvTxn<'_>,
    unit_ms: i64,
    absolute: bool,
) -> Result<Reply, KvCmdError> {
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
                return Err(KvCmdError::UnsupportedOption(shorten(opt, 128)));
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
    let invalid = || KvCmdError::InvalidExpire(name.clone());
    let mut at_ms = amount.checked_mul(unit_ms).ok_or_else(invalid)?;
    if !absolute {
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
        let keys = |a: &[&'static str]| -> Vec<Vec<u8>> {
            let argv = args(a);
            let row = crate::cmd::table::COMMANDS
                .lookup(a[0].as_bytes())
                .map(|f| f.spec.keys);
            row.map(|k| k.iter(&argv).map(<[u8]>::to_vec).collect())
                .unwrap_or_default()
        };
        assert_eq!(keys(&["set", "k", "v", "EX", "10"]), vec![b"k".to_vec()]);
        assert_eq!(
            keys(&["del", "a", "b", "c"]),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(keys(&["ttl", "x"]), vec![b"x".to_vec()]);
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
