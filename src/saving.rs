//! Snapshots of the rate state: taking one and writing it durably (SAVE, BGSAVE, the periodic
//! timer, shutdown), and restoring it at start. The engine produces and checks the bytes;
//! src/persist.rs writes them (temp file, fsync, rename) and reads them back.

use crate::persist::PersistError;
use crate::state::Shared;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load `state.snap` into the engine. Never fatal: a missing snapshot is normal, and a corrupt
/// or unreadable one is reported (log, INFO, /metrics), moved aside for inspection, and the
/// daemon starts with empty rate state.
pub fn restore(shared: &Shared) {
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
/// only means the save competes with the workers at their priority.
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

/// The clean-exit snapshot (SIGINT/SIGTERM), after the connections have finished.
pub async fn on_shutdown(shared: &Arc<Shared>) {
    // Wait for a background save in progress rather than racing it for the temp file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared.persist.try_begin_bgsave() {
        if Instant::now() > deadline {
            tracing::info!("a background save is still running; skipping the shutdown snapshot");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = shared.clone();
    let result = tokio::task::spawn_blocking(move || save(&s)).await;
    shared.persist.end_bgsave();
    match result {
        Ok(Ok(n)) => tracing::info!("snapshot saved on shutdown ({n} bytes)"),
        Ok(Err(e)) => tracing::info!("snapshot on shutdown failed: {e}"),
        Err(e) => tracing::info!("snapshot on shutdown failed: {e}"),
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
