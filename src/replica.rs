//! The replica's link to its primary: connect, handshake as a Redis replica does, full or
//! partial sync, then apply the stream and acknowledge it.
//!
//! Handshake: `PING`, `AUTH [<masteruser>] <masterauth>` (when set), `REPLCONF listening-port
//! <port>`, `REPLCONF capa eof capa psync2`, `PSYNC <replid> <offset+1>` (`? -1` with no history). The
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
//! A full sync is staged: its `$<len>` is checked against the bound (`--maxmemory`, else
//! `--repl-max-sync-size`) before a byte of the body is read; then the payload is checked
//! whole (framing and checksum; every limit and tier record through the live command's
//! parser, and only `RL.LIMIT SET` and `RL.TIER SET` taken; the engine snapshot decoded
//! completely), and only a payload found good changes anything: then limits, tiers and state
//! are switched in one go. A refused payload changes nothing, is logged at error, and the link
//! retries.
//!
//! An item (in the snapshot or an `RPL.ITEM` record) whose value is over this node's
//! `--max-value-size` is not stored and is logged at error, once per record; the rest of the
//! payload or stream is applied and the link stays (`value_fits` says why).
//!
//! With `--tls-replication yes` the link is TLS: the primary's certificate must be signed by
//! `--tls-ca-cert-file` and name the host `--replicaof` gives, and this node shows its own
//! `--tls-cert-file` as its client certificate when it has one.
//!
//! Bad bytes from a primary never panic the replica: the error is logged, the link is dropped,
//! and the next attempt resyncs.

