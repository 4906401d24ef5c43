//! Replication commands: REPLICAOF / SLAVEOF, ROLE, WAIT, and the primary's side of the
//! handshake (REPLCONF, PSYNC, SYNC); the `# Replication` INFO section and the sync counters
//! of `# Stats`; which commands a replica refuses; CLIENT KILL TYPE master|replica|slave.
//!
//! Replies and INFO fields follow Redis byte for byte where Redis defines them, because
//! Sentinel, exporters and client libraries parse them. The machinery is in src/primary.rs
//! (primary side) and src/replica.rs (the replica's link).

use super::table::{CmdId, CommandSpec};
use super::{shorten, Session};
use crate::primary::{MasterAddr, PsyncRequest};
use crate::server::Shared;
use bytes::Bytes;
use ratelimitd_protocol::{Parse, ParseError, Reply};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// Replication state of one connection.
#[derive(Debug, Default)]
pub struct ReplSession {
    /// From `REPLCONF listening-port`.
    pub listening_port: u16,
    /// Set by WAIT or PSYNC: the connection finishes it after the command returns.
    pub blocking: Option<Blocking>,
}

/// Work a command hands to its connection because it needs to wait or take over the socket.
#[derive(Debug, Clone)]
pub enum Blocking {
    Wait { numreplicas: u64, timeout_ms: u64 },
    Psync(PsyncRequest),
}

/// Redis's text for a write on a replica.
pub const READONLY: &str = "READONLY You can't write against a read only replica.";
/// Redis's refusal when --min-replicas-to-write is not met.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// Why a write must be refused here, if it must: this node is a replica, or a primary short of
/// good replicas (--min-replicas-to-write). The same rule for RESP and for the HTTP check.
pub fn write_refusal(shared: &Shared) -> Option<&'static str> {
    if shared.repl.is_replica() {
        Some(READONLY)
    } else if !shared.repl.enough_replicas() {
        Some(NOREPLICAS)
    } else {
        None
    }
}

/// True when `spec` with `args` changes state (refused on a replica). RL.LIMIT and RL.TIER
/// are flagged "write" as a whole, but their GET, LIST and HELP read.
pub fn is_write(spec: &CommandSpec, args: &[&[u8]]) -> bool {
    if !spec.flags.contains(&"write") {
        return false;
    }
    match spec.id {
        CmdId::RlLimit | CmdId::RlTier => args.get(1).is_none_or(|sub| {
            !(sub.eq_ignore_ascii_case(b"GET")
                || sub.eq_ignore_ascii_case(b"LIST")
                || sub.eq_ignore_ascii_case(b"HELP"))
        }),
        _ => true,
    }
}

pub fn execute(
    id: CmdId,
    shared: &Shared,
    session: &mut Session,
    args: &[&[u8]],
) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    match id {
        CmdId::Replicaof | CmdId::Slaveof => {
            let host = parse.next_bytes()?;
            let port = parse.next_bytes()?;
            parse.finish()?;
            if host.eq_ignore_ascii_case(b"NO") && port.eq_ignore_ascii_case(b"ONE") {
                if shared.repl.is_replica() {
                    shared.repl.promote(shared);
                }
                return Ok(Reply::ok());
            }
            let port = std::str::from_utf8(port)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| ParseError::Invalid("Invalid master port".into()))?;
            let host = String::from_utf8_lossy(host).into_owned();
            tracing::info!("REPLICAOF {host} {port}: becoming a replica");
            if shared
                .repl
                .become_replica(shared, MasterAddr { host, port })
            {
                Ok(Reply::ok())
            } else {
                Ok(Reply::simple("OK Already connected to specified master"))
            }
        }
        CmdId::Role => Ok(role(shared)),
        CmdId::Wait => {
            let numreplicas = parse.next_u64().map_err(|_| ParseError::NotInteger)?;
            let timeout = parse.next_i64().map_err(|_| {
                ParseError::Invalid("timeout is not an integer or out of range".into())
            })?;
            if timeout < 0 {
                return Err(ParseError::Invalid("timeout is negative".into()));
            }
            if shared.repl.is_replica() {
                return Err(ParseError::Invalid(
                    "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.".into(),
                ));
            }
            session.repl.blocking = Some(Blocking::Wait {
                numreplicas,
                timeout_ms: timeout as u64,
            });
            // The connection replaces this with the real count once the wait is over.
            Ok(Reply::Integer(0))
        }
        CmdId::Replconf => {
            while let Some(opt) = parse.try_next() {
                let value = parse.next_bytes()?;
                if opt.eq_ignore_ascii_case(b"listening-port") {
                    session.repl.listening_port = std::str::from_utf8(value)
                        .ok()
                        .and_then(|p| p.parse().ok())
                        .ok_or(ParseError::NotInteger)?;
                } else if opt.eq_ignore_ascii_case(b"ACK") || opt.eq_ignore_ascii_case(b"GETACK") {
                    // Only meaningful on a replication link; a normal client gets no reply in
                    // Redis either, but an OK is harmless for the handshake's sake.
                } else if !(opt.eq_ignore_ascii_case(b"capa")
                    || opt.eq_ignore_ascii_case(b"ip-address")
                    || opt.eq_ignore_ascii_case(b"rdb-only"))
                {
                    return Err(ParseError::Invalid(format!(
                        "Unrecognized REPLCONF option: {}",
                        shorten(opt, 64)
                    )));
                }
            }
            Ok(Reply::ok())
        }
        CmdId::Psync | CmdId::Sync => {
            let legacy = id == CmdId::Sync;
            let (replid, offset) = if legacy {
                (Bytes::from_static(b"?"), -1)
            } else {
                let replid = Bytes::copy_from_slice(parse.next_bytes()?);
                let offset = parse.next_i64().map_err(|_| ParseError::NotInteger)?;
                (replid, offset)
            };
            if shared.repl.is_replica() && shared.repl.master().is_some() && !link_up(shared) {
                return Err(ParseError::Invalid(
                    "NOMASTERLINK Can't SYNC while not connected with my master".into(),
                ));
            }
            session.repl.blocking = Some(Blocking::Psync(PsyncRequest {
                replid,
                offset,
                legacy,
                listening_port: session.repl.listening_port,
            }));
            // Nothing is written for this reply: the connection answers +FULLRESYNC/+CONTINUE.
            Ok(Reply::Null)
        }
        _ => Err(ParseError::Syntax),
    }
}

