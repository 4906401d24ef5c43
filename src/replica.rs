//! The replica's link to its primary: connect, handshake as a Redis replica does, full or
//! partial sync, then apply the stream and acknowledge it.
//!
//! Handshake: `PING`, `AUTH <masterauth>` (when set), `REPLCONF listening-port <port>`,
//! `REPLCONF capa eof capa psync2`, `PSYNC <replid> <offset+1>` (`? -1` with no history). The
//! answer is `+FULLRESYNC <replid> <offset>` and a payload (limits, tiers, state snapshot), or
//! `+CONTINUE [<replid>]` and only the missing tail.
//!
//! Applying: state records go to `Engine::apply_change` (the primary's decision, with the
//! primary's deadlines: the replica never runs a check with its own clock); limit records go
//! through `cmd::replay`, the live command's row of the command table, which also writes
//! them to this node's limits log so they survive a restart or a promotion. Every applied record's bytes are
//! forwarded unchanged into this node's own backlog (so a promoted replica can continue the
//! other replicas) and to its own replicas.
//!
//! Bad bytes from a primary never panic the replica: the error is logged, the link is dropped,
//! and the next attempt resyncs.

use crate::cmd::COMMANDS;
use crate::config::MasterAddr;
use crate::limit_args::{limit_set_args, scope_args};
use crate::repl::{LinkInfo, LinkState, REPL_TIMEOUT};
use crate::state::Shared;
use bytes::{Buf, BytesMut};
use ratelimitd_replication::{record, FullSync, Record, ReplId};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Pause between connection attempts.
const RETRY: Duration = Duration::from_millis(250);
/// Deadline of each step of the handshake (connect, PING, AUTH, REPLCONF).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the replica acknowledges its offset.
const ACK_INTERVAL: Duration = Duration::from_secs(1);
/// Largest full-sync payload accepted (a corrupt length must not make us allocate terabytes).
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024 * 1024;
/// Clock offset from the primary above which a warning is logged (see docs/DESIGN.md).
const SKEW_WARN_NS: u64 = 500_000_000;

/// Why a link attempt ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the primary answered {0:?}")]
    Refused(String),
    #[error("timed out")]
    Timeout,
    #[error("bad stream from the primary: {0}")]
    Stream(#[from] ratelimitd_replication::StreamError),
    #[error("bad full-sync payload: {0}")]
    Payload(String),
    #[error("link dropped (CLIENT KILL, REPLICAOF or shutdown)")]
    Stopped,
}

fn set_link(shared: &Shared, f: impl FnOnce(&mut LinkInfo)) {
    shared.repl.set_link(f);
}

