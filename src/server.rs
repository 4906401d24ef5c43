//! The listener: accepts connections, enforces `--maxclients`, and runs the clean shutdown.
//!
//! ```text
//!             SIGINT/SIGTERM ──► shutdown (watch channel)
//!                                   │
//!  TCP accept ──► Connection task ──┴─► read ─► Decoder ─► cmd::execute ─► Engine
//!  (one tokio    (one per client,        ▲                      │
//!   task)         on the worker pool)    └──── one write of all replies of that read
//! ```
//!
//! Shutdown: the accept loop stops at once; each connection finishes the requests it has already
//! read, writes their replies, and closes; `run` returns when all have, or after a grace period.

use crate::connection::Connection;
use crate::stats::{ClientRegistry, Stats};
use crate::Config;
use ratelimitd_engine::{Engine, EngineConfig, SystemClock};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long shutdown waits for connections to finish their in-flight replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the timing wheels advance, and how many due entries one step may look at, over
/// all shards. A step is then at most ~2048 x 50 ns = 100 us of work on a worker thread, so no
/// request waits behind a mass expiry, and the wheels can still drop 2M entries a second.
const PURGE_INTERVAL: Duration = Duration::from_millis(1);
const PURGE_BUDGET: usize = 2048;

/// State every connection shares.
pub struct Shared {
    pub config: Config,
    pub engine: Engine<SystemClock>,
    pub stats: Stats,
    pub clients: ClientRegistry,
    /// 40 hex characters, new for every process start (INFO's run_id).
    pub run_id: String,
    pub started: Instant,
    /// The port actually bound (differs from config.port when that was 0).
    pub port: u16,
    /// The data directory: limits log and snapshots (src/persist.rs).
    pub persist: crate::persist::Persist,
    /// Prometheus metrics (src/metrics.rs).
    pub metrics: crate::metrics::Metrics,
    /// The HTTP listener, bound at start-up and taken by `run` (src/http.rs).
    pub http: std::sync::Mutex<Option<std::net::TcpListener>>,
    /// The HTTP port actually bound, once bound.
    pub http_bound: std::sync::OnceLock<u16>,
    /// True while serving; false once shutdown began (GET /readyz).
    pub ready: std::sync::atomic::AtomicBool,
    /// The memcached listener (bound at start-up, taken by `run`) and its stats (src/memcache.rs).
    pub memcache: crate::memcache::McShared,
    /// Replication: role, ids, backlog, attached replicas, the link (src/primary.rs).
    pub repl: crate::primary::Repl,
    /// Pub/sub channels and patterns (src/pubsub.rs).
    pub pubsub: crate::pubsub::PubSub,
}

impl Shared {
    pub fn new(config: Config, port: u16, persist: crate::persist::Persist) -> Shared {
        // Before the engine allocates anything (process-wide; engine/src/arena.rs).
        ratelimitd_engine::arena::set_enabled(config.huge_pages == "yes");
        let engine = Engine::new(
            SystemClock::new(),
            EngineConfig {
                shards: config.shards,
                // 0 means "no bound", as in Redis (and as CONFIG SET reads it).
                max_keys: config.max_keys.filter(|&n| n > 0),
                max_memory: config.maxmemory.map(|m| m.0).filter(|&b| b > 0),
                policy: config.maxmemory_policy.0,
            },
        );
        let repl = crate::primary::Repl::new(&config);
        Shared {
            config,
            engine,
            stats: Stats::default(),
            clients: ClientRegistry::default(),
            run_id: new_run_id(),
            started: Instant::now(),
            port,
            persist,
            metrics: crate::metrics::Metrics::new(),
            http: std::sync::Mutex::new(None),
            http_bound: std::sync::OnceLock::new(),
            ready: std::sync::atomic::AtomicBool::new(false),
            memcache: crate::memcache::McShared::default(),
            repl,
            pubsub: crate::pubsub::PubSub::default(),
        }
    }

    /// The HTTP port actually bound, if the HTTP listener is on.
    pub fn http_port(&self) -> Option<u16> {
        self.http_bound.get().copied()
    }
}

/// A run id that differs between process starts: hashed from the time, the pid and the
/// address of a stack value, which is plenty for telling restarts apart (it is not a secret).
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(40);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let state = ahash::RandomState::new();
    let marker = 0u8;
    for i in 0..3u64 {
        let mut h = state.build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_usize(&marker as *const u8 as usize);
        h.write_u64(i);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(40);
    out
}

/// Serve until SIGINT or SIGTERM, then shut down cleanly.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut signals: ShutdownSignals,
) -> std::io::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let purge_shared = shared.clone();
    let mut purge_shutdown = shutdown_rx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        // Behind schedule (a busy worker), skip ahead rather than fire a burst of steps.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { purge_shared.engine.expire_step(PURGE_BUDGET); }
                _ = purge_shutdown.changed() => break,
            }
        }
    });

    crate::startup::spawn_background(&shared, &shutdown_rx);
    crate::memcache::spawn(&shared, &shutdown_rx);
    crate::primary::spawn(&shared, &shutdown_rx);

    let signal = signals.recv();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        log(&format!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                shared.stats.connections_received.fetch_add(1, Ordering::Relaxed);
                if shared.clients.len() >= shared.config.maxclients {
                    shared.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
                    });
                    continue;
                }
                let _ = socket.set_nodelay(true);
                let conn = Connection::new(socket, peer, shared.clone(), shutdown_rx.clone());
                tokio::spawn(conn.run());
            }
            _ = &mut signal => break,
        }
    }

    log("shutting down: no new connections; finishing in-flight replies");
    shared.ready.store(false, Ordering::Relaxed);
    drop(listener);
    let _ = shutdown_tx.send(true);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while shared.clients.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = shared.clients.len();
    if left > 0 {
        log(&format!(
            "{left} connection(s) still open after the grace period; closing"
        ));
    }
    crate::startup::on_shutdown(&shared).await;
    log("bye");
    Ok(())
}

/// SIGINT and SIGTERM, registered when this is created. main creates it before logging that
/// the daemon is ready: a signal sent the moment a supervisor (or a test) sees that line must be
/// handled as a clean shutdown, not take its default action and kill the process.
pub struct ShutdownSignals {
    #[cfg(unix)]
    both: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignals {
    /// Register the handlers (needs a running tokio runtime).
    pub fn register() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let both = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            ShutdownSignals { both }
        }
        #[cfg(not(unix))]
        {
            ShutdownSignals {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = self.both.as_mut() {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One info-level log line (through `tracing`, see src/logging.rs): start, stop, and accept
/// errors. Kept as a function so that call sites stay one line.
pub fn log(msg: &str) {
    tracing::info!("{msg}");
}