/// True when this replica's link to its primary is up (readiness and metrics read it too).
pub fn link_up(shared: &Shared) -> bool {
    shared
        .repl
        .link
        .lock()
        .map(|l| l.state == crate::primary::LinkState::Connected)
        .unwrap_or(false)
}

/// ROLE, as Redis formats it.
fn role(shared: &Shared) -> Reply {
    let v = shared.repl.view();
    match &v.master {
        None => Reply::Array(vec![
            Reply::bulk("master"),
            Reply::Integer(v.offset as i64),
            Reply::Array(
                v.replicas
                    .iter()
                    .map(|r| {
                        Reply::Array(vec![
                            Reply::bulk(r.ip.clone()),
                            Reply::bulk(r.port.to_string()),
                            Reply::bulk(r.ack.to_string()),
                        ])
                    })
                    .collect(),
            ),
        ]),
        Some(m) => {
            let state = shared
                .repl
                .link
                .lock()
                .map(|l| l.state)
                .unwrap_or(crate::primary::LinkState::Connect);
            let connected = state == crate::primary::LinkState::Connected;
            Reply::Array(vec![
                Reply::bulk("slave"),
                Reply::bulk(m.host.clone()),
                Reply::Integer(m.port as i64),
                Reply::bulk(state.name()),
                Reply::Integer(if connected { v.offset as i64 } else { -1 }),
            ])
        }
    }
}

/// The `# Replication` section.
pub fn info_replication(shared: &Shared, out: &mut String) {
    let repl = &shared.repl;
    let v = repl.view();
    out.push_str("# Replication\r\n");
    match &v.master {
        None => {
            out.push_str("role:master\r\n");
        }
        Some(m) => {
            let (state, last_io, down_since, clock) = repl
                .link
                .lock()
                .map(|l| {
                    (
                        l.state,
                        l.last_io.elapsed().as_secs(),
                        l.down_since.elapsed().as_secs(),
                        l.clock_offset_ns,
                    )
                })
                .unwrap_or((crate::primary::LinkState::Connect, 0, 0, None));
            let up = state == crate::primary::LinkState::Connected;
            let _ = write!(
                out,
                "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\n",
                m.host,
                m.port,
                if up { "up" } else { "down" },
                if up { last_io as i64 } else { -1 },
                (state == crate::primary::LinkState::Sync) as u8,
                v.offset,
                v.offset,
            );
            if !up {
                let _ = write!(out, "master_link_down_since_seconds:{down_since}\r\n");
            }
            let _ = write!(
                out,
                "slave_priority:{}\r\nslave_read_only:1\r\nreplica_announced:1\r\n",
                repl.priority
            );
            if let Some(ns) = clock {
                let _ = write!(out, "rl_master_clock_offset_ms:{}\r\n", ns / 1_000_000);
            }
        }
    }
    let _ = write!(out, "connected_slaves:{}\r\n", v.replicas.len());
    for (i, r) in v.replicas.iter().enumerate() {
        let _ = write!(
            out,
            "slave{i}:ip={},port={},state=online,offset={},lag={}\r\n",
            r.ip, r.port, r.ack, r.lag_s
        );
    }
    let (size, first, histlen) = v.backlog.unwrap_or((repl.backlog_size, 0, 0));
    let _ = write!(
        out,
        "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{size}\r\nrepl_backlog_first_byte_offset:{first}\r\nrepl_backlog_histlen:{histlen}\r\n",
        v.ids.replid,
        v.ids.replid2,
        v.offset,
        v.ids.second_offset,
        v.backlog.is_some() as u8,
    );
    if v.master.is_none() {
        let _ = write!(out, "slave_priority:{}\r\n", repl.priority);
    }
    if v.master.is_none() && repl.min_replicas_to_write.load(Ordering::Relaxed) > 0 {
        let _ = write!(out, "min_slaves_good_slaves:{}\r\n", repl.good_replicas());
    }
}

