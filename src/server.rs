//! The top of the house: bind the listeners, load what is persisted, serve until told to stop,
//! and shut down cleanly. `main` and the in-process tests start the daemon the same way:
//! [`prepare`], then [`Prepared::serve`].
//!
//! ```text
//!             SIGINT/SIGTERM (or a test) ──► shutdown (watch channel)
//!                                                │
//!  RESP accept ──────► Connection task ──────────┴─► read ─► Decoder ─► cmd::execute ─► Engine
//!  memcached accept ─► memcache::serve_conn          ▲                        │
//!  (one accept loop    (one task per client)         └── one write of all replies of that read
//!   for both)
//!  HTTP accept ──────► hyper, one task per connection (src/http.rs)
//!  background tasks: expiry, snapshots, throttling summary, replication (src/tasks.rs)
//! ```
//!
//! Shutdown: the accept loops stop at once; each connection finishes the requests it has already
//! read, writes their replies, and closes; `serve` returns when all have, or after a grace
//! period, and takes a last snapshot.

use crate::cmd::COMMANDS;
use crate::config::Config;
use crate::connection::Connection;
use crate::memcache::{serve_conn, McState, McStats};
use crate::persist::Persist;
use crate::settings::Settings;
use crate::startup::StartupError;
use crate::state::{Ports, Shared};
use crate::stream::Stream;
use ratelimitd_engine::AnyClock;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long shutdown waits for connections to finish their in-flight replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The listeners, bound before anything is loaded.
struct Listeners {
    resp: TcpListener,
    memcached: Option<TcpListener>,
    http: Option<TcpListener>,
}

fn port_of(l: &TcpListener) -> Option<u16> {
    l.local_addr().ok().map(|a| a.port())
}

/// A daemon whose listeners are bound and whose persisted state is loaded: ready to serve.
pub struct Prepared {
    pub shared: Arc<Shared>,
    listeners: Listeners,
}

/// Bind the listeners, open the data directory, build the shared state on `clock`, and load
/// the config file's limits, the limits log and the snapshot.
pub async fn prepare(settings: Settings, clock: AnyClock) -> Result<Prepared, StartupError> {
    let config = settings.config;
    let addr = SocketAddr::new(config.bind, config.port);
    let resp = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    let memcached = match config.memcached_port {
        Some(port) => {
            let addr = SocketAddr::new(config.bind, port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::MemcachedBind { addr, source })?,
            )
        }
        None => None,
    };
    let (persist, loaded) = Persist::open(&config.dir)?;
    persist
        .save_interval
        .store(config.save_interval, Ordering::Relaxed);
    let http = match config.http_port {
        Some(port) => {
            let addr = SocketAddr::new(config.http_bind.unwrap_or(config.bind), port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::HttpBind { addr, source })?,
            )
        }
        None => None,
    };
    let listeners = Listeners {
        resp,
        memcached,
        http,
    };
    let ports = Ports {
        resp: port_of(&listeners.resp).unwrap_or(config.port),
        memcached: listeners.memcached.as_ref().and_then(port_of),
        http: listeners.http.as_ref().and_then(port_of),
    };
    let shared = Arc::new(Shared::new(
        config,
        ports,
        persist,
        clock,
        &COMMANDS.names(),
        COMMANDS.catalog(),
    ));
    crate::startup::load(&shared, &settings.preload, loaded)?;
    log_listeners(&shared.config, ports);
    warn_if_exposed(&shared);
    shared.ready.store(true, Ordering::Relaxed);
    Ok(Prepared { shared, listeners })
}

fn log_listeners(config: &Config, ports: Ports) {
    if let Some(p) = ports.memcached {
        tracing::info!("memcached listener on {}:{p}", config.bind);
    }
    if let Some(p) = ports.http {
        let bind = config.http_bind.unwrap_or(config.bind);
        tracing::info!("HTTP listening on {bind}:{p}");
    }
}

/// Say at start what a listener on a non-loopback address with no password means.
fn warn_if_exposed(shared: &Shared) {
    let c = &shared.config;
    let exposed = !c.bind.is_loopback() || c.http_bind.is_some_and(|b| !b.is_loopback());
    if !exposed || !shared.users.default_open() {
        return;
    }
    if shared.protected_mode.load(Ordering::Relaxed) {
        tracing::warn!(
            "listening on a non-loopback address with no password for the default user: protected mode refuses clients from other hosts; set --requirepass (or ACL users) to serve them"
        );
    } else {
        tracing::warn!(
            "listening on a non-loopback address with no password and protected mode off: anyone who reaches a port may check, change limits, flush and reconfigure"
        );
    }
}

