//! Replication state and the primary's side of it: the replication ids and backlog, the pump
//! that drains the engine's changes into the stream every millisecond, full and partial
//! resyncs (PSYNC), one sender task per attached replica, and WAIT.
//!
//! ```text
//!  RL.CHECK ─► Engine (records the key) ──┐
//!  RL.LIMIT ─► persist commit ─► feed_limit ─┐   pump, every 1 ms: drain_changes → records
//!                                            ▼                 ▼
//!                         Repl.state: append to the backlog, send to every replica's queue
//!                                            │
//!             per-replica sender task ◄──────┘ writes the queue to the socket, reads ACKs
//! ```
//!
//! One mutex (`Repl::state`) orders everything that enters the stream: drained changes, limit
//! changes (fed from inside the persistence commit, so their order is the log's order), and
//! the point at which a full sync's snapshot is taken. The check path never takes it: the
//! engine only marks the key, and the pump reads its *current* state, so a hot key written a
//! thousand times between two drains is one record. What a replica does with the stream is in
//! src/replica.rs; the pure parts (records, backlog, PSYNC rule) are the
//! `ratelimitd-replication` crate.

use crate::server::Shared;
use bytes::{Bytes, BytesMut};
use ratelimitd_engine::{ChangeRef, Limit, Scope};
use ratelimitd_protocol::parse::format_period;
use ratelimitd_replication::{
    backlog::Backlog, decide, record, FullSync, PsyncDecision, Record, ReplId, ReplIds,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};

/// How often the pump drains the engine's changes.
const PUMP_INTERVAL: Duration = Duration::from_millis(1);
/// How often the primary sends a heartbeat (with its clock reading).
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A replica silent this long (no ACK) is dropped, as Redis's repl-timeout.
pub const REPL_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes queued for one replica before it is dropped (Redis's replica output buffer
/// limit); it then reconnects and resyncs, partially if the backlog still covers it.
const MAX_QUEUED: u64 = 256 * 1024 * 1024;

/// Where a replica's link points (REPLICAOF host port), as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddr {
    pub host: String,
    pub port: u16,
}

/// The replica link's state, as ROLE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connect,
    Connecting,
    Sync,
    Connected,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// What INFO and ROLE show of the replica's link (src/replica.rs keeps it current).
#[derive(Debug)]
pub struct LinkInfo {
    pub state: LinkState,
    pub last_io: Instant,
    pub down_since: Instant,
    /// Primary minus local clock, ns, from heartbeats.
    pub clock_offset_ns: Option<i64>,
}

/// One attached replica, shared between its sender task and INFO/ROLE/WAIT.
#[derive(Debug)]
pub struct ReplicaLink {
    pub ip: String,
    pub port: u16,
    /// Offset the replica acknowledged.
    pub ack: AtomicU64,
    /// ms since `Repl::epoch` of the last ACK.
    pub last_ack_ms: AtomicU64,
    pub queued: AtomicU64,
    pub kill: Notify,
}

struct Attached {
    link: Arc<ReplicaLink>,
    tx: mpsc::UnboundedSender<Bytes>,
}

struct State {
    ids: ReplIds,
    backlog: Option<Backlog>,
    replicas: Vec<Attached>,
    /// Some: this node is a replica of that primary.
    master: Option<MasterAddr>,
    /// The pump's RPL.STATES packer (its buffer is reused from one drain to the next).
    states: record::StatesWriter,
}

