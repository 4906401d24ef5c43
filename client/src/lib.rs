//! ratelimitd-client: talk to several ratelimitd daemons as one rate limiter.
//!
//! When one daemon is not enough, keys are spread over several from the client side, as
//! memcached users do: each (client, endpoint) pair is owned by one daemon, picked by a
//! rendezvous-hash ring that every client library computes identically (docs/HASHING.md).
//! A daemon that stops answering is replaced by its replicas; a node with no reachable address
//! puts its keys in *degraded mode*, where a small local allowance per key decides — failing
//! open, but never unboundedly.
//!
//! # Redis Sentinel
//! A node can be given as a set of Sentinels and a master name instead of fixed addresses:
//! [`Node::sentinel`]. The client asks the Sentinels in turn for the primary
//! (`SENTINEL get-master-addr-by-name`, each within [`Config::sentinel_timeout`]), sends the
//! node's commands there, and asks again when the primary refuses or drops the connection, times
//! out, or answers `-READONLY` — at most once per [`Config::rediscover_interval`] per node — then
//! follows the primary they name. The ring hashes the master name (or [`Node::name`]), not the
//! primary's address, so keys stay put across failovers; until a primary answers, the node's
//! keys are in degraded mode as for any unreachable node. [`Node::password`] is sent with
//! `AUTH` to the primaries (a Sentinel's own password goes in its `redis://:pw@host:port`
//! URL). [`Stats::discoveries`], [`Stats::sentinel_errors`] and [`Stats::failovers`] count what
//! happened. A primary that keeps answering writes is not re-checked: the client relies on
//! the failover itself (the old primary dies, is demoted and answers `-READONLY`, or has its
//! clients killed by Sentinel). The failover drill with real `redis-sentinel` processes is
//! `tests/sentinel.rs`; `tests/sentinel_discovery.rs` covers the discovery rules step by step.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ratelimitd_client::ClientError> {
//! use ratelimitd_client::{Client, Node};
//! let sentinels = ["10.0.0.11:26379", "10.0.0.12:26379", "10.0.0.13:26379"];
//! let rl = Client::new(vec![
//!     Node::sentinel(sentinels, "ratelimitd-a").password("s3cret"),
//!     Node::sentinel(sentinels, "ratelimitd-b").password("s3cret"),
//! ])?;
//! let d = rl.check("alice", "GET /api", 1).await?;
//! # let _ = d;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`] — [`Client`] itself, the facade: routes each call to its node, fails over
//!   between a fixed node's addresses, falls back to degraded mode, manages limits and tiers.
//! - `node` — [`Node`]: how a daemon is described (fixed addresses or Sentinels), and the name
//!   the ring hashes.
//! - `config` — [`Config`]: timeouts, back-off, pool size, fallback allowance, routing key.
//! - `pool` — one address: its pool of multiplexed connections, its back-off, one attempt.
//! - `sentinel` — a Sentinel node's discovery: asking the Sentinels, following a new primary.
//! - `reply` — the daemon's replies read into typed values.
//! - `stats` — [`Stats`] and the counters behind it.
//! - [`ring`] — the hash function and the rendezvous ring (the written spec's code).
//! - [`fallback`] — the bounded local GCRA used in degraded mode.
//! - [`types`] — what calls take and return — [`Decision`], [`Window`], [`Scope`].
//! - [`error`] — [`ClientError`].
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), ratelimitd_client::ClientError> {
//! use std::time::Duration;
//! use ratelimitd_client::{Client, Node, Scope, Window};
//! let rl = Client::new(vec![
//!     Node::new("127.0.0.1:7001"),
//!     Node::new("127.0.0.1:7002"),
//!     Node::new("127.0.0.1:7003"),
//! ])?;
//! rl.set_limit(&Scope::Endpoint("/login".into()), &[Window::new(5, Duration::from_secs(60))])
//!     .await?;
//! let d = rl.check("ip:203.0.113.7", "/login", 1).await?;
//! assert!(d.allowed);
//! # Ok(()) }
//! ```

pub mod client;
mod config;
pub mod error;
pub mod fallback;
mod node;
mod pool;
mod reply;
pub mod ring;
mod sentinel;
mod stats;
pub mod types;

pub use client::Client;
pub use config::{Config, RouteKeyFn};
pub use error::ClientError;
pub use fallback::FallbackLimit;
pub use node::Node;
pub use ring::{default_route_key, Ring};
pub use stats::Stats;
pub use types::{Decision, Scope, Source, Window};
