//! Replication state of this node: its role, the replication ids and backlog, the replicas
//! attached to it, the link to its own primary, and which writes it must refuse.
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
//! thousand times between two drains is one record.
//!
//! This module holds the state and the operations on it, with the engine passed in; the tasks
//! that move the bytes are src/primary.rs (the pump, one sender per replica, WAIT) and
//! src/replica.rs (this node's link to its primary). The pure parts (records, backlog, the
//! PSYNC rule) are the `ratelimitd-replication` crate.

use crate::args::owned;
use crate::bounds::{ClientBounds, OutputClass, Queued};
use crate::config::{Config, MasterAddr};
use bytes::Bytes;
use ratelimitd_engine::{ChangeRef, Clock, Engine};
use ratelimitd_replication::{
    backlog::Backlog, decide, record, FullReason, PsyncDecision, Record, ReplId, ReplIds,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

/// Redis's text for a write on a replica.
pub const READONLY: &str = "READONLY You can't write against a read only replica.";
/// Redis's refusal when --min-replicas-to-write is not met.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// A PSYNC (or SYNC) request, handed from the command to the connection, which then gives its
/// socket to `primary::serve_replica`.
#[derive(Debug, Clone)]
pub struct PsyncRequest {
    pub replid: Bytes,
    pub offset: i64,
    /// Old-style SYNC: no `+FULLRESYNC` line, always a full sync.
    pub legacy: bool,
    pub listening_port: u16,
}

/// How often the pump drains the engine's changes.
pub const PUMP_INTERVAL: Duration = Duration::from_millis(1);
/// How often the primary sends a heartbeat (with its clock reading).
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A replica silent this long (no ACK) is dropped, as Redis's repl-timeout.
pub const REPL_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Bytes of the stream waiting for its sender task (held to the replica class of
    /// `client-output-buffer-limit`).
    pub queued: Queued,
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
    /// The user `masterauth` belongs to (None: the primary's default user).
    pub masteruser: Option<String>,
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
    /// The replica class's output limit, read at every append.
    bounds: Arc<ClientBounds>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Repl {
    pub fn new(config: &Config, bounds: Arc<ClientBounds>) -> Repl {
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
            masteruser: config.masteruser.clone(),
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
            bounds,
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

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Append bytes to the stream: the backlog and every attached replica's queue. A replica
    /// over the replica class's output limit is told to go; it then reconnects and resyncs,
    /// partially if the backlog still covers it.
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
        let chunk = Bytes::copy_from_slice(bytes);
        let limit = self.bounds.output_limit(OutputClass::Replica);
        let now = Instant::now();
        for r in &st.replicas {
            if r.link.queued.add(bytes.len() as u64, limit, now) {
                tracing::warn!(
                    "replica {}:{} is {} bytes behind, over its client-output-buffer-limit; \
                     dropping it (it will resync)",
                    r.link.ip,
                    r.link.port,
                    r.link.queued.bytes()
                );
                self.bounds
                    .disconnected
                    .output
                    .fetch_add(1, Ordering::Relaxed);
                r.link.kill.notify_one();
            }
            let _ = r.tx.send(chunk.clone());
        }
    }

    /// Drain the engine's changes into the stream (primary only, once the backlog exists).
    fn pump<C: Clock>(&self, engine: &Engine<C>, st: &mut State, scratch: &mut Vec<u8>) {
        if st.master.is_some() || st.backlog.is_none() {
            return;
        }
        // Encoded straight from the shards into one buffer, reused between pumps: no
        // allocation per changed key (it was most of what a replica cost the primary).
        scratch.clear();
        let states = &mut st.states;
        engine.drain_changes_with(|change| match change {
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
        let bytes = record::to_bytes(&Record::Limit(owned(args)));
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
    pub fn become_replica<C: Clock>(&self, engine: &Engine<C>, addr: MasterAddr) -> bool {
        let mut st = lock(&self.state);
        if st.master.as_ref() == Some(&addr) {
            return false;
        }
        // Whatever is still undrained goes out first, so our replicas' offsets stay ours.
        let mut scratch = Vec::new();
        self.pump(engine, &mut st, &mut scratch);
        st.master = Some(addr.clone());
        self.replica.store(true, Ordering::Relaxed);
        engine.set_change_tracking(false);
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
    pub fn promote<C: Clock>(&self, engine: &Engine<C>) {
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
        engine.set_change_tracking(true);
        engine.drain_changes_with(|_| {});
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

impl Repl {
    /// Why a write must be refused here, if it must: this node is a replica, or a primary
    /// short of good replicas (--min-replicas-to-write). The same rule for RESP, memcached and
    /// the HTTP check.
    pub fn write_refusal(&self) -> Option<&'static str> {
        if self.is_replica() {
            Some(READONLY)
        } else if !self.enough_replicas() {
            Some(NOREPLICAS)
        } else {
            None
        }
    }

    /// True when this replica's link to its primary is up (readiness and metrics read it).
    pub fn link_up(&self) -> bool {
        lock(&self.link).state == LinkState::Connected
    }

    /// The link's state, as ROLE names it.
    pub fn link_state(&self) -> LinkState {
        lock(&self.link).state
    }

    /// Change what INFO and ROLE show of the link (src/replica.rs keeps it current).
    pub fn set_link(&self, f: impl FnOnce(&mut LinkInfo)) {
        f(&mut lock(&self.link));
    }

    /// One tick of the pump (primary only): drain the engine's changes into the stream,
    /// recount the good replicas, and, if `ping`, send a heartbeat with the clock's reading.
    pub fn tick<C: Clock>(&self, engine: &Engine<C>, scratch: &mut Vec<u8>, ping: bool) {
        let mut st = lock(&self.state);
        self.pump(engine, &mut st, scratch);
        self.count_good_replicas(&st);
        if ping && !st.replicas.is_empty() {
            let ping = record::to_bytes(&Record::Ping {
                primary_now: engine.now(),
            });
            self.publish(&mut st, &ping);
        }
    }

    /// Attach a replica that sent PSYNC: decide between a partial and a full resync, and
    /// register its queue. Returns the bytes to send first (`+CONTINUE` and the backlog's
    /// tail, or `+FULLRESYNC`) and, for a full sync, the offset its snapshot starts at and why.
    ///
    /// For a full sync, everything before the snapshot goes into the stream first and the
    /// replica is attached at that offset, so its stream starts where the snapshot begins. The
    /// caller reads the snapshot after this returns, outside the lock: writes made while it is
    /// read are recorded, and the stream carries their current state after it, so the replica
    /// converges.
    pub fn attach<C: Clock>(
        &self,
        engine: &Engine<C>,
        req: &PsyncRequest,
        link: Arc<ReplicaLink>,
        tx: mpsc::UnboundedSender<Bytes>,
    ) -> (Vec<u8>, Option<(u64, FullReason)>) {
        let mut snapshot = None;
        let mut st = lock(&self.state);
        let decision = if req.legacy {
            PsyncDecision::Full(FullReason::NoHistory)
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
                self.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
                link.ack.store(from.saturating_sub(1), Ordering::Relaxed);
                tracing::info!(
                    "replica {}:{} resynced partially from offset {from} ({} bytes)",
                    link.ip,
                    link.port,
                    tail.len()
                );
            }
            PsyncDecision::Full(why) => {
                if &req.replid[..] != b"?" {
                    self.sync_partial_err.fetch_add(1, Ordering::Relaxed);
                }
                self.sync_full.fetch_add(1, Ordering::Relaxed);
                if st.backlog.is_none() {
                    let off = self.offset();
                    st.backlog = Some(Backlog::new(self.backlog_size, off));
                    if st.master.is_none() {
                        engine.set_change_tracking(true);
                        // Anything recorded before tracking meant nothing to anyone.
                        engine.drain_changes_with(|_| {});
                    }
                }
                let mut scratch = Vec::new();
                self.pump(engine, &mut st, &mut scratch);
                let off = self.offset();
                if !req.legacy {
                    out.extend_from_slice(
                        format!("+FULLRESYNC {} {off}\r\n", st.ids.replid).as_bytes(),
                    );
                }
                link.ack.store(off, Ordering::Relaxed);
                snapshot = Some((off, why));
            }
        }
        st.replicas.push(Attached { link, tx });
        (out, snapshot)
    }

    /// Forget an attached replica (its connection ended).
    pub fn detach(&self, link: &Arc<ReplicaLink>) {
        lock(&self.state)
            .replicas
            .retain(|r| !Arc::ptr_eq(&r.link, link));
    }

    /// WAIT's target: publish everything written so far, ask the replicas to acknowledge at
    /// once, and return the offset they must reach.
    pub fn wait_target<C: Clock>(&self, engine: &Engine<C>) -> u64 {
        let mut st = lock(&self.state);
        let mut scratch = Vec::new();
        self.pump(engine, &mut st, &mut scratch);
        let target = self.offset();
        if !st.replicas.is_empty() {
            let getack = record::to_bytes(&Record::GetAck);
            self.publish(&mut st, &getack);
        }
        target
    }

    /// How many attached replicas acknowledged `offset`.
    pub fn acked(&self, offset: u64) -> u64 {
        lock(&self.state)
            .replicas
            .iter()
            .filter(|r| r.link.ack.load(Ordering::Relaxed) >= offset)
            .count() as u64
    }
}
