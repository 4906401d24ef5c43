//! # ratelimitd
//!
//! The daemon: flags ([`config`]), the listener and shutdown ([`server`]), one task per client
//! connection ([`connection`]), command dispatch with one file per command family ([`cmd`]),
//! counters for INFO ([`stats`]), pub/sub for Redis Sentinel ([`pubsub`]), and the memcached
//! listener ([`memcache`]). Protocol bytes are the `ratelimitd-protocol` crate's business and
//! rate-limit state the `ratelimitd-engine` crate's; this crate wires them to sockets. docs/DESIGN.md has the whole map.

mod cmd;
mod config;
mod connection;
mod http;
mod logging;
mod memcache;
mod metrics;
mod persist;
mod primary;
mod pubsub;
mod replica;
mod rewrite;
mod server;
mod settings;
mod startup;
mod stats;

pub use config::Config;

fn main() -> std::process::ExitCode {
    let settings = match settings::load() {
        Ok(s) => s,
        // --help and --version arrive here too; clap prints them and picks the exit code.
        Err(settings::LoadError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("ratelimitd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = logging::init(&settings.config.log_level) {
        eprintln!("ratelimitd: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let config = settings.config.clone();
    // One worker: a current-thread runtime, which skips the work-stealing scheduler's
    // bookkeeping (15-20 % more RL.CHECK/s at redis-benchmark -P 16 on one core, measured with
    // benches/load.sh's setup). Blocking work (fsync, snapshots) then runs in place or on
    // tokio's blocking pool, see `persist::in_place`.
    let mut runtime = match config.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().thread_name("ratelimitd-worker");
    if let Some(threads) = config.threads.filter(|&t| t > 1) {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            server::log(&format!("cannot start the runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let addr = std::net::SocketAddr::new(config.bind, config.port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                server::log(&format!("cannot listen on {addr}: {e}"));
                return std::process::ExitCode::FAILURE;
            }
        };
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(config.port);
        let memcached = match memcache::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                server::log(&format!("cannot listen for memcached: {e}"));
                return std::process::ExitCode::FAILURE;
            }
        };
        let shared = match startup::prepare(settings, port) {
            Ok(shared) => shared,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        if let Some(l) = memcached {
            if let Ok(addr) = l.local_addr() {
                server::log(&format!("memcached listener on {addr}"));
            }
            if let Ok(mut slot) = shared.memcache.listener.lock() {
                *slot = Some(l);
            }
        }
        let signals = server::ShutdownSignals::register();
        server::log(&format!(
            "ratelimitd {} ready to accept connections on {}:{port}",
            env!("CARGO_PKG_VERSION"),
            config.bind
        ));
        match server::run(listener, shared, signals).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                server::log(&format!("server error: {e}"));
                std::process::ExitCode::FAILURE
            }
        }
    })
}
