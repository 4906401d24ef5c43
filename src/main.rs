//! The `ratelimitd` binary: flags, logging and the runtime, then the library's server.

use ratelimitd::server::{self, ShutdownSignals};
use ratelimitd::{logging, settings};
use ratelimitd_engine::SystemClock;
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = match settings::load() {
        Ok(s) => s,
        // --help and --version arrive here too; clap prints them and picks the exit code.
        Err(settings::LoadError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("ratelimitd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = logging::init(&settings.config.log_level) {
        eprintln!("ratelimitd: {e}");
        return ExitCode::FAILURE;
    }
    // One worker: a current-thread runtime, which skips the work-stealing scheduler's
    // bookkeeping (15-20 % more RL.CHECK/s at redis-benchmark -P 16 on one core, measured with
    // benches/load.sh's setup). Blocking work (fsync, snapshots) then runs in place or on
    // tokio's blocking pool, see `persist::in_place`.
    let threads = settings.config.threads;
    let mut runtime = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().thread_name("ratelimitd-worker");
    if let Some(threads) = threads.filter(|&t| t > 1) {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let bind = settings.config.bind;
        let daemon = match server::prepare(settings, SystemClock::new().into()).await {
            Ok(daemon) => daemon,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let signals = ShutdownSignals::register();
        let ports = daemon.ports();
        // The plain RESP port, or with --plain-port no the TLS one, which then says so.
        let (port, only_tls) = match ports.tls {
            Some(tls) if ports.resp == 0 => (tls, " (TLS only)"),
            _ => (ports.resp, ""),
        };
        tracing::info!(
            "ratelimitd {} ready to accept connections on {bind}:{port}{only_tls}",
            env!("CARGO_PKG_VERSION"),
        );
        match daemon.serve(signals.recv()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
