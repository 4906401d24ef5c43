//! How a change to the configuration (a limit, a tier, a user) is made: logged durably first
//! (src/persist.rs), then applied and fed to the replication stream inside the same commit,
//! so the log, the replicas and the daemon see changes in one order, and nothing is
//! acknowledged before it is on disk.

use crate::persist::{ChangeKind, PersistError, RecordKey};
use crate::state::Shared;
use ratelimitd_protocol::ParseError;

/// Log `args` under `key`, then `apply`, then feed `args` to the replicas. `noop` says the
/// change would change nothing (a DEL of an absent scope), which is then not logged.
pub fn change<R>(
    shared: &Shared,
    args: &[&[u8]],
    key: RecordKey,
    kind: ChangeKind,
    noop: impl FnOnce() -> bool,
    apply: impl FnOnce() -> R,
) -> Result<R, ParseError> {
    shared
        .persist
        .commit(args, key, kind, noop, || {
            let out = apply();
            shared.repl.feed_limit(args);
            out
        })
        .map_err(persist_error)
}

/// A change that could not be made durable is refused: `ERR persistence: ...`.
fn persist_error(e: PersistError) -> ParseError {
    ParseError::Invalid(format!("persistence: {e}"))
}