/// Replication state of this node (one per process, in `Shared`).
pub struct Repl {
    state: Mutex<State>,
    /// master_repl_offset (replica: the offset processed), readable without the lock.
    offset: AtomicU64,
    /// True while this node is a replica (checked by every write command).
    replica: AtomicBool,
    pub backlog_size: usize,
    pub priority: u32,
    pub masterauth: Option<String>,
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Where the link task should connect; changed by REPLICAOF.
    target: watch::Sender<Option<MasterAddr>>,
    /// CLIENT KILL TYPE master: the link task drops its connection and reconnects.
    pub link_kill: Notify,
    pub link: Mutex<LinkInfo>,
    epoch: Instant,
    /// The replica has a link to kill (for CLIENT KILL's count).
    pub link_open: AtomicBool,
    /// --min-replicas-to-write and --min-replicas-max-lag (seconds), changeable by CONFIG SET.
    pub min_replicas_to_write: AtomicU32,
    pub min_replicas_max_lag: AtomicU64,
    /// Replicas that acknowledged within the max lag, recounted by the pump every tick so that
    /// a write checks one atomic instead of taking the replication lock.
    good_replicas: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Repl {
    pub fn new(config: &crate::Config) -> Repl {
        let master = config.replicaof.clone();
        let now = Instant::now();
        Repl {
            replica: AtomicBool::new(master.is_some()),
            state: Mutex::new(State {
                ids: ReplIds::fresh(),
                backlog: None,
                replicas: Vec::new(),
                master: master.clone(),
                states: record::StatesWriter::default(),
            }),
            offset: AtomicU64::new(0),
            backlog_size: config.repl_backlog_size.0 as usize,
            priority: config.replica_priority,
            masterauth: config.masterauth.clone(),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            target: watch::channel(master).0,
            link_kill: Notify::new(),
            link: Mutex::new(LinkInfo {
                state: LinkState::Connect,
                last_io: now,
                down_since: now,
                clock_offset_ns: None,
            }),
            epoch: now,
            link_open: AtomicBool::new(false),
            min_replicas_to_write: AtomicU32::new(config.min_replicas_to_write),
            min_replicas_max_lag: AtomicU64::new(config.min_replicas_max_lag),
            good_replicas: AtomicU32::new(0),
        }
    }

    /// Replicas that acknowledged within --min-replicas-max-lag (as of the last pump tick).
    pub fn good_replicas(&self) -> u32 {
        self.good_replicas.load(Ordering::Relaxed)
    }

    /// False when --min-replicas-to-write is set and fewer replicas than that are good: the
    /// primary then refuses writes (`-NOREPLICAS`).
    pub fn enough_replicas(&self) -> bool {
        let min = self.min_replicas_to_write.load(Ordering::Relaxed);
        min == 0 || self.good_replicas() >= min
    }

    fn count_good_replicas(&self, st: &State) {
        let max_lag_ms = self
            .min_replicas_max_lag
            .load(Ordering::Relaxed)
            .saturating_mul(1000);
        let now = self.now_ms();
        let good = st
            .replicas
            .iter()
            .filter(|r| {
                now.saturating_sub(r.link.last_ack_ms.load(Ordering::Relaxed)) <= max_lag_ms
            })
            .count();
        self.good_replicas
            .store(u32::try_from(good).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    pub fn is_replica(&self) -> bool {
        self.replica.load(Ordering::Relaxed)
    }

    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::Acquire)
    }

    pub fn target(&self) -> watch::Receiver<Option<MasterAddr>> {
        self.target.subscribe()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Append bytes to the stream: the backlog and every attached replica's queue. A replica
    /// whose queue is over [`MAX_QUEUED`] is told to go (it will resync).
    fn publish(&self, st: &mut State, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(backlog) = st.backlog.as_mut() else {
            return;
        };
        backlog.append(bytes);
        self.offset.store(backlog.end_offset(), Ordering::Release);
        if st.replicas.is_empty() {
            return;
        }
        let shared = Bytes::copy_from_slice(bytes);
        for r in &st.replicas {
            let queued = r
                .link
                .queued
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if queued > MAX_QUEUED {
                tracing::warn!(
                    "replica {}:{} is {queued} bytes behind; dropping it (it will resync)",
                    r.link.ip,
                    r.link.port
                );
                r.link.kill.notify_one();
            }
            let _ = r.tx.send(shared.clone());
        }
    }

    /// Drain the engine's changes into the stream (primary only, once the backlog exists).
    fn pump(&self, shared: &Shared, st: &mut State, scratch: &mut Vec<u8>) {
        if st.master.is_some() || st.backlog.is_none() {
            return;
        }
        // Encoded straight from the shards into one buffer, reused between pumps: no
        // allocation per changed key (it was most of what a replica cost the primary).
        scratch.clear();
        let states = &mut st.states;
        shared.engine.drain_changes_with(|change| match change {
            ChangeRef::State {
                table,
                key,
                words,
                shape,
            } => states.push(table, key, words, shape, scratch),
            other => record::encode_change(other, scratch),
        });
        st.states.finish(scratch);
        self.publish(st, scratch);
    }

    /// Feed an applied limit or tier change (`RL.LIMIT SET ...` etc.) into the stream. Called
    /// from inside the persistence commit, so the stream's order is the log's order. A no-op
    /// on a replica (it forwards its primary's bytes instead) and before any replica attached
    /// (a full sync will carry the limit).
    pub fn feed_limit(&self, args: &[&[u8]]) {
        if self.is_replica() {
            return;
        }
        let mut st = lock(&self.state);
        if st.backlog.is_none() || st.master.is_some() {
            return;
        }
        let bytes = record::to_bytes(&Record::Limit(crate::cmd::owned(args)));
        self.publish(&mut st, &bytes);
    }

    /// A replica forwards what it applied from its primary: into its own backlog (so it can
    /// serve partial resyncs after a promotion) and to its own replicas (chained replication).
    pub fn forward(&self, bytes: &[u8]) {
        let mut st = lock(&self.state);
        self.publish(&mut st, bytes);
    }

    /// A full sync from our primary finished: adopt its id and offset, start a fresh backlog.
    pub fn after_full_sync(&self, id: ReplId, offset: u64) {
        let mut st = lock(&self.state);
        st.ids.replid = id;
        st.ids.clear_second();
        st.backlog = Some(Backlog::new(self.backlog_size, offset));
        self.offset.store(offset, Ordering::Release);
        disconnect_replicas(&mut st);
    }

    /// `+CONTINUE <id>` from a primary whose id changed (it was promoted): keep our history as
    /// the previous one, as Redis does, and make our own replicas resync to learn the new id.
    pub fn after_continue(&self, id: Option<ReplId>) {
        let mut st = lock(&self.state);
        if st.backlog.is_none() {
            let off = self.offset();
            st.backlog = Some(Backlog::new(self.backlog_size, off));
        }
        if let Some(id) = id {
            if id != st.ids.replid {
                let off = self.offset();
                st.ids.shift(id, off);
                disconnect_replicas(&mut st);
            }
        }
    }

    /// What a replica sends in PSYNC: our id and the next byte we want (`? -1` with no history).
    pub fn psync_request(&self) -> (String, i64) {
        let st = lock(&self.state);
        if st.backlog.is_some() || self.offset() > 0 {
            (st.ids.replid.to_string(), self.offset() as i64 + 1)
        } else {
            ("?".into(), -1)
        }
    }

    /// REPLICAOF host port: become a replica. Our replicas are disconnected (they will resync
    /// through us and learn the new history). Returns false if already following that primary.
    pub fn become_replica(&self, shared: &Shared, addr: MasterAddr) -> bool {
        let mut st = lock(&self.state);
        if st.master.as_ref() == Some(&addr) {
            return false;
        }
        // Whatever is still undrained goes out first, so our replicas' offsets stay ours.
        let mut scratch = Vec::new();
        self.pump(shared, &mut st, &mut scratch);
        st.master = Some(addr.clone());
        self.replica.store(true, Ordering::Relaxed);
        shared.engine.set_change_tracking(false);
        disconnect_replicas(&mut st);
        drop(st);
        // The link task sees the new target and drops any current link.
        self.target.send_replace(Some(addr));
        {
            let mut link = lock(&self.link);
            link.state = LinkState::Connect;
            link.down_since = Instant::now();
        }
        true
    }

    /// REPLICAOF NO ONE: keep every key, limit and tier; start a new history (the old id stays
    /// valid as `master_replid2` up to the current offset); accept writes at once.
    pub fn promote(&self, shared: &Shared) {
        let mut st = lock(&self.state);
        if st.master.is_none() {
            return;
        }
        st.master = None;
        self.target.send_replace(None);
        let off = self.offset();
        st.ids.shift(ReplId::random(), off);
        if st.backlog.is_none() {
            st.backlog = Some(Backlog::new(self.backlog_size, off));
        }
        // Tracking starts before writes are accepted, so nothing written after is missed.
        shared.engine.set_change_tracking(true);
        shared.engine.drain_changes_with(|_| {});
        self.replica.store(false, Ordering::Relaxed);
        disconnect_replicas(&mut st);
        tracing::info!(
            "promoted to primary: new replication id {}, previous {} valid up to offset {off}",
            st.ids.replid,
            st.ids.replid2
        );
    }

    pub fn master(&self) -> Option<MasterAddr> {
        lock(&self.state).master.clone()
    }

    /// CLIENT KILL TYPE replica|slave: drop every attached replica's connection.
    pub fn kill_replicas(&self) -> usize {
        let st = lock(&self.state);
        for r in &st.replicas {
            r.link.kill.notify_one();
        }
        st.replicas.len()
    }

    /// CLIENT KILL TYPE master: drop the link to our primary (it reconnects).
    pub fn kill_link(&self) -> usize {
        if self.link_open.load(Ordering::Relaxed) {
            self.link_kill.notify_one();
            1
        } else {
            0
        }
    }

    /// A copy of what INFO replication and ROLE show.
    pub fn view(&self) -> View {
        let st = lock(&self.state);
        let now_ms = self.now_ms();
        View {
            ids: st.ids.clone(),
            offset: self.offset(),
            master: st.master.clone(),
            backlog: st
                .backlog
                .as_ref()
                .map(|b| (b.size(), b.first_byte_offset(), b.histlen())),
            replicas: st
                .replicas
                .iter()
                .map(|r| ReplicaView {
                    ip: r.link.ip.clone(),
                    port: r.link.port,
                    ack: r.link.ack.load(Ordering::Relaxed),
                    lag_s: now_ms.saturating_sub(r.link.last_ack_ms.load(Ordering::Relaxed)) / 1000,
                })
                .collect(),
        }
    }
}

fn disconnect_replicas(st: &mut State) {
    for r in st.replicas.drain(..) {
        r.link.kill.notify_one();
    }
}

/// INFO/ROLE's copy of the state.
pub struct View {
    pub ids: ReplIds,
    pub offset: u64,
    pub master: Option<MasterAddr>,
    /// (size, first byte offset, histlen)
    pub backlog: Option<(usize, u64, usize)>,
    pub replicas: Vec<ReplicaView>,
}

pub struct ReplicaView {
    pub ip: String,
    pub port: u16,
    pub ack: u64,
    pub lag_s: u64,
}

/// Start the pump (and heartbeats) and the replica link task; both stop at shutdown.
pub fn spawn(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) {
    let s = shared.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUMP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut scratch = Vec::new();
        let mut last_ping = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let repl = &s.repl;
            if repl.is_replica() {
                continue;
            }
            let mut st = lock(&repl.state);
            repl.pump(&s, &mut st, &mut scratch);
            repl.count_good_replicas(&st);
            if last_ping.elapsed() >= PING_INTERVAL {
                last_ping = Instant::now();
                if !st.replicas.is_empty() {
                    let ping = record::to_bytes(&Record::Ping {
                        primary_now: s.engine.now(),
                    });
                    repl.publish(&mut st, &ping);
                }
            }
        }
    });
    tokio::spawn(crate::replica::run(shared.clone(), shutdown.clone()));
}

