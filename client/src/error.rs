//! The errors a client call can return, as one enum so callers can match on what went wrong
//! (a daemon said no, no daemon could be reached, a reply did not parse) instead of on text.

use thiserror::Error;

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The client was built with no node.
    #[error("no node configured")]
    NoNodes,
    /// An address could not be parsed into a connection target.
    #[error("invalid address '{addr}': {source}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What the redis crate said about it.
        #[source]
        source: redis::RedisError,
    },
    /// Every address of a node failed (refused, timed out, dropped, or READONLY) or is in its
    /// back-off after a recent failure.
    #[error("node '{node}' is unavailable: {reason}")]
    Unavailable {
        /// The node's name.
        node: String,
        /// The last failure seen.
        reason: String,
    },
    /// The daemon answered with an error (bad arguments, unknown scope...): not retried.
    #[error("node '{node}' replied: {message}")]
    Server {
        /// The node's name.
        node: String,
        /// The error line the daemon sent.
        message: String,
    },
    /// The reply did not have the shape the command promises.
    #[error("unexpected reply from '{node}': {detail}")]
    Reply {
        /// The node's name.
        node: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A configuration change sent to every node failed on some of them; the others applied
    /// it. Retry the call: SET and DEL are idempotent.
    #[error("{} of {total} nodes failed: {}", failed.len(), failed.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Partial {
        /// How many nodes the change was sent to.
        total: usize,
        /// The error of each node that failed.
        failed: Vec<ClientError>,
    },
    /// A window or scope argument is out of range before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
