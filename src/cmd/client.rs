//! CLIENT and its subcommands: what client libraries send on connect (SETNAME, SETINFO),
//! what operators inspect (LIST, INFO) and what Sentinel sends in a failover (KILL).

use super::connection::{set_name, validate_name};
use super::reply::{help_reply, text_reply};
use super::spec::{sub_args, Ctx};
use crate::clients::ClientHandle;
use crate::text::shorten;
use ratelimitd_protocol::{ParseError, Reply};
use std::sync::atomic::Ordering;

/// CLIENT SETNAME name.
pub fn setname(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let name = sub_args(args).next_bytes()?;
    validate_name(name)?;
    set_name(ctx.session, name);
    Ok(Reply::ok())
}

/// CLIENT GETNAME.
pub fn getname(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let name = ctx.session.handle.name.lock().ok().and_then(|n| n.clone());
    Ok(name.map(Reply::Bulk).unwrap_or(Reply::Null))
}

/// CLIENT ID.
pub fn id(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Integer(ctx.session.handle.id as i64))
}

/// CLIENT INFO.
pub fn info(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(text_reply(format!("{}\n", ctx.session.handle.describe())))
}

/// CLIENT LIST [TYPE normal] [ID id ...].
pub fn list(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let mut ids: Option<Vec<u64>> = None;
    while let Some(opt) = parse.try_next() {
        if opt.eq_ignore_ascii_case(b"TYPE") {
            let t = parse.next_bytes()?;
            if !t.eq_ignore_ascii_case(b"normal") {
                let known = [&b"master"[..], b"replica", b"slave", b"pubsub"];
                if known.iter().any(|k| t.eq_ignore_ascii_case(k)) {
                    return Ok(text_reply(String::new()));
                }
                return Err(ParseError::Invalid(format!(
                    "Unknown client type '{}'",
                    shorten(t, 64)
                )));
            }
        } else if opt.eq_ignore_ascii_case(b"ID") {
            let mut list = Vec::new();
            while parse.remaining() > 0 {
                list.push(
                    parse
                        .next_u64()
                        .map_err(|_| ParseError::Invalid("Invalid client ID".into()))?,
                );
            }
            ids = Some(list);
        } else {
            return Err(ParseError::Syntax);
        }
    }
    let mut out = String::new();
    for c in ctx.shared.clients.snapshot() {
        if ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
            out.push_str(&c.describe());
            out.push('\n');
        }
    }
    Ok(text_reply(out))
}

/// CLIENT KILL, as Redis: the old form `CLIENT KILL <ip:port>` (`+OK`, or "No such client"),
/// or filters that must all match: `ID`, `TYPE normal|pubsub|master|replica|slave`, `USER`,
/// `ADDR`, `LADDR`, `MAXAGE` (seconds) and `SKIPME yes|no` (yes by default: never the caller).
/// The answer is the number of connections closed. `TYPE master` drops a replica's link to its
/// primary, `TYPE replica` every attached replica (their streams are not client connections).
pub fn kill(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let shared = ctx.shared;
    let caller = ctx.session.handle.id;
    if let [_, _, addr] = args {
        let addr = String::from_utf8_lossy(addr);
        let target = shared
            .clients
            .snapshot()
            .into_iter()
            .find(|c| c.addr.to_string() == addr && !c.killed.load(Ordering::Relaxed));
        return match target {
            Some(c) => {
                c.kill();
                Ok(Reply::ok())
            }
            None => Err(ParseError::Invalid("No such client".into())),
        };
    }
    let mut parse = sub_args(args);
    let mut filter = KillFilter {
        skip: Some(caller),
        ..KillFilter::default()
    };
    let mut links = None;
    while let Some(opt) = parse.try_next() {
        // A filter without its value is a syntax error, as in Redis.
        let value = parse.try_next().ok_or(ParseError::Syntax)?;
        let text = || String::from_utf8_lossy(value).into_owned();
        if opt.eq_ignore_ascii_case(b"TYPE") {
            let kind = match value.to_ascii_lowercase().as_slice() {
                b"normal" => "normal",
                b"pubsub" => "pubsub",
                b"master" => {
                    links = Some(Link::Primary);
                    continue;
                }
                b"replica" | b"slave" => {
                    links = Some(Link::Replicas);
                    continue;
                }
                _ => {
                    return Err(ParseError::Invalid(format!(
                        "Unknown client type '{}'",
                        shorten(value, 64)
                    )))
                }
            };
            filter.kind = Some(kind);
        } else if opt.eq_ignore_ascii_case(b"ID") {
            let id = ratelimitd_protocol::parse::parse_u64(value)
                .filter(|&id| id > 0)
                .ok_or_else(|| ParseError::Invalid("client-id should be greater than 0".into()))?;
            filter.id = Some(id);
        } else if opt.eq_ignore_ascii_case(b"USER") {
            filter.user = Some(text());
        } else if opt.eq_ignore_ascii_case(b"ADDR") {
            filter.addr = Some(text());
        } else if opt.eq_ignore_ascii_case(b"LADDR") {
            filter.laddr = Some(text());
        } else if opt.eq_ignore_ascii_case(b"MAXAGE") {
            let secs = ratelimitd_protocol::parse::parse_u64(value).ok_or(ParseError::Syntax)?;
            filter.max_age = Some(secs);
        } else if opt.eq_ignore_ascii_case(b"SKIPME") {
            filter.skip = match value.to_ascii_lowercase().as_slice() {
                b"yes" => Some(caller),
                b"no" => None,
                _ => return Err(ParseError::Syntax),
            };
        } else {
            return Err(ParseError::Syntax);
        }
    }
    let killed = match links {
        Some(Link::Primary) => shared.repl.kill_link(),
        Some(Link::Replicas) => shared.repl.kill_replicas(),
        None => {
            let mut n = 0;
            for c in shared.clients.snapshot() {
                if filter.matches(&c) {
                    c.kill();
                    n += 1;
                }
            }
            n
        }
    };
    Ok(Reply::Integer(killed as i64))
}