// ---------------------------------------------------------------------------------------------
// Full sync payload

/// The arguments of RL.LIMIT SET/DEL naming `scope`.
pub fn scope_args(scope: &Scope) -> Vec<Bytes> {
    let endpoint = |out: &mut Vec<Bytes>, e: &Option<ratelimitd_engine::EndpointPattern>| {
        if let Some(p) = e {
            out.push(Bytes::from_static(b"ENDPOINT"));
            out.push(Bytes::copy_from_slice(p.as_bytes()));
        }
    };
    let mut out = Vec::with_capacity(4);
    match scope {
        Scope::Default => out.push(Bytes::from_static(b"DEFAULT")),
        Scope::Client { id, endpoint: e } => {
            out.push(Bytes::from_static(b"CLIENT"));
            out.push(Bytes::copy_from_slice(id));
            endpoint(&mut out, e);
        }
        Scope::Tier { name, endpoint: e } => {
            out.push(Bytes::from_static(b"TIER"));
            out.push(Bytes::copy_from_slice(name));
            endpoint(&mut out, e);
        }
        Scope::Endpoint(p) => {
            out.push(Bytes::from_static(b"ENDPOINT"));
            out.push(Bytes::copy_from_slice(p.as_bytes()));
        }
    }
    out
}

/// `RL.LIMIT SET <scope> RATE n/p BURST b ... ALGO a`: the command that recreates a limit.
pub fn limit_set_args(scope: &Scope, limit: &Limit) -> Vec<Bytes> {
    let mut out = vec![Bytes::from_static(b"RL.LIMIT"), Bytes::from_static(b"SET")];
    out.extend(scope_args(scope));
    for w in limit.windows() {
        out.push(Bytes::from_static(b"RATE"));
        out.push(Bytes::from(format!(
            "{}/{}",
            w.count(),
            format_period(w.period_ms())
        )));
        out.push(Bytes::from_static(b"BURST"));
        out.push(Bytes::from(w.burst().to_string()));
    }
    out.push(Bytes::from_static(b"ALGO"));
    out.push(Bytes::from_static(limit.algorithm().name().as_bytes()));
    out
}

