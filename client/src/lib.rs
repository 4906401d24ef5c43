//! ratelimitd-client: talk to several ratelimitd daemons as one rate limiter.
//!
//! When one daemon is not enough, keys are spread over several from the client side, as
//! memcached users do: each (client, endpoint) pair is owned by one daemon, picked by a
//! rendezvous-hash ring that every client library computes identically (docs/HASHING.md).
//! A daemon that stops answering is replaced by its replicas; a node with no reachable address
//! puts its keys in *degraded mode*, where a small local allowance per key decides — failing
//! open, but never unboundedly.
//!
//! # Layout
//! - [`ring`] — the hash function and the rendezvous ring (the written spec's code).
//! - [`fallback`] — the bounded local GCRA used in degraded mode.
//! - [`types`] — what calls take and return — [`Decision`], [`Window`], [`Scope`].
//! - [`client`] — [`Client`] itself — routing, connection pools, failover, limit management.
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
pub mod error;
pub mod fallback;
pub mod ring;
pub mod types;

pub use client::{Client, Config, Node, RouteKeyFn, Stats};
pub use error::ClientError;
pub use fallback::FallbackLimit;
pub use ring::{default_route_key, Ring};
pub use types::{Decision, Scope, Source, Window};