/// Which replication links `CLIENT KILL TYPE` names.
enum Link {
    Primary,
    Replicas,
}

/// The filters of one CLIENT KILL; an unset one matches every connection.
#[derive(Default)]
struct KillFilter {
    kind: Option<&'static str>,
    id: Option<u64>,
    user: Option<String>,
    addr: Option<String>,
    laddr: Option<String>,
    max_age: Option<u64>,
    /// The caller's id, unless SKIPME no.
    skip: Option<u64>,
}

impl KillFilter {
    fn matches(&self, c: &ClientHandle) -> bool {
        let user = || c.user.lock().map(|u| u.clone()).unwrap_or_default();
        !c.killed.load(Ordering::Relaxed)
            && c.kind() != "replica"
            && self.skip != Some(c.id)
            && self.kind.is_none_or(|k| c.kind() == k)
            && self.id.is_none_or(|id| c.id == id)
            && self.addr.as_ref().is_none_or(|a| c.addr.to_string() == *a)
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| c.laddr.is_some_and(|l| l.to_string() == *a))
            && self.user.as_ref().is_none_or(|u| user() == *u)
            && self
                .max_age
                .is_none_or(|secs| c.created.elapsed().as_secs() >= secs)
    }
}

/// CLIENT SETINFO LIB-NAME|LIB-VER value: redis-py and others send it on connect; accepted
/// and not stored.
pub fn setinfo(_: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let attr = sub_args(args).next_bytes()?;
    if attr.eq_ignore_ascii_case(b"LIB-NAME") || attr.eq_ignore_ascii_case(b"LIB-VER") {
        Ok(Reply::ok())
    } else {
        Err(ParseError::Invalid(format!(
            "Unrecognized option '{}'",
            shorten(attr, 64)
        )))
    }
}

/// CLIENT NO-EVICT|NO-TOUCH on|off: accepted (nothing here evicts or tracks a client).
pub fn on_off(_: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mode = sub_args(args).next_bytes()?;
    if mode.eq_ignore_ascii_case(b"on") || mode.eq_ignore_ascii_case(b"off") {
        Ok(Reply::ok())
    } else {
        Err(ParseError::Syntax)
    }
}

/// CLIENT HELP.
pub fn help(_: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are:",
        "    * ADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made from the specified address",
        "    * LADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made to specified local address",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Kill connections by type (MASTER and REPLICA: the replication links).",
        "    * USER <username>",
        "      Kill connections authenticated by <username>.",
        "    * SKIPME (YES|NO)",
        "      Skip killing current connection (default: yes).",
        "    * ID <client-id>",
        "      Kill connections by client id.",
        "    * MAXAGE <maxage>",
        "      Kill connections older than the specified age.",
        "LIST [TYPE normal] [ID <id> ...]",
        "    Return information about client connections.",
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Accepted for compatibility; not stored.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
    ]))
}