/// Every limit and tier as the commands that set them, and the engine's state.
fn full_sync_payload(shared: &Shared) -> Vec<u8> {
    let mut limits: Vec<Vec<Bytes>> = shared
        .engine
        .list_limits()
        .iter()
        .map(|(s, l)| limit_set_args(s, l))
        .collect();
    for (client, tier) in shared.engine.list_tiers() {
        limits.push(vec![
            Bytes::from_static(b"RL.TIER"),
            Bytes::from_static(b"SET"),
            Bytes::from(client),
            Bytes::from(tier),
        ]);
    }
    FullSync {
        limits,
        state: shared.engine.snapshot_state(),
    }
    .encode()
}

// ---------------------------------------------------------------------------------------------
// Serving one replica

/// A PSYNC (or SYNC) request, handed from the command to the connection, which then gives its
/// socket to [`serve_replica`].
#[derive(Debug, Clone)]
pub struct PsyncRequest {
    pub replid: Bytes,
    pub offset: i64,
    /// Old-style SYNC: no `+FULLRESYNC` line, always a full sync.
    pub legacy: bool,
    pub listening_port: u16,
}

/// Answer PSYNC and then stream to the replica until it goes, is killed, or we shut down.
/// `input` holds bytes the replica sent after PSYNC (ACKs).
pub async fn serve_replica(
    socket: &mut TcpStream,
    mut input: BytesMut,
    shared: &Arc<Shared>,
    req: PsyncRequest,
    client_id: u64,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let repl = &shared.repl;
    let _ = client_id;
    let link = Arc::new(ReplicaLink {
        ip: peer.ip().to_string(),
        port: if req.listening_port == 0 {
            peer.port()
        } else {
            req.listening_port
        },
        ack: AtomicU64::new(0),
        last_ack_ms: AtomicU64::new(repl.now_ms()),
        queued: AtomicU64::new(0),
        kill: Notify::new(),
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let (mut first, snapshot) = {
        let shared2 = shared.clone();
        let link2 = link.clone();
        let attach = move || {
            let mut snapshot = None;
            let repl = &shared2.repl;
            let mut st = lock(&repl.state);
            let decision = if req.legacy {
                PsyncDecision::Full(ratelimitd_replication::FullReason::NoHistory)
            } else {
                decide(&st.ids, st.backlog.as_ref(), &req.replid, req.offset)
            };
            let mut out = Vec::new();
            match decision {
                PsyncDecision::Continue { from } => {
                    let tail = st
                        .backlog
                        .as_ref()
                        .and_then(|b| b.tail_from(from))
                        .unwrap_or_default();
                    out.extend_from_slice(format!("+CONTINUE {}\r\n", st.ids.replid).as_bytes());
                    out.extend_from_slice(&tail);
                    repl.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
                    link2.ack.store(from.saturating_sub(1), Ordering::Relaxed);
                    tracing::info!(
                        "replica {}:{} resynced partially from offset {from} ({} bytes)",
                        link2.ip,
                        link2.port,
                        tail.len()
                    );
                }
                PsyncDecision::Full(why) => {
                    if &req.replid[..] != b"?" {
                        repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
                    }
                    repl.sync_full.fetch_add(1, Ordering::Relaxed);
                    if st.backlog.is_none() {
                        let off = repl.offset();
                        st.backlog = Some(Backlog::new(repl.backlog_size, off));
                        if st.master.is_none() {
                            shared2.engine.set_change_tracking(true);
                            // Anything recorded before tracking meant nothing to anyone.
                            shared2.engine.drain_changes_with(|_| {});
                        }
                    }
                    // Everything before the snapshot goes into the stream first, and the
                    // replica is attached at that offset, so its stream starts where the
                    // snapshot begins. The snapshot itself is read after the lock is released
                    // (below): writes made while it is read are recorded, and the stream
                    // carries their current state after it, so the replica converges.
                    let mut scratch = Vec::new();
                    repl.pump(&shared2, &mut st, &mut scratch);
                    let off = repl.offset();
                    if !req.legacy {
                        out.extend_from_slice(
                            format!("+FULLRESYNC {} {off}\r\n", st.ids.replid).as_bytes(),
                        );
                    }
                    link2.ack.store(off, Ordering::Relaxed);
                    snapshot = Some((off, why));
                }
            }
            st.replicas.push(Attached {
                link: link2.clone(),
                tx,
            });
            (out, snapshot)
        };
        crate::persist::in_place(attach)
    };
    if let Some((off, why)) = snapshot {
        // Read on the blocking pool, outside `Repl::state`: a snapshot of millions of keys
        // takes a while, and holding the lock (or a worker) that long stalled the pump and,
        // through it, every connection of a freshly promoted primary. At normal priority,
        // unlike BGSAVE (see `startup::bgsave`): the replica's handshake timeout runs meanwhile.
        let shared2 = shared.clone();
        let payload = match tokio::task::spawn_blocking(move || full_sync_payload(&shared2)).await {
            Ok(payload) => payload,
            Err(e) => {
                lock(&repl.state)
                    .replicas
                    .retain(|r| !Arc::ptr_eq(&r.link, &link));
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
    {
        let mut st = lock(&repl.state);
        st.replicas.retain(|r| !Arc::ptr_eq(&r.link, &link));
    }
    tracing::info!("replica {}:{} disconnected", link.ip, link.port);
    result
}

/// Most a replica may have sent that is not yet a whole command. After PSYNC a replica only
/// sends `REPLCONF ACK <offset>` (under 60 bytes); the general framing limits (4096 elements
/// of 64 MiB) would let one connection make the primary buffer gigabytes.
const MAX_REPLICA_INPUT: usize = 64 * 1024;

async fn stream_to_replica(
    socket: &mut TcpStream,
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
                link.queued.fetch_sub(out.len() as u64, Ordering::Relaxed);
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

// ---------------------------------------------------------------------------------------------
// WAIT

/// WAIT numreplicas timeout_ms: publish everything written so far, ask the replicas to ack at
/// once, and count those whose ack reaches that offset (blocking only this connection).
pub async fn wait(shared: &Shared, numreplicas: u64, timeout_ms: u64) -> i64 {
    let repl = &shared.repl;
    let target = {
        let mut st = lock(&repl.state);
        let mut scratch = Vec::new();
        repl.pump(shared, &mut st, &mut scratch);
        let target = repl.offset();
        if !st.replicas.is_empty() {
            let getack = record::to_bytes(&Record::GetAck);
            repl.publish(&mut st, &getack);
        }
        target
    };
    let count = || {
        let st = lock(&repl.state);
        st.replicas
            .iter()
            .filter(|r| r.link.ack.load(Ordering::Relaxed) >= target)
            .count() as u64
    };
    let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
    loop {
        let n = count();
        if n >= numreplicas || deadline.is_some_and(|d| Instant::now() >= d) {
            return n as i64;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
