//! The memcached listener's connections (`--memcached-port`), speaking the text and meta
//! protocols over the same key-value space as RESP.
//!
//! It exists for teams that rate-limit with memcached today (`add` + `incr`, Dalli's `ma`,
//! envoy's memcache backend): they point the client at this port unchanged. A counter made by
//! `incr` here reads back with RESP `GET`, and the reverse.
//!
//! The connection loop has the shape of src/connection.rs: read, decode every complete request
//! in the buffer ([`McDecoder`], bounded and pure), execute each ([`exec`]), write all replies
//! once per read. The accept loop is the RESP listener's (src/server.rs): connections register
//! in the same client registry, so `--maxclients` bounds both together, CLIENT LIST shows them,
//! and shutdown waits for them to finish their in-flight replies.

pub mod exec;

use crate::clients::ClientHandle;
use crate::fair_share::FairShare;
use crate::state::Shared;
use crate::stream::Stream;
use bytes::BytesMut;
use ratelimitd_engine::Nanos;
use ratelimitd_protocol::memcache::{compose_mc, McDecoder, McFrame, McLimits, McReply};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Initial read buffer, as for RESP.
const READ_BUF: usize = 16 * 1024;

/// How often [`flush_timer`] looks at a pending delayed `flush_all` (memcached's own clock
/// ticks once a second).
const FLUSH_TICK: Duration = Duration::from_millis(10);

/// What the memcached listener keeps of its own: memcached's `stats` counters and a pending
/// delayed `flush_all`.
#[derive(Debug, Default)]
pub struct McState {
    pub stats: McStats,
    /// When a delayed `flush_all` is due (engine clock), if one is pending. Only the latest
    /// `flush_all` counts: a new one, delayed or not, replaces it. One deadline, read by one
    /// timer task, however many delayed flushes a client sends.
    flush_at: Mutex<Option<Nanos>>,
}

impl McState {
    /// Set (or, with None, cancel) the pending delayed `flush_all`.
    pub fn set_flush_at(&self, at: Option<Nanos>) {
        *self.flush_at.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Take the pending flush if it is due at `now`.
    fn take_due_flush(&self, now: Nanos) -> bool {
        let mut at = self.flush_at.lock().unwrap_or_else(PoisonError::into_inner);
        if at.is_some_and(|at| at <= now) {
            *at = None;
            true
        } else {
            false
        }
    }
}

/// Run the delayed `flush_all`s when they fall due, by the engine's clock (so a test on a
/// fake clock moves them as it moves every other deadline), until shutdown.
pub async fn flush_timer(
    shared: Arc<Shared>,
    state: Arc<McState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(FLUSH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if state.take_due_flush(shared.engine.now()) {
            shared.engine.kv_flush();
            let mut counters = crate::counters::LocalCounters::default();
            counters.changed(1);
            shared.flush(&mut counters);
        }
    }
}

/// Counters `stats` reports under memcached's names. Relaxed atomics: they are statistics.
#[derive(Debug, Default)]
pub struct McStats {
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub cmd_get: AtomicU64,
    pub cmd_set: AtomicU64,
    pub cmd_flush: AtomicU64,
    pub cmd_touch: AtomicU64,
    pub get_hits: AtomicU64,
    pub get_misses: AtomicU64,
    pub delete_hits: AtomicU64,
    pub delete_misses: AtomicU64,
    pub incr_hits: AtomicU64,
    pub incr_misses: AtomicU64,
    pub decr_hits: AtomicU64,
    pub decr_misses: AtomicU64,
    pub cas_hits: AtomicU64,
    pub cas_misses: AtomicU64,
    pub cas_badval: AtomicU64,
    pub touch_hits: AtomicU64,
    pub touch_misses: AtomicU64,
    pub total_items: AtomicU64,
}

impl McStats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serve one accepted connection until it ends.
pub async fn serve_conn(
    socket: Stream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    state: Arc<McState>,
    shutdown: watch::Receiver<bool>,
) {
    let handle = shared.clients.register(peer, socket.local_addr().ok());
    state.stats.curr_connections.fetch_add(1, Ordering::Relaxed);
    let _ = serve(socket, &shared, &state, &handle, shutdown).await;
    state.stats.curr_connections.fetch_sub(1, Ordering::Relaxed);
    shared.clients.unregister(handle.id);
}

/// Serve until the client leaves or sends `quit`, speaks the binary protocol, or the daemon
/// shuts down. I/O errors are the client's business (a vanished peer is normal).
async fn serve(
    mut socket: Stream,
    shared: &Arc<Shared>,
    state: &Arc<McState>,
    handle: &ClientHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut decoder = McDecoder::new(McLimits {
        max_value_len: shared.config.max_value_size,
        ..McLimits::default()
    });
    let mut input = BytesMut::with_capacity(READ_BUF);
    let mut output = BytesMut::with_capacity(READ_BUF);
    let mut share = FairShare::default();
    let mut counters = crate::counters::LocalCounters::default();
    let mut auth = exec::McAuth::default();
    loop {
        share.take_turns().await;
        if input.capacity() - input.len() < 1024 {
            input.reserve(READ_BUF);
        }
        if handle.killed.load(Ordering::Acquire) {
            return Ok(()); // CLIENT KILL, the idle or sign-in timeout
        }
        let n = tokio::select! {
            read = socket.read_buf(&mut input) => read?,
            _ = shutdown.changed() => return Ok(()),
            _ = handle.kill_notify.notified() => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let mut close = false;
        let mut served = false;
        let mut cx = exec::McCtx {
            shared,
            state,
            counters: &mut counters,
            auth: &mut auth,
            handle,
        };
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(McFrame::Request(req))) => {
                    share.ran();
                    served = true;
                    match exec::execute(&mut cx, req) {
                        exec::Outcome::Reply(reply) => compose_mc(&reply, &mut output),
                        exec::Outcome::Close => {
                            close = true;
                            break;
                        }
                    }
                }
                Ok(Some(McFrame::Error(e))) => {
                    served = true;
                    cx.counters.protocol_error();
                    compose_mc(&McReply::from(e), &mut output);
                }
                Ok(None) => break,
                Err(fatal) => {
                    cx.counters.protocol_error();
                    compose_mc(&McReply::Error(fatal.to_string()), &mut output);
                    close = true;
                    break;
                }
            }
        }
        shared.flush(&mut counters);
        if served {
            handle.touch();
        }
        if !output.is_empty() {
            // A kill also ends a write that a client which stopped reading keeps waiting.
            tokio::select! {
                biased;
                written = socket.write_all(&output) => written?,
                _ = handle.kill_notify.notified() => return Ok(()),
            }
            output.clear();
        }
        if close {
            let _ = socket.shutdown().await;
            return Ok(());
        }
    }
}