/// A client that is turned away: what its listener tells it.
#[derive(Clone, Copy)]
enum Protocol {
    Resp,
    Memcached,
}

impl Protocol {
    fn refusal(self) -> &'static [u8] {
        match self {
            Protocol::Resp => b"-ERR max number of clients reached\r\n",
            Protocol::Memcached => b"SERVER_ERROR max number of clients reached\r\n",
        }
    }

    /// Protected mode's refusal, in the protocol's error line.
    fn denied(self) -> Vec<u8> {
        match self {
            Protocol::Resp => format!("-{}\r\n", crate::state::DENIED).into_bytes(),
            Protocol::Memcached => {
                format!("SERVER_ERROR {}\r\n", crate::state::DENIED).into_bytes()
            }
        }
    }
}

impl Prepared {
    /// The ports actually bound.
    pub fn ports(&self) -> Ports {
        self.shared.ports
    }

    /// Serve until `shutdown` completes, then shut down cleanly.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let Prepared { shared, listeners } = self;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        crate::tasks::spawn_all(&shared, &shutdown_rx);
        if let Some(l) = listeners.http {
            tokio::spawn(crate::http::serve(l, shared.clone(), shutdown_rx.clone()));
        }
        if let Some(l) = listeners.memcached {
            let state = Arc::new(McState::default());
            tokio::spawn(crate::memcache::flush_timer(
                shared.clone(),
                state.clone(),
                shutdown_rx.clone(),
            ));
            let counted = state.clone();
            let stop = shutdown_rx.clone();
            tokio::spawn(accept_loop(
                l,
                shared.clone(),
                Protocol::Memcached,
                shutdown_rx.clone(),
                move |refused| {
                    McStats::bump(&counted.stats.total_connections);
                    if refused {
                        McStats::bump(&counted.stats.rejected_connections);
                    }
                },
                move |socket, peer, shared| {
                    let state = state.clone();
                    tokio::spawn(serve_conn(socket, peer, shared, state, stop.clone()));
                },
            ));
        }
        let stop = shutdown_rx.clone();
        let resp = accept_loop(
            listeners.resp,
            shared.clone(),
            Protocol::Resp,
            shutdown_rx.clone(),
            |_| {},
            move |socket, peer, shared| {
                let conn = Connection::new(socket, peer, shared, stop.clone());
                tokio::spawn(conn.run());
            },
        );
        let resp = tokio::spawn(resp);
        shutdown.await;

        tracing::info!("shutting down: no new connections; finishing in-flight replies");
        shared.ready.store(false, Ordering::Relaxed);
        let _ = shutdown_tx.send(true);
        let _ = resp.await;
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !shared.clients.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = shared.clients.len();
        if left > 0 {
            tracing::info!("{left} connection(s) still open after the grace period; closing");
        }
        crate::saving::on_shutdown(&shared).await;
        tracing::info!("bye");
        Ok(())
    }
}

/// Accept connections until shutdown, for RESP and memcached alike: count them (`accepted` is
/// told whether each was turned away), turn them away at `--maxclients` with the protocol's own
/// error line, and hand the others to `serve`.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    protocol: Protocol,
    mut shutdown: watch::Receiver<bool>,
    accepted: impl Fn(bool),
    serve: impl Fn(Stream, SocketAddr, Arc<Shared>),
) {
    loop {
        let (mut socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::info!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let full = shared.clients.len() >= shared.config.maxclients;
        shared.counters.connection(full);
        accepted(full);
        if full {
            tokio::spawn(async move {
                let _ = socket.write_all(protocol.refusal()).await;
            });
            continue;
        }
        if shared.refuses(peer) {
            tokio::spawn(async move {
                let _ = socket.write_all(&protocol.denied()).await;
            });
            continue;
        }
        let _ = socket.set_nodelay(true);
        serve(Stream::Plain(socket), peer, shared.clone());
    }
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

    /// The first SIGINT or SIGTERM.
    pub async fn recv(mut self) {
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
