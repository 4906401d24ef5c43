//! What happens between parsing the configuration and serving, and at shutdown: open the data
//! directory, bind the HTTP listener, apply the config file's limits, replay the limits log,
//! restore the rate-state snapshot; then the background tasks (HTTP, periodic snapshots, the
//! throttling log summary) and the final snapshot on a clean exit.
//!
//! Order matters and is deliberate:
//! 1. config-file limits first, then the log on top: the log holds changes someone made at
//!    runtime and was told were saved, which are newer than the file's baseline (a restart must
//!    not silently undo an acknowledged change). To make a file edit win over a runtime
//!    override, `RL.LIMIT DEL` (or SET) it at runtime — also durable.
//! 2. the snapshot after the limits, because restoring rate state needs nothing from them but a
//!    failure to restore must leave limits intact: rate state is then empty (every client gets a
//!    fresh allowance once), which is logged loudly, rather than refusing to start.
//! 3. "ready to accept connections" is logged only after all of it (tests and operators wait
//!    for that line).

use crate::persist::{Persist, PersistError};
use crate::server::{self, Shared};
use crate::settings::Settings;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("config file {label}: {message}")]
    Preload { label: String, message: String },
    #[error("--{0}")]
    Bound(String),
}

/// The daemon's one shared state, for the few places that must hand an owned reference to a
/// background task (BGSAVE) but are called with a borrowed one.
static SHARED: OnceLock<Weak<Shared>> = OnceLock::new();

/// The shared state, while the daemon runs.
pub fn shared() -> Option<Arc<Shared>> {
    SHARED.get().and_then(Weak::upgrade)
}

/// Build the shared state and load everything persisted. `port` is the RESP port bound.
pub fn prepare(settings: Settings, port: u16) -> Result<Arc<Shared>, StartupError> {
    let config = settings.config;
    let (persist, loaded) = Persist::open(&config.dir)?;
    persist
        .save_interval
        .store(config.save_interval, Ordering::Relaxed);

    let http = match config.http_port {
        Some(http_port) => {
            let addr = SocketAddr::new(config.http_bind.unwrap_or(config.bind), http_port);
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .map_err(|source| StartupError::HttpBind { addr, source })?;
            Some(listener)
        }
        None => None,
    };

    let shared = Arc::new(Shared::new(config, port, persist));
    if let Some(bytes) = shared.config.maxmemory.map(|m| m.0) {
        crate::settings::check_maxmemory(&shared.engine, bytes).map_err(StartupError::Bound)?;
    }
    let _ = SHARED.set(Arc::downgrade(&shared));
    if let Some(port) = http
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
    {
        let _ = shared.http_bound.set(port);
    }
    if let Ok(mut slot) = shared.http.lock() {
        *slot = http;
    }

    for (label, args) in &settings.preload {
        crate::cmd::rl::replay(&shared, &crate::cmd::slices(args)).map_err(|e| {
            StartupError::Preload {
                label: label.clone(),
                message: e.to_string(),
            }
        })?;
    }
    if !settings.preload.is_empty() {
        tracing::info!(
            "config file: {} limit(s) and tier(s) applied",
            settings.preload.len()
        );
    }

    shared.persist.begin_replay();
    let mut skipped = 0;
    for args in &loaded.records {
        if let Err(e) = crate::cmd::rl::replay(&shared, &crate::cmd::slices(args)) {
            // Valid when written (it was validated then); refused now, e.g. after a downgrade.
            // Skipping one limit is better than refusing to start.
            skipped += 1;
            tracing::warn!("limits log: record skipped: {e}");
        }
    }
    shared.persist.go_live();
    if skipped > 0 {
        tracing::warn!(
            "{}; {skipped} record(s) could not be applied",
            loaded.report
        );
    } else if loaded.report.contains("dropped") {
        tracing::warn!("{}", loaded.report);
    } else {
        tracing::info!("{}", loaded.report);
    }

    restore_snapshot(&shared);
    shared.persist.init_last_save();
    if let Some(p) = shared.http_port() {
        let bind = shared.config.http_bind.unwrap_or(shared.config.bind);
        tracing::info!("HTTP listening on {bind}:{p}");
    }
    shared.ready.store(true, Ordering::Relaxed);
    Ok(shared)
}

/// Load `state.snap` into the engine. Never fatal: a missing snapshot is normal, and a corrupt
/// or unreadable one is reported (log, INFO, /metrics), moved aside for inspection, and the
/// daemon starts with empty rate state.
fn restore_snapshot(shared: &Shared) {
    let bytes = match shared.persist.read_snapshot() {
        Ok(None) => {
            shared.persist.set_snapshot_load(true, "no snapshot".into());
            return;
        }
        Ok(Some(b)) => b,
        Err(e) => {
            let what = format!(
                "snapshot unreadable: {e}; starting with empty rate state (limits are intact)"
            );
            tracing::error!("{what}");
            shared.persist.set_snapshot_load(false, what);
            return;
        }
    };
    match shared.engine.restore_state(&bytes) {
        Ok(n) => {
            let what = format!("snapshot loaded: {n} live entries ({} bytes)", bytes.len());
            tracing::info!("{what}");
            shared.persist.set_snapshot_load(true, what);
        }
        Err(e) => {
            let aside = shared.persist.move_snapshot_aside();
            let what = format!(
                "snapshot rejected: {e}; starting with empty rate state (limits are intact){aside}"
            );
            tracing::error!("{what}");
            shared.persist.set_snapshot_load(false, what);
        }
    }
}

