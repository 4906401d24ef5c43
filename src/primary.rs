//! The primary's side of replication, as tasks: the pump that drains the engine's changes into
//! the stream every millisecond (with a heartbeat every second), one sender task per attached
//! replica (full or partial resync, then the stream, reading its ACKs), and WAIT.
//!
//! The state these tasks share, and the diagram of how a change reaches a replica, are in
//! src/repl.rs; the replica's side is src/replica.rs.

use crate::repl::{PsyncRequest, ReplicaLink, PING_INTERVAL, PUMP_INTERVAL, REPL_TIMEOUT};
use crate::state::Shared;
use crate::stream::Stream;
use bytes::{Bytes, BytesMut};
use ratelimitd_replication::{record, FullSync};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};

/// The pump (and heartbeats): drains the engine's changes into the stream every
/// [`PUMP_INTERVAL`] while this node is a primary, until shutdown.
pub async fn pump(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PUMP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scratch = Vec::new();
    let mut last_ping = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if shared.repl.is_replica() {
            continue;
        }
        let ping = last_ping.elapsed() >= PING_INTERVAL;
        if ping {
            last_ping = Instant::now();
        }
        shared.repl.tick(&shared.engine, &mut scratch, ping);
    }
}

/// Every limit, tier and user as the commands that set them, and the engine's state.
fn full_sync_payload(shared: &Shared) -> Vec<u8> {
    let mut limits: Vec<Vec<Bytes>> = shared
        .engine
        .list_limits()
        .iter()
        .map(|(s, l)| crate::limit_args::limit_set_args(s, l))
        .collect();
    for (client, tier) in shared.engine.list_tiers() {
        limits.push(vec![
            Bytes::from_static(b"RL.TIER"),
            Bytes::from_static(b"SET"),
            Bytes::from(client),
            Bytes::from(tier),
        ]);
    }
    for user in shared.users.all() {
        let mut args = vec![
            Bytes::from_static(b"ACL"),
            Bytes::from_static(b"SETUSER"),
            Bytes::from(user.name.clone()),
        ];
        args.extend(user.rules().into_iter().map(Bytes::from));
        limits.push(args);
    }
    FullSync {
        limits,
        state: shared.engine.snapshot_state(),
    }
    .encode()
}

/// Answer PSYNC and then stream to the replica until it goes, is killed, or we shut down.
/// `input` holds bytes the replica sent after PSYNC (ACKs).
pub async fn serve_replica(
    socket: &mut Stream,
    mut input: BytesMut,
    shared: &Arc<Shared>,
    req: PsyncRequest,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let repl = &shared.repl;
    let link = Arc::new(ReplicaLink {
        ip: peer.ip().to_string(),
        port: if req.listening_port == 0 {
            peer.port()
        } else {
            req.listening_port
        },
        ack: AtomicU64::new(0),
        last_ack_ms: AtomicU64::new(repl.now_ms()),
        queued: Default::default(),
        kill: Notify::new(),
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let (mut first, snapshot) = {
        let s = shared.clone();
        let link = link.clone();
        crate::persist::in_place(move || s.repl.attach(&s.engine, &req, link, tx))
    };
    if let Some((off, why)) = snapshot {
        // Read on the blocking pool, outside `Repl::state`: a snapshot of millions of keys
        // takes a while, and holding the lock (or a worker) that long stalled the pump and,
        // through it, every connection of a freshly promoted primary. At normal priority,
        // unlike BGSAVE (see `saving::bgsave`): the replica's handshake timeout runs meanwhile.
        let shared2 = shared.clone();
        let payload = match tokio::task::spawn_blocking(move || full_sync_payload(&shared2)).await {
            Ok(payload) => payload,
            Err(e) => {
                repl.detach(&link);
                return Err(std::io::Error::other(e));
            }
        };
        first.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
        first.extend_from_slice(&payload);
        tracing::info!(
            "replica {}:{} full resync ({}): {} bytes at offset {off}",
            link.ip,
            link.port,
            why.describe(),
            payload.len()
        );
    }
    let result = stream_to_replica(
        socket,
        &mut input,
        shared,
        &link,
        &first,
        &mut rx,
        &mut shutdown,
    )
    .await;
    repl.detach(&link);
    tracing::info!("replica {}:{} disconnected", link.ip, link.port);
    result
}

/// Most a replica may have sent that is not yet a whole command. After PSYNC a replica only
/// sends `REPLCONF ACK <offset>` (under 60 bytes); the general framing limits (4096 elements
/// of 64 MiB) would let one connection make the primary buffer gigabytes.
const MAX_REPLICA_INPUT: usize = 64 * 1024;

async fn stream_to_replica(
    socket: &mut Stream,
    input: &mut BytesMut,
    shared: &Shared,
    link: &ReplicaLink,
    first: &[u8],
    rx: &mut mpsc::UnboundedReceiver<Bytes>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    socket.write_all(first).await?;
    let repl = &shared.repl;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        // ACKs already buffered.
        loop {
            match record::split_array(input) {
                Ok(Some((parts, used))) => {
                    if parts.len() == 3
                        && parts[0].eq_ignore_ascii_case(b"REPLCONF")
                        && parts[1].eq_ignore_ascii_case(b"ACK")
                    {
                        if let Some(off) = std::str::from_utf8(parts[2])
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                        {
                            link.ack.fetch_max(off, Ordering::Relaxed);
                        }
                    }
                    link.last_ack_ms.store(repl.now_ms(), Ordering::Relaxed);
                    let _ = input.split_to(used);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("replica {}:{} sent bad bytes: {e}", link.ip, link.port);
                    return Ok(());
                }
            }
        }
        if input.len() > MAX_REPLICA_INPUT {
            tracing::warn!(
                "replica {}:{} sent {} bytes that are not a whole ACK; dropping the link",
                link.ip,
                link.port,
                input.len()
            );
            return Ok(());
        }
        tokio::select! {
            msg = rx.recv() => {
                let Some(first) = msg else { return Ok(()) };
                out.clear();
                out.extend_from_slice(&first);
                while out.len() < 1 << 20 {
                    match rx.try_recv() {
                        Ok(more) => out.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                link.queued.sent(out.len() as u64);
                socket.write_all(&out).await?;
            }
            read = socket.read_buf(input) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            _ = check.tick() => {
                let silent = repl.now_ms().saturating_sub(link.last_ack_ms.load(Ordering::Relaxed));
                if silent > REPL_TIMEOUT.as_millis() as u64 {
                    tracing::warn!("replica {}:{} timed out", link.ip, link.port);
                    return Ok(());
                }
            }
            _ = link.kill.notified() => return Ok(()),
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// WAIT numreplicas timeout_ms: publish everything written so far, ask the replicas to ack at
/// once, and count those whose ack reaches that offset (blocking only this connection).
pub async fn wait(shared: &Shared, numreplicas: u64, timeout_ms: u64) -> i64 {
    let repl = &shared.repl;
    let target = repl.wait_target(&shared.engine);
    let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
    loop {
        let n = repl.acked(target);
        if n >= numreplicas || deadline.is_some_and(|d| Instant::now() >= d) {
            return n as i64;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
