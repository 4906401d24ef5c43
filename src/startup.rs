//! What happens between binding the listeners and serving: apply the config file's limits,
//! replay the limits log, restore the rate-state snapshot.
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

use crate::cmd::COMMANDS;
use crate::persist::{Loaded, PersistError};
use crate::state::Shared;
use bytes::Bytes;
use std::net::SocketAddr;

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for memcached on {addr}: {source}")]
    MemcachedBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for TLS on {addr}: {source}")]
    TlsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for memcached over TLS on {addr}: {source}")]
    MemcachedTlsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("--plain-port no needs --tls-port: RESP would have no listener")]
    NoRespListener,
    #[error("--http-tls yes needs --http-port")]
    HttpTlsWithoutPort,
    /// A `[[limit]]` or `[[tier]]` table of the config file the live command refuses.
    #[error("config file {file}, {label}: {message}")]
    Preload {
        file: String,
        label: String,
        message: String,
    },
    #[error("--{0}")]
    Bound(String),
}

/// Load everything persisted into `shared`: the config file's limits (`preload`, each with
/// its label), the limits log's records (`loaded`), then the snapshot.
pub fn load(
    shared: &Shared,
    preload: &[(String, Vec<Bytes>)],
    loaded: Loaded,
) -> Result<(), StartupError> {
    if let Some(bytes) = shared.config.maxmemory.map(|m| m.0) {
        crate::settings::check_maxmemory(&shared.engine, bytes).map_err(StartupError::Bound)?;
    }
    if let Some(pass) = &shared.config.requirepass {
        // The default user's password, from the flag at every start (as Redis's requirepass);
        // a change made at runtime with ACL SETUSER is in the log, replayed below, and wins.
        shared
            .users
            .set_user(b"default", &[b"resetpass", format!(">{pass}").as_bytes()])
            .map_err(|e| StartupError::Bound(format!("requirepass: {e}")))?;
    }
    let from_file =
        crate::cmd::acl::load_file(shared).map_err(|message| StartupError::Preload {
            file: shared
                .config
                .aclfile
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            label: "ACL file".into(),
            message,
        })?;
    if from_file > 0 {
        tracing::info!("ACL file: {from_file} user(s) loaded");
    }
    for (label, args) in preload {
        crate::cmd::replay(shared, &COMMANDS, &crate::args::slices(args)).map_err(|e| {
            StartupError::Preload {
                file: shared
                    .config
                    .config
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                label: label.clone(),
                message: e.to_string(),
            }
        })?;
    }
    if !preload.is_empty() {
        tracing::info!(
            "config file: {} limit(s) and tier(s) applied",
            preload.len()
        );
    }

    shared.persist.begin_replay();
    let mut skipped = 0;
    for args in &loaded.records {
        if let Err(e) = crate::cmd::replay(shared, &COMMANDS, &crate::args::slices(args)) {
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

    crate::saving::restore(shared);
    shared.persist.init_last_save();
    Ok(())
}
