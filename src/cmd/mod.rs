//! Commands: the table that defines them, the rules that run them, and their handlers.
//!
//! ```text
//!  connection ──► table::COMMANDS.lookup(name) ──► dispatch::execute(ctx, args, found)
//!                 (one row per command: spec.rs)     arity, auth, writes, MULTI, then the
//!                                                    row's handler with its Ctx
//! ```
//!
//! - [`spec`]: what a row is ([`CommandSpec`]), the context a handler gets ([`Ctx`]), lookup.
//! - [`table`]: every row.
//! - [`dispatch`]: the rules before a handler runs; replaying a limit change.
//! - [`session`]: what a connection remembers between requests ([`Session`]).
//! - [`reply`]: reply shapes several commands share.
//!
//! Handlers, one file per family:
//! - [`connection`]: PING, ECHO, HELLO, AUTH, QUIT, SELECT; [`client`]: CLIENT.
//! - [`command`]: COMMAND; [`info`]: INFO; [`server`]: DBSIZE, FLUSHALL/FLUSHDB, TIME;
//!   [`config`]: CONFIG and the runtime knobs.
//! - [`rl`]: RL.CHECK, RL.PEEK, RL.RESET, RL.EXPLAIN; [`limits`]: RL.LIMIT, RL.TIER;
//!   [`cell`]: CL.THROTTLE, redis-cell compatible.
//! - [`persistence`]: SAVE, BGSAVE, LASTSAVE.
//! - [`kv`]: the key-value space (GET, SET, INCR, EXPIRE, TTL, ...), for INCR+EXPIRE users;
//!   [`multi`]: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//! - [`replication`]: REPLICAOF/SLAVEOF, ROLE, WAIT, REPLCONF, PSYNC, SYNC.
//! - [`acl`]: ACL (users and their rules); [`durable`]: how a change of the configuration
//!   (limits, tiers, users) is logged, applied and replicated.
//! - [`pubsub`]: SUBSCRIBE, PUBLISH and friends (what Redis Sentinel needs to find its peers).

pub mod acl;
pub mod cell;
pub mod client;
pub mod command;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod durable;
pub mod info;
pub mod kv;
pub mod limits;
pub mod multi;
pub mod persistence;
pub mod pubsub;
pub mod replication;
pub mod reply;
pub mod rl;
pub mod server;
pub mod session;
pub mod spec;
pub mod table;

pub use dispatch::{execute, replay};
pub use session::{Blocking, Session};
pub use spec::{CommandSpec, Ctx, Found, Prefetch};
pub use table::COMMANDS;