/// The link task: follows `Repl`'s target, reconnecting as needed, until shutdown.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut target = shared.repl.target();
    loop {
        let addr = target.borrow_and_update().clone();
        let Some(addr) = addr else {
            tokio::select! {
                r = target.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        };
        let result = tokio::select! {
            r = link_once(&shared, &addr) => r,
            _ = target.changed() => Err(LinkError::Stopped),
            _ = shutdown.changed() => return,
        };
        shared.repl.link_open.store(false, Ordering::Relaxed);
        set_link(&shared, |l| {
            if l.state == LinkState::Connected {
                l.down_since = Instant::now();
            }
            l.state = LinkState::Connect;
        });
        if let Err(e) = result {
            tracing::warn!("replication link to {}:{}: {e}", addr.host, addr.port);
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Read one CRLF line (without it) from the socket, buffering extra bytes in `buf`.
async fn read_line(sock: &mut TcpStream, buf: &mut BytesMut) -> Result<String, LinkError> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(i + 2);
            return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        if buf.len() > 64 * 1024 {
            return Err(LinkError::Refused("an endless line".into()));
        }
        if sock.read_buf(buf).await? == 0 {
            return Err(LinkError::Refused("connection closed".into()));
        }
    }
}

async fn command(
    sock: &mut TcpStream,
    buf: &mut BytesMut,
    parts: &[&[u8]],
) -> Result<String, LinkError> {
    let mut out = Vec::new();
    record::encode_array(parts, &mut out);
    sock.write_all(&out).await?;
    read_line(sock, buf).await
}

/// `step`, or a timeout after `limit`.
async fn within<T>(
    limit: Duration,
    step: impl std::future::Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    tokio::time::timeout(limit, step)
        .await
        .map_err(|_| LinkError::Timeout)?
}

/// Connect, handshake and sync; returns the socket and leftover bytes once streaming starts.
///
/// The short steps each have [`HANDSHAKE_TIMEOUT`]. A full sync does not: the primary answers
/// PSYNC only once it has read its snapshot, the payload of millions of keys takes a while
/// to cross, and applying it is local work, so one deadline for all of it would, past some
/// size, fail every attempt and start over forever. The PSYNC answer and every read of the
/// payload may each take up to the link's timeout (as Redis's `repl-timeout` bounds a
/// transfer by inactivity, not by its total length).
async fn handshake(shared: &Shared, addr: &MasterAddr) -> Result<(TcpStream, BytesMut), LinkError> {
    set_link(shared, |l| l.state = LinkState::Connecting);
    let connect =
        async { Ok::<_, LinkError>(TcpStream::connect((addr.host.as_str(), addr.port)).await?) };
    let mut sock = within(HANDSHAKE_TIMEOUT, connect).await?;
    let _ = sock.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let short = HANDSHAKE_TIMEOUT;
    let pong = within(short, command(&mut sock, &mut buf, &[b"PING"])).await?;
    if !(pong.starts_with("+PONG") || pong.starts_with("-NOAUTH")) {
        return Err(LinkError::Refused(pong));
    }
    if let Some(pass) = &shared.repl.masterauth {
        let r = within(
            short,
            command(&mut sock, &mut buf, &[b"AUTH", pass.as_bytes()]),
        )
        .await?;
        if !r.starts_with("+OK") {
            return Err(LinkError::Refused(r));
        }
    }
    let port = shared.ports.resp.to_string();
    let r = within(
        short,
        command(
            &mut sock,
            &mut buf,
            &[b"REPLCONF", b"listening-port", port.as_bytes()],
        ),
    )
    .await?;
    if !r.starts_with("+OK") {
        return Err(LinkError::Refused(r));
    }
    let r = within(
        short,
        command(
            &mut sock,
            &mut buf,
            &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"],
        ),
    )
    .await?;
    if !r.starts_with("+OK") {
        return Err(LinkError::Refused(r));
    }
    set_link(shared, |l| l.state = LinkState::Sync);
    let (id, off) = shared.repl.psync_request();
    let off = off.to_string();
    let idle = REPL_TIMEOUT;
    let answer = within(
        idle,
        command(
            &mut sock,
            &mut buf,
            &[b"PSYNC", id.as_bytes(), off.as_bytes()],
        ),
    )
    .await?;
    if let Some(rest) = answer.strip_prefix("+FULLRESYNC ") {
        let mut it = rest.split(' ');
        let id = it.next().and_then(|s| ReplId::parse(s.as_bytes()));
        let off = it.next().and_then(|s| s.parse::<u64>().ok());
        let (Some(id), Some(off)) = (id, off) else {
            return Err(LinkError::Refused(answer));
        };
        let header = within(idle, read_line(&mut sock, &mut buf)).await?;
        let len = header
            .strip_prefix('$')
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n <= MAX_PAYLOAD)
            .ok_or_else(|| LinkError::Refused(header.clone()))? as usize;
        while buf.len() < len {
            // Grown as the bytes arrive, not reserved whole from the header: a bad `$len`
            // (up to the payload limit) must not allocate gigabytes before any byte is read.
            buf.reserve((len - buf.len()).min(1 << 20));
            let read = async { Ok::<_, LinkError>(sock.read_buf(&mut buf).await?) };
            if within(idle, read).await? == 0 {
                return Err(LinkError::Payload("connection closed mid-payload".into()));
            }
        }
        let payload = buf.split_to(len);
        let sync = FullSync::decode(&payload).map_err(|e| LinkError::Payload(e.to_string()))?;
        let shared_ptr: &Shared = shared;
        let applied = crate::persist::in_place(|| apply_full_sync(shared_ptr, &sync))?;
        shared.repl.after_full_sync(id, off);
        tracing::info!(
            "full sync from {}:{} done: {} limits/tiers, {applied} entries, offset {off}",
            addr.host,
            addr.port,
            sync.limits.len()
        );
    } else if let Some(rest) = answer.strip_prefix("+CONTINUE") {
        let id = ReplId::parse(rest.trim().as_bytes());
        shared.repl.after_continue(id);
        tracing::info!(
            "partial resync from {}:{} at offset {}",
            addr.host,
            addr.port,
            shared.repl.offset()
        );
    } else {
        return Err(LinkError::Refused(answer));
    }
    Ok((sock, buf))
}