/// Lines appended to `# Stats`: Redis's resync counters.
pub fn info_stats(shared: &Shared, out: &mut String) {
    let r = &shared.repl;
    let _ = write!(
        out,
        "sync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\n",
        r.sync_full.load(Ordering::Relaxed),
        r.sync_partial_ok.load(Ordering::Relaxed),
        r.sync_partial_err.load(Ordering::Relaxed),
    );
}

/// CLIENT KILL TYPE master|replica|slave|normal|pubsub: the number of connections dropped.
/// The caller (`caller`, a client id) is never dropped, as Redis's default `SKIPME yes`: the
/// Sentinel that sends `CLIENT KILL TYPE normal` inside its failover MULTI must get its EXEC
/// reply.
pub fn client_kill(shared: &Shared, parse: &mut Parse, caller: u64) -> Result<Reply, ParseError> {
    let mut killed = 0;
    let mut any = false;
    while let Some(opt) = parse.try_next() {
        any = true;
        if !opt.eq_ignore_ascii_case(b"TYPE") {
            return Err(ParseError::Invalid(
                "CLIENT KILL supports TYPE master|replica|slave|normal|pubsub here".into(),
            ));
        }
        let t = parse.next_bytes()?;
        if t.eq_ignore_ascii_case(b"master") {
            killed += shared.repl.kill_link();
        } else if t.eq_ignore_ascii_case(b"replica") || t.eq_ignore_ascii_case(b"slave") {
            killed += shared.repl.kill_replicas();
        } else if t.eq_ignore_ascii_case(b"normal") || t.eq_ignore_ascii_case(b"pubsub") {
            let want = if t.eq_ignore_ascii_case(b"normal") {
                "normal"
            } else {
                "pubsub"
            };
            for c in shared.clients.snapshot() {
                if c.id != caller && c.kind() == want && !c.killed.load(Ordering::Relaxed) {
                    c.kill();
                    killed += 1;
                }
            }
        } else {
            return Err(ParseError::Invalid(format!(
                "Unknown client type '{}'",
                shorten(t, 64)
            )));
        }
    }
    if !any {
        return Err(ParseError::Syntax);
    }
    Ok(Reply::Integer(killed as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::table::lookup;

    fn args<'a>(words: &[&'a str]) -> Vec<&'a [u8]> {
        words.iter().map(|w| w.as_bytes()).collect()
    }

    #[test]
    fn writes_are_what_a_replica_refuses() {
        let cases = [
            (&["RL.CHECK", "a", "b"][..], true),
            (&["RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1s"], true),
            (&["rl.limit", "get", "DEFAULT"], false),
            (&["RL.LIMIT", "LIST"], false),
            (&["RL.TIER", "GET", "a"], false),
            (&["RL.TIER", "HELP"], false),
            (&["RL.LIMIT", "HELP"], false),
            (&["RL.TIER", "DEL", "a"], true),
            (&["RL.PEEK", "a", "b"], false),
            (&["CL.THROTTLE", "k", "1", "1", "1"], true),
            (&["FLUSHALL"], true),
            (&["INFO"], false),
            (&["ROLE"], false),
            (&["INCR", "x"], true),
            (&["GET", "x"], false),
        ];
        for (a, want) in cases {
            let spec = lookup(a[0].as_bytes()).expect("known");
            assert_eq!(is_write(spec, &args(a)), want, "{a:?}");
        }
    }
}
