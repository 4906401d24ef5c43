//! Replication commands: REPLICAOF / SLAVEOF, ROLE, WAIT, and the primary's side of the
//! handshake (REPLCONF, PSYNC, SYNC).
//!
//! Replies follow Redis byte for byte where Redis defines them, because Sentinel, exporters and
//! client libraries parse them. The state is src/repl.rs; the tasks that stream to replicas
//! and follow a primary are src/primary.rs and src/replica.rs. INFO's replication section is
//! src/cmd/info.rs.

use super::session::Blocking;
use super::spec::Ctx;
use crate::config::MasterAddr;
use crate::repl::{LinkState, PsyncRequest};
use crate::state::Shared;
use crate::text::shorten;
use bytes::Bytes;
use ratelimitd_protocol::{Parse, ParseError, Reply};

/// REPLICAOF host port | NO ONE (and SLAVEOF, its old name). The host is a host name or an IP
/// address (an IPv6 one may be bracketed); anything else is `-ERR Invalid master host`.
pub fn replicaof(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let shared = ctx.shared;
    let mut parse = Parse::new(args);
    let host = parse.next_bytes()?;
    let port = parse.next_bytes()?;
    parse.finish()?;
    if host.eq_ignore_ascii_case(b"NO") && port.eq_ignore_ascii_case(b"ONE") {
        if shared.repl.is_replica() {
            shared.repl.promote(&shared.engine);
        }
        return Ok(Reply::ok());
    }
    let port = std::str::from_utf8(port)
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| ParseError::Invalid("Invalid master port".into()))?;
    // The host is printed into INFO, ROLE, the log and the config file (CONFIG REWRITE):
    // only a host name or an IP address is taken, never a line break or a quote.
    let master = std::str::from_utf8(host)
        .ok()
        .and_then(|h| MasterAddr::new(h, port).ok())
        .ok_or_else(|| ParseError::Invalid("Invalid master host".into()))?;
    tracing::info!(
        "REPLICAOF {} {}: becoming a replica",
        master.host,
        master.port
    );
    if shared.repl.become_replica(&shared.engine, master) {
        Ok(Reply::ok())
    } else {
        Ok(Reply::simple("OK Already connected to specified master"))
    }
}

/// ROLE.
pub fn role(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(role_of(ctx.shared))
}

/// WAIT numreplicas timeout: the connection waits (src/primary.rs) and replaces this reply
/// with the number of replicas that acknowledged.
pub fn wait(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let numreplicas = parse.next_u64().map_err(|_| ParseError::NotInteger)?;
    let timeout = parse
        .next_i64()
        .map_err(|_| ParseError::Invalid("timeout is not an integer or out of range".into()))?;
    if timeout < 0 {
        return Err(ParseError::Invalid("timeout is negative".into()));
    }
    if ctx.shared.repl.is_replica() {
        return Err(ParseError::Invalid(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.".into(),
        ));
    }
    ctx.session.repl.blocking = Some(Blocking::Wait {
        numreplicas,
        timeout_ms: timeout as u64,
    });
    Ok(Reply::Integer(0))
}

/// REPLCONF option value [option value ...]: the replica's handshake options.
pub fn replconf(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    while let Some(opt) = parse.try_next() {
        let value = parse.next_bytes()?;
        if opt.eq_ignore_ascii_case(b"listening-port") {
            ctx.session.repl.listening_port = std::str::from_utf8(value)
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

/// PSYNC replid offset: a partial or full resync.
pub fn psync(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let replid = Bytes::copy_from_slice(parse.next_bytes()?);
    let offset = parse.next_i64().map_err(|_| ParseError::NotInteger)?;
    start_sync(ctx, replid, offset, false)
}

/// SYNC: the old full sync.
pub fn sync(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    start_sync(ctx, Bytes::from_static(b"?"), -1, true)
}

/// Hand the connection to the replica stream: nothing is written for this reply, the
/// connection answers `+FULLRESYNC` / `+CONTINUE`.
fn start_sync(
    ctx: &mut Ctx<'_>,
    replid: Bytes,
    offset: i64,
    legacy: bool,
) -> Result<Reply, ParseError> {
    let repl = &ctx.shared.repl;
    if repl.is_replica() && repl.master().is_some() && !repl.link_up() {
        return Err(ParseError::Invalid(
            "NOMASTERLINK Can't SYNC while not connected with my master".into(),
        ));
    }
    ctx.session.repl.blocking = Some(Blocking::Psync(PsyncRequest {
        replid,
        offset,
        legacy,
        listening_port: ctx.session.repl.listening_port,
    }));
    Ok(Reply::Null)
}

/// ROLE, as Redis formats it.
fn role_of(shared: &Shared) -> Reply {
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
            let state = shared.repl.link_state();
            let connected = state == LinkState::Connected;
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