use crate::cmd::limits::{parse_limit_set, parse_tier_set};
use crate::cmd::COMMANDS;
use crate::config::MasterAddr;
use crate::limit_args::{limit_set_args, scope_args};
use crate::repl::{LinkInfo, LinkState, REPL_TIMEOUT};
use crate::state::Shared;
use crate::stream::Stream;
use crate::text::shorten;
use bytes::{Buf, Bytes, BytesMut};
use ratelimitd_engine::{Change, DecodedSnapshot, Item, Scope, SnapshotError};
use ratelimitd_replication::{record, FullSync, FullSyncError, Record, ReplId};
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
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::HandshakeError),
    #[error("bad stream from the primary: {0}")]
    Stream(#[from] ratelimitd_replication::StreamError),
    #[error("bad full-sync payload: {0}; nothing was changed")]
    Payload(#[from] PayloadError),
    #[error("a full-sync payload of {len} bytes is larger than {flag} ({bound} bytes); refused before reading it")]
    TooLarge {
        len: u64,
        bound: u64,
        flag: &'static str,
    },
    #[error("link dropped (CLIENT KILL, REPLICAOF or shutdown)")]
    Stopped,
}

impl LinkError {
    /// A payload refused whole: the primary (or what pretends to be one) sent something this
    /// node will not apply, which an operator must hear of, unlike a lost connection.
    fn is_refusal(&self) -> bool {
        matches!(self, LinkError::Payload(_) | LinkError::TooLarge { .. })
    }
}

/// Why a full-sync payload was refused. It is refused whole, before anything is applied.
#[derive(Debug, thiserror::Error)]
enum PayloadError {
    #[error("connection closed mid-payload")]
    Cut,
    #[error("{0}")]
    Format(#[from] FullSyncError),
    #[error("record {index} is not a limit or tier the live command takes ({reason}): {record}")]
    Limit {
        index: usize,
        reason: String,
        record: String,
    },
    #[error("snapshot refused: {0}")]
    Snapshot(#[from] SnapshotError),
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
        match result {
            Err(e) if e.is_refusal() => {
                tracing::error!("replication link to {}:{}: {e}", addr.host, addr.port)
            }
            Err(e) => tracing::warn!("replication link to {}:{}: {e}", addr.host, addr.port),
            Ok(()) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Read one CRLF line (without it) from the socket, buffering extra bytes in `buf`.
async fn read_line(sock: &mut Stream, buf: &mut BytesMut) -> Result<String, LinkError> {
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
    sock: &mut Stream,
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
async fn handshake(shared: &Shared, addr: &MasterAddr) -> Result<(Stream, BytesMut), LinkError> {
    set_link(shared, |l| l.state = LinkState::Connecting);
    let connect =
        async { Ok::<_, LinkError>(TcpStream::connect((addr.host.as_str(), addr.port)).await?) };
    let tcp = within(HANDSHAKE_TIMEOUT, connect).await?;
    let _ = tcp.set_nodelay(true);
    let tls = shared.tls.replication();
    let mut sock = match tls {
        true => shared.tls.connect(&addr.host, tcp).await?,
        false => Stream::Plain(tcp),
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let short = HANDSHAKE_TIMEOUT;
    let pong = within(short, command(&mut sock, &mut buf, &[b"PING"])).await?;
    if !(pong.starts_with("+PONG") || pong.starts_with("-NOAUTH")) {
        return Err(LinkError::Refused(pong));
    }
    if let Some(pass) = &shared.repl.masterauth {
        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &shared.repl.masteruser {
            auth.push(user.as_bytes());
        }
        auth.push(pass.as_bytes());
        let r = within(short, command(&mut sock, &mut buf, &auth)).await?;
        if !r.starts_with("+OK") {
            return Err(LinkError::Refused(r));
        }
    }
    // The port a primary's INFO lists for this replica: its TLS port when the link is TLS (as
    // Redis announces tls-port with tls-replication).
    let port = match (tls, shared.ports.tls) {
        (true, Some(p)) => p,
        _ => shared.ports.resp,
    }
    .to_string();
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
            .ok_or_else(|| LinkError::Refused(header.clone()))?;
        let (bound, flag) = sync_bound(shared);
        let len = usize::try_from(len)
            .ok()
            .filter(|_| len <= bound)
            .ok_or(LinkError::TooLarge { len, bound, flag })?;
        while buf.len() < len {
            // Grown as the bytes arrive, not reserved whole from the header: a primary that
            // announces a large payload and stalls costs no more than what it sent.
            buf.reserve((len - buf.len()).min(1 << 20));
            let read = async { Ok::<_, LinkError>(sock.read_buf(&mut buf).await?) };
            if within(idle, read).await? == 0 {
                return Err(PayloadError::Cut.into());
            }
        }
        let payload = buf.split_to(len);
        // The stream's bytes that came after the payload move to a buffer of their own, so the
        // payload's (up to the bound) is freed once it is decoded.
        buf = BytesMut::from(&buf[..]);
        // Checked whole first (decoding and checking a large snapshot is CPU work, as applying
        // it is: both run where the worker's other connections can move to other threads).
        // Only a payload found good changes anything.
        let staged = crate::persist::in_place(|| stage(shared, payload))?;
        let records = staged.limits.len() + staged.tiers.len();
        let applied = crate::persist::in_place(|| switch(shared, staged));
        shared.repl.after_full_sync(id, off);
        tracing::info!(
            "full sync from {}:{} done: {records} limits/tiers, {applied} entries, offset {off}",
            addr.host,
            addr.port,
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

/// The largest full-sync payload this node takes, and the flag that sets it: `--maxmemory`
/// when there is one (a payload larger than the memory bound could not be held),
/// `--repl-max-sync-size` otherwise.
fn sync_bound(shared: &Shared) -> (u64, &'static str) {
    match shared.engine.bounds().1 {
        Some(bytes) if bytes > 0 => (bytes, "--maxmemory"),
        _ => (shared.config.repl_max_sync_size.0, "--repl-max-sync-size"),
    }
}

/// A full sync checked whole and not yet applied: every limit and tier record as the live
/// command parses it, and the snapshot decoded completely.
struct Staged {
    /// Each limit's scope, its canonical `RL.LIMIT SET` arguments, and the record as sent.
    limits: Vec<(Scope, Vec<Bytes>, Vec<Bytes>)>,
    /// Each tier's client and tier, and the record as sent.
    tiers: Vec<(Vec<u8>, Vec<u8>, Vec<Bytes>)>,
    /// Each user's name, its description once set, and the record as sent.
    users: Vec<(String, String, Vec<Bytes>)>,
    state: DecodedSnapshot,
}

/// Check a payload without changing anything: its framing and checksum, every limit and tier
/// record (through the live command's parser: a record the command would refuse refuses the
/// payload), and the snapshot (decoded whole). Snapshot items over `--max-value-size` are
/// dropped here, each logged.
fn stage(shared: &Shared, payload: BytesMut) -> Result<Staged, PayloadError> {
    let FullSync {
        limits: records,
        state,
    } = FullSync::decode(&payload)?;
    // Freed before the snapshot is decoded: at most two forms of the state are held at once.
    drop(payload);
    let mut limits = Vec::new();
    let mut tiers = Vec::new();
    let mut users = Vec::new();
    for (index, args) in records.into_iter().enumerate() {
        let slices = crate::args::slices(&args);
        let refused = |reason: String| PayloadError::Limit {
            index,
            reason: reason.trim_start_matches("ERR ").to_string(),
            record: shorten(&args.join(&b' '), 200),
        };
        let name = slices.first().copied().unwrap_or_default();
        let is_set = slices
            .get(1)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"SET"));
        if name.eq_ignore_ascii_case(b"RL.LIMIT") && is_set {
            let (scope, limit) = parse_limit_set(&slices).map_err(|e| refused(e.to_string()))?;
            let canonical = limit_set_args(&scope, &limit);
            limits.push((scope, canonical, args));
        } else if name.eq_ignore_ascii_case(b"RL.TIER") && is_set {
            let (client, tier) = parse_tier_set(&slices).map_err(|e| refused(e.to_string()))?;
            let (client, tier) = (client.to_vec(), tier.to_vec());
            tiers.push((client, tier, args));
        } else if name.eq_ignore_ascii_case(b"ACL")
            && slices
                .get(1)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"SETUSER"))
            && slices.len() >= 3
        {
            // Built as ACL SETUSER would build it, and not stored.
            let user = shared
                .users
                .build(slices[2], &slices[3..])
                .map_err(|e| refused(e.to_string()))?;
            users.push((user.name.clone(), user.describe(), args));
        } else {
            return Err(refused(
                "only RL.LIMIT SET, RL.TIER SET and ACL SETUSER belong in a full sync".into(),
            ));
        }
    }
    let mut state = DecodedSnapshot::decode(&state)?;
    let max_value = shared.config.max_value_size;
    state.retain_items(|key, item| value_fits(key, item, max_value));
    Ok(Staged {
        limits,
        tiers,
        users,
        state,
    })
}

/// Make this node's limits, tiers and state exactly the staged payload's: delete the limits
/// and tiers the primary does not have, set those that differ (unchanged ones are left alone,
/// so a resync does not rewrite and fsync the whole limits log), then replace the rate state
/// and items. Returns the number of entries restored.
fn switch(shared: &Shared, staged: Staged) -> usize {
    use std::collections::{BTreeMap, BTreeSet};
    let engine = &shared.engine;
    let current: BTreeSet<Vec<Bytes>> = engine
        .list_limits()
        .iter()
        .map(|(s, l)| limit_set_args(s, l))
        .collect();
    let wanted_scopes: BTreeSet<&Scope> = staged.limits.iter().map(|(s, _, _)| s).collect();
    for (scope, _) in engine.list_limits() {
        if !wanted_scopes.contains(&scope) {
            let mut del = vec![Bytes::from_static(b"RL.LIMIT"), Bytes::from_static(b"DEL")];
            del.extend(scope_args(&scope));
            replay(shared, &del);
        }
    }
    let current_tiers: BTreeMap<Vec<u8>, Vec<u8>> = engine.list_tiers().into_iter().collect();
    let wanted_clients: BTreeSet<&[u8]> = staged.tiers.iter().map(|(c, _, _)| &c[..]).collect();
    for client in current_tiers.keys() {
        if !wanted_clients.contains(&client[..]) {
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
    for (_, canonical, args) in &staged.limits {
        if !current.contains(canonical) {
            replay(shared, args);
        }
    }
    for (client, tier, args) in &staged.tiers {
        if current_tiers.get(client) != Some(tier) {
            replay(shared, args);
        }
    }
    // Users as limits: those the primary does not have go (the default user stays), those
    // that differ are set.
    for user in shared.users.all() {
        if user.name != "default" && !staged.users.iter().any(|(n, _, _)| *n == user.name) {
            replay(
                shared,
                &[
                    Bytes::from_static(b"ACL"),
                    Bytes::from_static(b"DELUSER"),
                    Bytes::from(user.name.clone()),
                ],
            );
        }
    }
    for (name, described, args) in &staged.users {
        if shared.users.get(name).map(|u| u.describe()).as_ref() != Some(described) {
            replay(shared, args);
        }
    }
    engine.apply_change(&Change::Flush);
    engine.restore_decoded(staged.state)
}

/// Whether an item from the primary fits this node's `--max-value-size`. One that does not is
/// not stored, and logged at error: the primary has a larger bound than this replica, an
/// operator's mismatch to fix (the item would be refused here if a client sent it).
///
/// The record is skipped and the link kept, rather than the link dropped: the mismatch is
/// configuration, not corruption, so a resync would bring the same item back (in the
/// snapshot) and the replica would resync forever, its rate state and limits going stale
/// meanwhile. Skipping costs only the items this node could not hold anyway.
fn value_fits(key: &[u8], item: &Item, max_value: usize) -> bool {
    let fits = item.value.len() <= max_value;
    if !fits {
        tracing::error!(
            "the primary's item '{}' holds {} bytes, more than --max-value-size ({max_value} bytes): not stored",
            shorten(key, 64),
            item.value.len(),
        );
    }
    fits
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
                // Not stored, but still forwarded and counted below: the offset counts every
                // byte of the stream, and this node's own replicas judge by their own bound.
                Record::Change(Change::Item {
                    key,
                    item: Some(item),
                }) if !value_fits(&key, &item, shared.config.max_value_size) => {}
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

async fn send_ack(shared: &Shared, sock: &mut Stream) -> Result<(), LinkError> {
    let off = shared.repl.offset().to_string();
    let mut out = Vec::new();
    record::encode_array(&[b"REPLCONF", b"ACK", off.as_bytes()], &mut out);
    sock.write_all(&out).await?;
    Ok(())
}
