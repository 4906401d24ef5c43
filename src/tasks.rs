//! The daemon's background tasks, each stopped by the shutdown channel: the timing wheels'
//! expiry step, the periodic snapshot, the once-a-second throttling summary, the sweep of idle
//! and unsigned connections, and replication (the primary's pump, the replica's link).

use crate::state::Shared;
use ratelimitd_engine::ScopeKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the timing wheels advance, and how many due entries one step may look at, over
/// all shards. A step is then at most ~2048 x 50 ns = 100 us of work on a worker thread, so no
/// request waits behind a mass expiry, and the wheels can still drop 2M entries a second.
const PURGE_INTERVAL: Duration = Duration::from_millis(1);
const PURGE_BUDGET: usize = 2048;

/// How often the throttling summary may be logged.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// How often connections are looked over for the idle and sign-in timeouts (Redis's
/// clientsCron looks at each client about once a second too).
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Start every background task.
pub fn spawn_all(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) {
    tokio::spawn(expire(shared.clone(), shutdown.clone()));
    tokio::spawn(save_timer(shared.clone(), shutdown.clone()));
    tokio::spawn(throttle_summary(shared.clone(), shutdown.clone()));
    tokio::spawn(sweep_clients(shared.clone(), shutdown.clone()));
    tokio::spawn(crate::primary::pump(shared.clone(), shutdown.clone()));
    tokio::spawn(crate::replica::run(shared.clone(), shutdown.clone()));
}

/// Advance the timing wheels: keys that decayed back to a full allowance are dropped.
async fn expire(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    // Behind schedule (a busy worker), skip ahead rather than fire a burst of steps.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { shared.engine.expire_step(PURGE_BUDGET); }
            _ = shutdown.changed() => return,
        }
    }
}

/// A background snapshot every `--save-interval` seconds, when something changed since the
/// last one: state is absolute times, which decay by themselves, so an unchanged state on
/// disk is still the truth.
async fn save_timer(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let every = shared.persist.save_interval.load(Ordering::Relaxed);
        if every == 0 || last.elapsed() < Duration::from_secs(every) {
            continue;
        }
        last = Instant::now();
        // Refused: one is running (the next tick tries again), or no thread (logged).
        if shared.persist.changes.load(Ordering::Relaxed) > 0 {
            let _ = crate::saving::bgsave(&shared);
        }
    }
}

/// Log, at most once per [`SUMMARY_INTERVAL`], how many checks were denied since the last line
/// and by which scope kinds (largest first). Quiet seconds log nothing.
///
/// Why a summary and not a line per denied check: under an attack the daemon may deny hundreds
/// of thousands of checks a second, and a log line each would cost more than the checks and
/// drown everything else. One line per second with the count and the scope kinds that denied
/// says the same thing at a bounded cost.
async fn throttle_summary(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = shared.counters.denied_by_scope();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = shared.counters.denied_by_scope();
        if let Some(line) = summary(&last, &now) {
            tracing::info!("{line}");
        }
        last = now;
    }
}

/// Close the connections that sat idle longer than `timeout`, and those that did not sign in
/// within `auth-timeout` while the default user needs a password. Subscribers, replicas and
/// clients blocked in WAIT are exempt from the idle timeout, as in Redis: waiting is what
/// they do.
async fn sweep_clients(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let bounds = &shared.bounds;
        let idle = Duration::from_secs(bounds.timeout_secs.load(Ordering::Relaxed));
        let sign_in = Duration::from_secs(bounds.auth_timeout_secs.load(Ordering::Relaxed));
        let needs_sign_in = !sign_in.is_zero() && !shared.users.default_open();
        if idle.is_zero() && !needs_sign_in {
            continue;
        }
        for client in shared.clients.snapshot() {
            if client.killed.load(Ordering::Relaxed) {
                continue;
            }
            if needs_sign_in
                && !client.signed_in.load(Ordering::Relaxed)
                && client.created.elapsed() > sign_in
            {
                tracing::info!(
                    "client {} ({}) did not sign in within {}s; closing it",
                    client.id,
                    client.addr,
                    sign_in.as_secs()
                );
                bounds
                    .disconnected
                    .auth_timeout
                    .fetch_add(1, Ordering::Relaxed);
                client.kill();
            } else if !idle.is_zero()
                && client.kind() == "normal"
                && !client.blocked.load(Ordering::Relaxed)
                && client.idle() > idle
            {
                tracing::debug!(
                    "client {} ({}) idle for {}s; closing it",
                    client.id,
                    client.addr,
                    client.idle().as_secs()
                );
                bounds.disconnected.idle.fetch_add(1, Ordering::Relaxed);
                client.kill();
            }
        }
    }
}

/// The summary line for the denials between two readings, or None if there were none.
fn summary(before: &[(ScopeKind, u64)], now: &[(ScopeKind, u64)]) -> Option<String> {
    let mut delta: Vec<(ScopeKind, u64)> = now
        .iter()
        .zip(before)
        .map(|((kind, n), (_, b))| (*kind, n.saturating_sub(*b)))
        .filter(|(_, d)| *d > 0)
        .collect();
    if delta.is_empty() {
        return None;
    }
    delta.sort_by_key(|d| std::cmp::Reverse(d.1));
    let total: u64 = delta.iter().map(|(_, d)| d).sum();
    let top = delta
        .iter()
        .map(|(k, d)| format!("{}={d}", k.name()))
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!(
        "{total} checks denied in the last second, by scope kind: {top}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_only_scope_kinds_largest_first() {
        let before = [(ScopeKind::Endpoint, 1), (ScopeKind::Default, 0)];
        let now = [(ScopeKind::Endpoint, 3), (ScopeKind::Default, 5)];
        assert_eq!(
            summary(&before, &now).as_deref(),
            Some("7 checks denied in the last second, by scope kind: default=5 endpoint=2")
        );
        assert_eq!(summary(&now, &now), None);
    }
}