/// Make this node's limits, tiers and state exactly the payload's.
fn apply_full_sync(shared: &Shared, sync: &FullSync) -> Result<usize, LinkError> {
    use bytes::Bytes;
    use std::collections::BTreeSet;
    let engine = &shared.engine;
    // Limits: set what differs, delete what the primary does not have. Unchanged ones are
    // left alone, so a resync does not rewrite (and fsync) the whole limits log.
    let current: BTreeSet<Vec<Bytes>> = engine
        .list_limits()
        .iter()
        .map(|(s, l)| limit_set_args(s, l))
        .collect();
    let wanted: BTreeSet<Vec<Bytes>> = sync.limits.iter().cloned().collect();
    let wanted_scopes: BTreeSet<Vec<Bytes>> = sync
        .limits
        .iter()
        .filter(|a| {
            a.first()
                .is_some_and(|n| n.eq_ignore_ascii_case(b"RL.LIMIT"))
        })
        .filter_map(|a| scope_of(a))
        .collect();
    for (scope, _) in engine.list_limits() {
        let args = scope_args(&scope);
        if !wanted_scopes.contains(&args) {
            let mut del = vec![Bytes::from_static(b"RL.LIMIT"), Bytes::from_static(b"DEL")];
            del.extend(args);
            replay(shared, &del);
        }
    }
    let wanted_tiers: BTreeSet<Bytes> = sync
        .limits
        .iter()
        .filter(|a| {
            a.first()
                .is_some_and(|n| n.eq_ignore_ascii_case(b"RL.TIER"))
        })
        .filter_map(|a| a.get(2).cloned())
        .collect();
    let current_tiers = engine.list_tiers();
    for (client, _) in &current_tiers {
        if !wanted_tiers.contains(&client[..]) {
            replay(
                shared,
                &[
                    Bytes::from_static(b"RL.TIER"),
                    Bytes::from_static(b"DEL"),
                    Bytes::copy_from_slice(client),
                ],
            );
        }
    }
    for args in &sync.limits {
        let is_tier = args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"RL.TIER"));
        let unchanged = if is_tier {
            match (args.get(2), args.get(3)) {
                (Some(c), Some(t)) => current_tiers
                    .iter()
                    .any(|(cc, tt)| cc[..] == c[..] && tt[..] == t[..]),
                _ => false,
            }
        } else {
            current.contains(args)
        };
        if !unchanged && wanted.contains(args) {
            replay(shared, args);
        }
    }
    engine.apply_change(&ratelimitd_engine::Change::Flush);
    engine
        .restore_state(&sync.state)
        .map_err(|e| LinkError::Payload(e.to_string()))
}

