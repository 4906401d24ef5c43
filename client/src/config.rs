//! [`Config`]: how the client behaves — timeouts, back-off, connections per address, the
//! degraded-mode allowance and the routing key — and the defaults, each chosen for a check that
//! sits in front of every API request.

use std::sync::Arc;
use std::time::Duration;

use crate::fallback::FallbackLimit;
use crate::ring::default_route_key;

/// Computes the routing key of `(client, endpoint)`; see [`Config::route_key`].
pub type RouteKeyFn = dyn Fn(&str, &str) -> Vec<u8> + Send + Sync;

/// How the client behaves. Every timeout is explicit: a rate-limit check sits in front of
/// every API request, so waiting seconds for an OS default would be an outage of its own.
#[derive(Clone)]
pub struct Config {
    /// Time to establish a connection (default 50 ms: loopback or same-rack).
    pub connect_timeout: Duration,
    /// Time to wait for one reply (default 10 ms: a check is microseconds of daemon work).
    pub command_timeout: Duration,
    /// How long an address that failed is skipped before it is probed again (default 250 ms).
    pub down_backoff: Duration,
    /// Sentinel nodes: time to connect to one Sentinel, and again to get its reply, before
    /// asking the next one (default 100 ms).
    pub sentinel_timeout: Duration,
    /// Sentinel nodes: least time between two rounds of asking the Sentinels for a node's
    /// primary (default 100 ms), so that an outage does not turn every check into Sentinel
    /// queries.
    pub rediscover_interval: Duration,
    /// Multiplexed connections per address (default 2).
    pub pool_size: usize,
    /// The local allowance used while a node is unreachable.
    pub fallback: FallbackLimit,
    /// The routing key of a check (default: [`default_route_key`], the (client, endpoint)
    /// pair). Replace it to co-locate, e.g., every endpoint of one client on one node — only
    /// correct if all clients of the deployment use the same function.
    pub route_key: Arc<RouteKeyFn>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("down_backoff", &self.down_backoff)
            .field("sentinel_timeout", &self.sentinel_timeout)
            .field("rediscover_interval", &self.rediscover_interval)
            .field("pool_size", &self.pool_size)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: Duration::from_millis(50),
            command_timeout: Duration::from_millis(10),
            down_backoff: Duration::from_millis(250),
            sentinel_timeout: Duration::from_millis(100),
            rediscover_interval: Duration::from_millis(100),
            pool_size: 2,
            fallback: FallbackLimit::default(),
            route_key: Arc::new(|c: &str, e: &str| default_route_key(c, e)),
        }
    }
}
