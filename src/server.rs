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
//!   for both, plain
//!   or TLS)
//!  HTTP accept ──────► hyper, one task per connection (src/http/)
//!  background tasks: expiry, snapshots, throttling summary, replication (src/tasks.rs)
//! ```
//!
//! A TLS listener's accept loop only accepts: the handshake runs on the connection's own task
//! (src/tls.rs), so a client that stalls mid-handshake never holds up the next accept.
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
use crate::tls::Tls;
use ratelimitd_engine::AnyClock;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long shutdown waits for connections to finish their in-flight replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The listeners, bound before anything is loaded.
struct Listeners {
    /// None with `--plain-port no`.
    resp: Option<TcpListener>,
    tls: Option<TcpListener>,
    memcached: Option<TcpListener>,
    memcached_tls: Option<TcpListener>,
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
    let plain = config.plain_port == "yes";
    if !plain && config.tls_port.is_none() {
        return Err(StartupError::NoRespListener);
    }
    if config.http_tls == "yes" && config.http_port.is_none() {
        return Err(StartupError::HttpTlsWithoutPort);
    }
    // The certificates before any port: a TLS mistake is reported before anything is bound.
    let tls = Tls::new(&config)?;
    let resp = match plain {
        true => {
            let addr = SocketAddr::new(config.bind, config.port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?,
            )
        }
        false => None,
    };
    let tls_listener = match config.tls_port {
        Some(port) => {
            let addr = SocketAddr::new(config.bind, port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::TlsBind { addr, source })?,
            )
        }
        None => None,
    };
    let memcached_tls = match config.memcached_tls_port {
        Some(port) => {
            let addr = SocketAddr::new(config.bind, port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::MemcachedTlsBind { addr, source })?,
            )
        }
        None => None,
    };
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
        tls: tls_listener,
        memcached,
        memcached_tls,
        http,
    };
    let ports = Ports {
        resp: match &listeners.resp {
            Some(l) => port_of(l).unwrap_or(config.port),
            None => 0,
        },
        memcached: listeners.memcached.as_ref().and_then(port_of),
        http: listeners.http.as_ref().and_then(port_of),
        tls: listeners.tls.as_ref().and_then(port_of),
        memcached_tls: listeners.memcached_tls.as_ref().and_then(port_of),
    };
    let shared = Arc::new(Shared::new(
        config,
        ports,
        persist,
        clock,
        &COMMANDS.names(),
        COMMANDS.catalog(),
        tls,
    ));
    crate::startup::load(&shared, &settings.preload, loaded)?;
    log_listeners(&shared.config, ports);
    warn_if_exposed(&shared);
    shared.ready.store(true, Ordering::Relaxed);
    Ok(Prepared { shared, listeners })
}

fn log_listeners(config: &Config, ports: Ports) {
    if let Some(p) = ports.tls {
        tracing::info!("TLS listening on {}:{p}", config.bind);
    }
    if let Some(p) = ports.memcached {
        tracing::info!("memcached listener on {}:{p}", config.bind);
    }
    if let Some(p) = ports.memcached_tls {
        tracing::info!("memcached TLS listener on {}:{p}", config.bind);
    }
    if let Some(p) = ports.http {
        let bind = config.http_bind.unwrap_or(config.bind);
        if config.http_tls == "yes" {
            tracing::info!("HTTPS listening on {bind}:{p}");
        } else {
            tracing::info!("HTTP listening on {bind}:{p}");
        }
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
        if listeners.memcached.is_some() || listeners.memcached_tls.is_some() {
            // One memcached state (stats, the delayed flush) for the plain and the TLS port.
            let state = Arc::new(McState::default());
            tokio::spawn(crate::memcache::flush_timer(
                shared.clone(),
                state.clone(),
                shutdown_rx.clone(),
            ));
            for (l, tls) in [
                (listeners.memcached, false),
                (listeners.memcached_tls, true),
            ] {
                let Some(l) = l else { continue };
                let counted = state.clone();
                let state = state.clone();
                let stop = shutdown_rx.clone();
                tokio::spawn(accept_loop(
                    l,
                    shared.clone(),
                    Protocol::Memcached,
                    tls,
                    shutdown_rx.clone(),
                    move |refused| {
                        McStats::bump(&counted.stats.total_connections);
                        if refused {
                            McStats::bump(&counted.stats.rejected_connections);
                        }
                    },
                    move |socket, peer, shared| {
                        serve_conn(socket, peer, shared, state.clone(), stop.clone())
                    },
                ));
            }
        }
        let mut resp = Vec::new();
        for (l, tls) in [(listeners.resp, false), (listeners.tls, true)] {
            let Some(l) = l else { continue };
            let stop = shutdown_rx.clone();
            resp.push(tokio::spawn(accept_loop(
                l,
                shared.clone(),
                Protocol::Resp,
                tls,
                shutdown_rx.clone(),
                |_| {},
                move |socket, peer, shared| {
                    Connection::new(socket, peer, shared, stop.clone()).run()
                },
            )));
        }
        shutdown.await;

        tracing::info!("shutting down: no new connections; finishing in-flight replies");
        shared.ready.store(false, Ordering::Relaxed);
        let _ = shutdown_tx.send(true);
        for resp in resp {
            let _ = resp.await;
        }
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
/// error line, and run the others' `serve` on a task of their own.
///
/// On a TLS listener (`tls`) the handshake runs on that task, first, bounded by the handshake
/// timeout, and counts toward `--maxclients` while it runs. A client turned away at
/// `--maxclients` is closed without a handshake: a handshake per refusal would let a flood of
/// connections cost the daemon CPU and memory past its bound. One that protected mode refuses
/// gets its `DENIED` line over TLS, as it would in plain text.
async fn accept_loop<F>(
    listener: TcpListener,
    shared: Arc<Shared>,
    protocol: Protocol,
    tls: bool,
    mut shutdown: watch::Receiver<bool>,
    accepted: impl Fn(bool),
    serve: impl Fn(Stream, SocketAddr, Arc<Shared>) -> F + Send + Sync + 'static,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
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
        let full = shared.clients.len() + shared.tls.handshaking() >= shared.config.maxclients;
        shared.counters.connection(full);
        accepted(full);
        if tls {
            if !full {
                let _ = socket.set_nodelay(true);
                // Counted from here, before the task runs, so that a burst of accepts sees it.
                let pending = shared.tls.pending();
                let serve = serve.clone();
                tokio::spawn(serve_tls(
                    socket,
                    peer,
                    shared.clone(),
                    protocol,
                    pending,
                    serve,
                ));
            }
            continue;
        }
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
        tokio::spawn(serve(Stream::Plain(socket), peer, shared.clone()));
    }
}

/// A TLS connection's task: the handshake (counted toward `--maxclients` meanwhile), protected
/// mode, then `serve`.
async fn serve_tls<F: Future<Output = ()>>(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    protocol: Protocol,
    pending: crate::tls::Pending,
    serve: Arc<impl Fn(Stream, SocketAddr, Arc<Shared>) -> F>,
) {
    let Some(mut stream) = shared.tls_accept(socket, peer).await else {
        return;
    };
    if shared.refuses(peer) {
        drop(pending);
        let _ = stream.write_all(&protocol.denied()).await;
        let _ = stream.shutdown().await;
        return;
    }
    // The connection registers as a client when made (RESP) or first run (memcached, right
    // below); only then does the handshake stop counting.
    let conn = serve(stream, peer, shared.clone());
    drop(pending);
    conn.await;
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
