//! # ratelimitd
//!
//! The daemon as a library: `main` parses the flags and calls [`server::prepare`] and
//! [`server::Prepared::serve`]; tests do the same in-process, with the engine on a
//! [`FakeClock`](ratelimitd_engine::FakeClock). Protocol bytes are the `ratelimitd-protocol`
//! crate's business, rate-limit state the `ratelimitd-engine` crate's, the replication
//! stream's format the `ratelimitd-replication` crate's; this crate wires them to sockets.
//! docs/DESIGN.md has the whole map.
//!
//! ## Layout, from the top floor down (a module imports only modules below it)
//!
//! Top: start and serve
//! - [`server`]: bind the listeners, load, serve until shutdown; the accept loop.
//! - [`startup`]: load the config file's limits, the limits log and the snapshot.
//! - [`tasks`]: background tasks (expiry, periodic snapshot, throttling summary, replication).
//!
//! Front-ends: one task per client
//! - [`connection`]: a RESP connection (read, decode ahead, execute, one write per read).
//! - [`memcache`]: a memcached connection and memcached's semantics over the key-value space.
//! - [`http`]: the HTTP listener (metrics, health, /v1/check, forward-auth).
//! - [`replica`]: this node's link to its primary.
//!
//! Commands
//! - [`cmd`]: the command table, dispatch, and one file of handlers per command family.
//!
//! Services on the shared state
//! - [`primary`]: the replication pump, one sender per replica, WAIT.
//! - [`saving`]: rate-state snapshots (SAVE, BGSAVE, the timer, shutdown, restore).
//!
//! The shared state
//! - [`state`]: [`Shared`](state::Shared), what every task shares.
//!
//! Sub-states and leaves (they import nothing above them)
//! - [`acl`]: users, their rules and categories, the ACL LOG.
//! - [`repl`]: replication state: role, ids, backlog, attached replicas, write refusals.
//! - [`counters`]: the one counter set (INFO, /metrics, the snapshot's change count).
//! - [`metrics`]: the /metrics registry and its scrape-time gauges.
//! - [`clients`]: the registry of connected clients.
//! - [`pubsub`]: channels, patterns, and each subscriber's outbox.
//! - [`tls`]: the certificates in force, reloading them, TLS handshakes.
//! - [`persist`]: the data directory: limits log and snapshot files.
//! - [`config`]: the flags; [`settings`]: the config file; [`rewrite`]: CONFIG REWRITE's file
//!   edit; [`logging`]: log set-up and level.
//! - [`limit_args`]: limits written back as RL.LIMIT arguments.
//! - [`fair_share`]: how a busy connection takes turns with the others.
//! - [`durable_file`]: replacing a file so that a crash leaves the old or the new version.
//! - [`stream`]: a socket, plain TCP or TLS, as one type.
//! - [`path`]: forward-auth's one spelling of a request path (dot segments, slashes, `;params`,
//!   percent-encodings).
//! - [`args`], [`text`], [`process`]: small helpers (argument forms, safe quoting, RSS and
//!   run id).

pub mod acl;
pub mod args;
pub mod bounds;
pub mod clients;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod counters;
pub mod durable_file;
pub mod fair_share;
pub mod http;
pub mod limit_args;
pub mod logging;
pub mod memcache;
pub mod metrics;
pub mod path;
pub mod persist;
pub mod primary;
pub mod process;
pub mod pubsub;
pub mod repl;
pub mod replica;
pub mod rewrite;
pub mod saving;
pub mod server;
pub mod settings;
pub mod size;
pub mod startup;
pub mod state;
pub mod stream;
pub mod tasks;
pub mod text;
pub mod tls;

pub use config::Config;
