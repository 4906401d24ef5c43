//! Structured logs with `tracing`: set-up, and the runtime log level (`--log-level`,
//! `CONFIG SET loglevel`).

use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The log levels `--log-level` and `CONFIG SET loglevel` accept, most verbose first.
/// Redis's own names (`verbose`, `notice`, `warning`, `nothing`) are accepted as aliases so
/// that tools written for Redis can set them.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Why a log level was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid log level '{0}': expected one of trace, debug, info, warn, error, off")]
    InvalidLevel(String),
    #[error("logging is not initialised")]
    NotInitialised,
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

struct Handle {
    reload: reload::Handle<EnvFilter, Registry>,
    level: std::sync::Mutex<&'static str>,
}

static HANDLE: OnceLock<Handle> = OnceLock::new();

/// Map a level name (ours or Redis's) to the canonical one.
pub fn canonical_level(name: &str) -> Result<&'static str, LogError> {
    let lower = name.trim().to_ascii_lowercase();
    let level = match lower.as_str() {
        "verbose" => "debug",
        "notice" => "info",
        "warning" => "warn",
        "nothing" | "none" => "off",
        other => other,
    };
    LEVELS
        .iter()
        .find(|l| **l == level)
        .copied()
        .ok_or(LogError::InvalidLevel(name.chars().take(64).collect()))
}

/// Install the global subscriber: human-readable lines on stderr (the daemon's only output),
/// without colours, filtered at `level`. Calling it twice is harmless (the second call only
/// changes the level).
pub fn init(level: &str) -> Result<(), LogError> {
    let level = canonical_level(level)?;
    if HANDLE.get().is_some() {
        return set_level(level);
    }
    let (filter, reload) = reload::Layer::new(EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // A second global subscriber can only come from a test harness; ignore it.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    let _ = HANDLE.set(Handle {
        reload,
        level: std::sync::Mutex::new(level),
    });
    Ok(())
}

/// Change the level at runtime (CONFIG SET loglevel).
pub fn set_level(level: &str) -> Result<(), LogError> {
    let level = canonical_level(level)?;
    let handle = HANDLE.get().ok_or(LogError::NotInitialised)?;
    handle
        .reload
        .reload(EnvFilter::new(level))
        .map_err(|e| LogError::Reload(e.to_string()))?;
    if let Ok(mut l) = handle.level.lock() {
        *l = level;
    }
    Ok(())
}

/// The current level's canonical name (CONFIG GET loglevel).
pub fn current_level() -> &'static str {
    HANDLE
        .get()
        .and_then(|h| h.level.lock().ok().map(|l| *l))
        .unwrap_or("info")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_accept_ours_and_redis_names_and_reject_others() {
        assert_eq!(canonical_level("INFO").ok(), Some("info"));
        assert_eq!(canonical_level("warning").ok(), Some("warn"));
        assert_eq!(canonical_level("verbose").ok(), Some("debug"));
        assert_eq!(canonical_level("nothing").ok(), Some("off"));
        assert!(canonical_level("loud").is_err());
    }
}