/// Take a snapshot of the rate state and write it durably (SAVE, BGSAVE, the timer, shutdown).
/// Blocking: call from a blocking context.
pub fn save(shared: &Shared) -> Result<usize, PersistError> {
    let started = Instant::now();
    let bytes = shared.engine.snapshot_state();
    shared.persist.write_snapshot(&bytes)?;
    tracing::debug!(
        "snapshot saved: {} bytes in {:?}",
        bytes.len(),
        started.elapsed()
    );
    Ok(bytes.len())
}

/// Nice value of the background-save thread: the lowest priority short of `SCHED_IDLE`.
const SAVE_NICE: i32 = 19;

/// Why a background save did not start.
#[derive(Debug)]
pub enum BgsaveRefused {
    /// One is running already.
    InProgress,
    /// No thread could be started for it (the system is out of threads or memory).
    NoThread(std::io::Error),
}

/// Ends the BGSAVE in progress when dropped: after the save, when the save panics, and when
/// its thread never starts, so that a failed save cannot leave every later one refused.
struct BgsaveRunning(Arc<Shared>);

impl Drop for BgsaveRunning {
    fn drop(&mut self) {
        self.0.persist.end_bgsave();
    }
}

/// Start a background save (BGSAVE, the timed saves).
///
/// It runs on a thread of its own at nice [`SAVE_NICE`]. Why: serializing a million keys is
/// ~100–200 ms of CPU, and where the save shares a core with a worker (one core, or a pinned
/// process) the scheduler would otherwise split the core evenly and let a waking worker wait
/// behind the save's time slice; at nice 19 the worker preempts it at once
/// (`benches/bgsave.sh`, docs/PERFORMANCE.md). The save still gets every idle cycle, and
/// ~1.5 % of a core that the workers keep busy. A replica's full sync is not run this way: the
/// replica waits for it under a 10 s handshake timeout, which a starved sync could miss.
pub fn bgsave(shared: &Arc<Shared>) -> Result<(), BgsaveRefused> {
    if !shared.persist.try_begin_bgsave() {
        return Err(BgsaveRefused::InProgress);
    }
    let running = BgsaveRunning(shared.clone());
    std::thread::Builder::new()
        .name("ratelimitd-save".into())
        .spawn(move || {
            lower_this_thread_priority(SAVE_NICE);
            let _ = save(&running.0);
            drop(running);
        })
        .map(drop)
        .map_err(|e| {
            tracing::error!("background save not started: {e}");
            BgsaveRefused::NoThread(e)
        })
}

/// Set the calling thread's nice value (on Linux nice is per thread). Best effort: a failure
/// only means the save competes with the workers at their priority, as it used to.
fn lower_this_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority with who = 0 changes only the calling thread's nice value.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if rc != 0 {
            tracing::debug!(
                "background thread priority unchanged: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Start the HTTP listener, the periodic snapshot and the throttling summary; each stops when
/// `shutdown` fires.
pub fn spawn_background(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) {
    let listener = shared.http.lock().ok().and_then(|mut l| l.take());
    if let Some(listener) = listener {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => {
                tokio::spawn(crate::http::serve(l, shared.clone(), shutdown.clone()));
            }
            Err(e) => tracing::error!("HTTP listener unusable: {e}"),
        }
    }
    tokio::spawn(crate::logging::throttle_summary(
        shared.clone(),
        shutdown.clone(),
    ));
    let timer_shared = shared.clone();
    let mut timer_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = timer_shutdown.changed() => return,
            }
            let every = timer_shared.persist.save_interval.load(Ordering::Relaxed);
            if every == 0 || last.elapsed() < Duration::from_secs(every) {
                continue;
            }
            last = Instant::now();
            // Nothing admitted since the last save: the snapshot on disk is still the truth
            // (state is absolute times, which decay by themselves).
            // Refused: one is running (the next tick tries again), or no thread (logged).
            if timer_shared.persist.changes.load(Ordering::Relaxed) > 0 {
                let _ = bgsave(&timer_shared);
            }
        }
    });
}

/// The clean-exit snapshot (SIGINT/SIGTERM), after the connections have finished.
pub async fn on_shutdown(shared: &Arc<Shared>) {
    // Wait for a background save in progress rather than racing it for the temp file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared.persist.try_begin_bgsave() {
        if Instant::now() > deadline {
            server::log("a background save is still running; skipping the shutdown snapshot");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = shared.clone();
    let result = tokio::task::spawn_blocking(move || save(&s)).await;
    shared.persist.end_bgsave();
    match result {
        Ok(Ok(n)) => server::log(&format!("snapshot saved on shutdown ({n} bytes)")),
        Ok(Err(e)) => server::log(&format!("snapshot on shutdown failed: {e}")),
        Err(e) => server::log(&format!("snapshot on shutdown failed: {e}")),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: getpriority only reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn the_save_priority_applies_to_its_own_thread_only() {
        let before = nice_of_this_thread();
        let saver = std::thread::spawn(|| {
            lower_this_thread_priority(SAVE_NICE);
            nice_of_this_thread()
        })
        .join()
        .expect("thread ran");
        assert_eq!(saver, SAVE_NICE);
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the caller's priority is unchanged"
        );
    }
}