/// The scope part of `RL.LIMIT SET <scope> ...` (positional, as the parser reads it).
fn scope_of(args: &[bytes::Bytes]) -> Option<Vec<bytes::Bytes>> {
    let rest = args.get(2..)?;
    let word = rest.first()?;
    let n = if word.eq_ignore_ascii_case(b"DEFAULT") {
        1
    } else if word.eq_ignore_ascii_case(b"ENDPOINT") {
        2
    } else if rest
        .get(2)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"ENDPOINT"))
    {
        4
    } else {
        2
    };
    Some(rest.get(..n)?.to_vec())
}

/// Apply a limit change through the live parser (and this node's limits log).
fn replay(shared: &Shared, args: &[bytes::Bytes]) {
    if let Err(e) = crate::cmd::replay(shared, &COMMANDS, &crate::args::slices(args)) {
        tracing::error!(
            "replicated limit change not applied: {e} ({})",
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// One connection to the primary, from connect to loss.
async fn link_once(shared: &Arc<Shared>, addr: &MasterAddr) -> Result<(), LinkError> {
    let (mut sock, mut buf) = handshake(shared, addr).await?;
    shared.repl.link_open.store(true, Ordering::Relaxed);
    set_link(shared, |l| {
        l.state = LinkState::Connected;
        l.last_io = Instant::now();
    });
    let mut ack_tick = tokio::time::interval(ACK_INTERVAL);
    let mut skew = ratelimitd_replication::ClockSkew::default();
    let mut last_skew_warn: Option<Instant> = None;
    let mut forward = Vec::with_capacity(64 * 1024);
    loop {
        // Apply every complete record buffered.
        forward.clear();
        let mut ack_now = false;
        loop {
            let Some((rec, used)) = record::decode(&buf)? else {
                break;
            };
            match rec {
                Record::Change(c) => shared.engine.apply_change(&c),
                Record::States(changes) => {
                    for c in &changes {
                        shared.engine.apply_change(c);
                    }
                }
                Record::Limit(args) => {
                    let s: &Shared = shared;
                    crate::persist::in_place(|| replay(s, &args))
                }
                Record::Ping { primary_now } => {
                    if primary_now > 0 {
                        let est = skew.observe(primary_now, shared.engine.now());
                        set_link(shared, |l| l.clock_offset_ns = Some(est));
                        let due =
                            last_skew_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(60));
                        if skew.exceeds(SKEW_WARN_NS) && due {
                            last_skew_warn = Some(Instant::now());
                            tracing::warn!(
                                "the primary's clock is {} ms {} ours: after a failover, rate state would be judged that much {}; fix NTP on both hosts",
                                est.unsigned_abs() / 1_000_000,
                                if est > 0 { "ahead of" } else { "behind" },
                                if est > 0 { "more strictly" } else { "more permissively" },
                            );
                        }
                    }
                }
                Record::GetAck => ack_now = true,
            }
            forward.extend_from_slice(&buf[..used]);
            buf.advance(used);
        }
        if !forward.is_empty() {
            shared.repl.forward(&forward);
        }
        if ack_now {
            send_ack(shared, &mut sock).await?;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            read = sock.read_buf(&mut buf) => {
                if read? == 0 {
                    return Err(LinkError::Refused("connection closed".into()));
                }
                set_link(shared, |l| l.last_io = Instant::now());
            }
            _ = ack_tick.tick() => {
                send_ack(shared, &mut sock).await?;
                let silent = shared.repl.link.lock().map(|l| l.last_io.elapsed()).unwrap_or_default();
                if silent > REPL_TIMEOUT {
                    return Err(LinkError::Timeout);
                }
            }
            _ = shared.repl.link_kill.notified() => return Err(LinkError::Stopped),
        }
    }
}

async fn send_ack(shared: &Shared, sock: &mut TcpStream) -> Result<(), LinkError> {
    let off = shared.repl.offset().to_string();
    let mut out = Vec::new();
    record::encode_array(&[b"REPLCONF", b"ACK", off.as_bytes()], &mut out);
    sock.write_all(&out).await?;
    Ok(())
}
