//! The client: routes each call to the node that owns its key, fails over between a node's
//! addresses, and falls back to the bounded local allowance when a node is unreachable.
//!
//! Why the `redis` crate and not a hand-written RESP client: its
//! [`redis::aio::MultiplexedConnection`] already does what we need — many requests in flight on
//! one socket (pipelining without batching by hand), per-request response timeouts, and the
//! error taxonomy (I/O vs. `READONLY` vs. `ERR`) failover is decided on. A RESP client of our own
//! would duplicate that for a few microseconds we would not measure; the daemon's own RESP code
//! (`protocol/`) is server-side and knows nothing of sockets.
//!
//! Per address we keep a small pool of multiplexed connections (`Config::pool_size`, round
//! robin): one socket is enough for pipelining, two keep one slow reply or one reconnect from
//! stalling every caller. An address that fails (refused, timed out, dropped) is put in
//! back-off for `Config::down_backoff`: during it, checks for that node go straight to degraded
//! mode instead of paying a connect timeout each, and after it one call probes again — which is
//! how a restarted daemon is picked up again.
//!
//! A node built with [`Node::sentinel`] has no fixed addresses: its primary is the one its
//! Sentinels name, asked by hand over plain connections (not the `redis` crate's sentinel
//! feature) so that every timeout is ours and re-discovery is single-flight and rate-limited
//! per node. See `SentinelState` and `Inner::exec_sentinel`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, Value,
};
use tokio::task::JoinSet;

use crate::error::ClientError;
use crate::fallback::{Fallback, FallbackLimit};
use crate::ring::{default_route_key, Ring};
use crate::types::{Decision, Scope, Source, Window};

/// One daemon in the ring: a primary address and optional replica addresses — or, with
/// [`Node::sentinel`], a set of Redis Sentinels that name the current primary.
///
/// The node's *name* is what the ring hashes (docs/HASHING.md); it defaults to the primary
/// address as written (the master name for a Sentinel node). Give nodes explicit names when
/// addresses may change (a replica promoted in place, a host renumbered) so that keys do not
/// move with them.
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    name: Option<String>,
    primary: String,
    replicas: Vec<String>,
    sentinel: Option<SentinelSpec>,
    password: Option<String>,
}

/// Where a Sentinel node finds its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SentinelSpec {
    sentinels: Vec<String>,
    master_name: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Node");
        d.field("name", &self.name);
        match &self.sentinel {
            Some(s) => d
                .field("sentinels", &s.sentinels)
                .field("master_name", &s.master_name),
            None => d
                .field("primary", &self.primary)
                .field("replicas", &self.replicas),
        };
        // Never print the password itself.
        d.field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Node {
    /// A node whose primary listens at `primary` (`host:port` or a `redis://` URL).
    pub fn new(primary: impl Into<String>) -> Node {
        Node {
            name: None,
            primary: primary.into(),
            replicas: Vec::new(),
            sentinel: None,
            password: None,
        }
    }

    /// A node whose primary is whatever the Redis Sentinels at `sentinels` (`host:port` or
    /// `redis://` URLs, e.g. `redis://:pw@host:26379` for a Sentinel with a password) name for
    /// `master_name` (`SENTINEL get-master-addr-by-name`).
    ///
    /// The Sentinels are asked in turn (the last one that answered first) on the first call,
    /// and again whenever the primary refuses the connection, times out, drops it or answers
    /// `-READONLY` — at most once per [`Config::rediscover_interval`], each Sentinel within
    /// [`Config::sentinel_timeout`]. While no primary answers, the node's keys are in degraded
    /// mode as for any unreachable node.
    ///
    /// The ring hashes the master name (or [`Node::name`]), never the primary's address, so
    /// keys stay on this node across failovers. A Sentinel node takes no
    /// [`Node::replica`]: Sentinel knows the replicas ([`Client::with_config`] refuses one).
    pub fn sentinel<S: Into<String>>(
        sentinels: impl IntoIterator<Item = S>,
        master_name: impl Into<String>,
    ) -> Node {
        Node {
            name: None,
            primary: String::new(),
            replicas: Vec::new(),
            sentinel: Some(SentinelSpec {
                sentinels: sentinels.into_iter().map(Into::into).collect(),
                master_name: master_name.into(),
            }),
            password: None,
        }
    }

    /// Adds a replica address, tried when the primary does not answer.
    pub fn replica(mut self, addr: impl Into<String>) -> Node {
        self.replicas.push(addr.into());
        self
    }

    /// Sets the name the ring hashes (default: the primary address; for a Sentinel node, the
    /// master name).
    pub fn name(mut self, name: impl Into<String>) -> Node {
        self.name = Some(name.into());
        self
    }

    /// The password sent with `AUTH` to this node's daemons (their `requirepass`): to the
    /// primary Sentinel names, or to every address of a fixed node that does not carry its own
    /// in a `redis://:pw@host:port` URL. Not sent to the Sentinels (put theirs in their URLs).
    pub fn password(mut self, password: impl Into<String>) -> Node {
        self.password = Some(password.into());
        self
    }

    /// The name the ring hashes.
    pub fn ring_name(&self) -> &str {
        match (&self.name, &self.sentinel) {
            (Some(name), _) => name,
            (None, Some(s)) => &s.master_name,
            (None, None) => &self.primary,
        }
    }
}

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

/// Counters of what the client did, read with [`Client::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Checks answered by a daemon.
    pub checks: u64,
    /// Checks decided locally and admitted (degraded mode).
    pub degraded_allowed: u64,
    /// Checks decided locally and denied (degraded mode), including `degraded_table_full`.
    pub degraded_denied: u64,
    /// Of those denials, the ones due to the local key table being full.
    pub degraded_table_full: u64,
    /// Times a node's preferred address changed because another one accepted a write; for a
    /// Sentinel node, times the Sentinels named a different primary than the one in use.
    pub failovers: u64,
    /// Requests that failed on an address by I/O error or timeout.
    pub transport_errors: u64,
    /// Requests an address refused with READONLY (or LOADING / MASTERDOWN).
    pub readonly_replies: u64,
    /// Sentinel nodes: rounds of asking the Sentinels that got a primary's address.
    pub discoveries: u64,
    /// Sentinel nodes: Sentinel queries that failed (refused, timed out, unknown master name,
    /// unexpected reply).
    pub sentinel_errors: u64,
}

#[derive(Default)]
struct Counters {
    checks: AtomicU64,
    degraded_allowed: AtomicU64,
    degraded_denied: AtomicU64,
    degraded_table_full: AtomicU64,
    failovers: AtomicU64,
    transport_errors: AtomicU64,
    readonly_replies: AtomicU64,
    discoveries: AtomicU64,
    sentinel_errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One address of a node, with its connection pool and back-off.
struct Addr {
    text: String,
    client: redis::Client,
    /// Each slot holds a live connection or nothing. A tokio mutex because the connect is
    /// awaited under it: concurrent callers wait for one dial instead of each dialing.
    pool: Vec<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
    next_slot: AtomicUsize,
    /// Skip this address until this time (ns since the client's epoch); 0 = not down.
    down_until: AtomicU64,
}

impl Addr {
    fn new(text: String, client: redis::Client, pool_size: usize) -> Addr {
        Addr {
            text,
            client,
            pool: (0..pool_size)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_slot: AtomicUsize::new(0),
            down_until: AtomicU64::new(0),
        }
    }
}

struct NodeState {
    name: String,
    /// The fixed addresses: primary first, then replicas. Empty for a Sentinel node.
    addrs: Vec<Addr>,
    /// Index of the address that last accepted a write: tried first. Starts at the primary;
    /// moves to a replica once that replica accepts a write (it was promoted).
    preferred: AtomicUsize,
    /// Set for a node built with [`Node::sentinel`]: its primary is discovered, not fixed.
    sentinel: Option<SentinelState>,
}

/// One Sentinel a node asks.
struct SentinelAddr {
    text: String,
    client: redis::Client,
}

/// The discovery state of a Sentinel node.
///
/// The primary in use is an `Arc<Addr>` (with its own pool and back-off) that a discovery
/// round replaces when the Sentinels name another address; callers that still hold the old one
/// finish with it. Rounds are single-flight (`discovering`) and rate-limited (`next_round`):
/// during an outage every check would otherwise query the Sentinels.
struct SentinelState {
    master_name: String,
    sentinels: Vec<SentinelAddr>,
    /// Indexes into `sentinels` in the order to ask them: the last one that answered first.
    order: Mutex<Vec<usize>>,
    /// AUTH password for the discovered primaries.
    password: Option<String>,
    pool_size: usize,
    /// The primary in use; `None` until a Sentinel has named one.
    current: Mutex<Option<Arc<Addr>>>,
    /// Why the last Sentinel query failed, for `ClientError::Unavailable`.
    last_error: Mutex<String>,
    /// Held for the duration of one round of asking the Sentinels.
    discovering: tokio::sync::Mutex<()>,
    /// No new round before this time (ns since the client's epoch).
    next_round: AtomicU64,
}

impl SentinelState {
    fn current(&self) -> Option<Arc<Addr>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `host:port`, with brackets around an IPv6 host.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What went wrong with one attempt on one address, for the failover loop.
enum Attempt {
    /// Refused, timed out or dropped: the address is down.
    Transport(String),
    /// The address is up but will not take this (READONLY: an unpromoted replica).
    NotWritable(String),
    /// The daemon rejected the command itself: no other address will accept it either.
    Server(String),
}

fn classify(e: &RedisError) -> Attempt {
    match e.kind() {
        ErrorKind::ReadOnly | ErrorKind::BusyLoadingError | ErrorKind::MasterDown => {
            Attempt::NotWritable(e.to_string())
        }
        _ if e.code().is_some() => Attempt::Server(e.to_string()),
        _ => Attempt::Transport(e.to_string()),
    }
}

struct Inner {
    nodes: Vec<NodeState>,
    ring: Ring,
    config: Config,
    fallback: Mutex<Fallback>,
    counters: Counters,
    epoch: Instant,
}

/// A client for a set of ratelimitd daemons. Cheap to clone (an `Arc`); share one per process.
///
/// ```no_run
/// # async fn demo() -> Result<(), ratelimitd_client::ClientError> {
/// use ratelimitd_client::{Client, Node};
/// let client = Client::new(vec![
///     Node::new("10.0.0.1:6379").replica("10.0.0.11:6379"),
///     Node::new("10.0.0.2:6379"),
///     Node::new("10.0.0.3:6379"),
/// ])?;
/// let d = client.check("alice", "/search", 1).await?;
/// if !d.allowed {
///     println!("retry in {:?}", d.retry_after);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.node_names())
            .field("config", &self.inner.config)
            .finish()
    }
}

fn redis_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("redis://{addr}/")
    }
}

impl Client {
    /// A client over `nodes` with the default [`Config`]. Connections are opened lazily.
    pub fn new(nodes: Vec<Node>) -> Result<Client, ClientError> {
        Client::with_config(nodes, Config::default())
    }

    /// A client over `nodes` with `config`.
    pub fn with_config(nodes: Vec<Node>, config: Config) -> Result<Client, ClientError> {
        if nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        let ring = Ring::new(&nodes.iter().map(Node::ring_name).collect::<Vec<_>>());
        let pool_size = config.pool_size.max(1);
        let mut states = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let invalid = |addr: &String, source| ClientError::InvalidAddress {
                addr: addr.clone(),
                source,
            };
            if let Some(spec) = &node.sentinel {
                if spec.sentinels.is_empty() || spec.master_name.is_empty() {
                    return Err(ClientError::InvalidArgument(
                        "a Sentinel node needs at least one Sentinel and a master name".into(),
                    ));
                }
                if !node.replicas.is_empty() {
                    return Err(ClientError::InvalidArgument(format!(
                        "node '{}' gets its primary from Sentinel, which knows the replicas: \
                         do not list them",
                        node.ring_name()
                    )));
                }
                let mut sentinels = Vec::with_capacity(spec.sentinels.len());
                for text in &spec.sentinels {
                    let client =
                        redis::Client::open(redis_url(text)).map_err(|e| invalid(text, e))?;
                    sentinels.push(SentinelAddr {
                        text: text.clone(),
                        client,
                    });
                }
                states.push(NodeState {
                    name: node.ring_name().to_string(),
                    addrs: Vec::new(),
                    preferred: AtomicUsize::new(0),
                    sentinel: Some(SentinelState {
                        master_name: spec.master_name.clone(),
                        order: Mutex::new((0..sentinels.len()).collect()),
                        sentinels,
                        password: node.password.clone(),
                        pool_size,
                        current: Mutex::new(None),
                        last_error: Mutex::new(String::new()),
                        discovering: tokio::sync::Mutex::new(()),
                        next_round: AtomicU64::new(0),
                    }),
                });
                continue;
            }
            let mut addrs = Vec::new();
            for text in std::iter::once(&node.primary).chain(&node.replicas) {
                let mut info = redis_url(text)
                    .into_connection_info()
                    .map_err(|e| invalid(text, e))?;
                if info.redis.password.is_none() {
                    info.redis.password.clone_from(&node.password);
                }
                let client = redis::Client::open(info).map_err(|e| invalid(text, e))?;
                addrs.push(Addr::new(text.clone(), client, pool_size));
            }
            states.push(NodeState {
                name: node.ring_name().to_string(),
                addrs,
                preferred: AtomicUsize::new(0),
                sentinel: None,
            });
        }
        Ok(Client {
            inner: Arc::new(Inner {
                nodes: states,
                ring,
                fallback: Mutex::new(Fallback::new(config.fallback)),
                config,
                counters: Counters::default(),
                epoch: Instant::now(),
            }),
        })
    }

    /// The nodes' ring names, in the order given.
    pub fn node_names(&self) -> Vec<String> {
        self.inner.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The index (into the node list) of the node that owns `(client, endpoint)`.
    pub fn node_for(&self, client: &str, endpoint: &str) -> usize {
        let key = (self.inner.config.route_key)(client, endpoint);
        // The ring is never empty: `with_config` refuses an empty node list.
        self.inner.ring.locate(&key).unwrap_or(0)
    }

    /// The address each node currently sends writes to first (follows failover). For a
    /// Sentinel node, the primary the Sentinels last named (empty before they named one).
    pub fn preferred_addresses(&self) -> Vec<String> {
        self.inner
            .nodes
            .iter()
            .map(|n| {
                if let Some(s) = &n.sentinel {
                    return s.current().map(|a| a.text.clone()).unwrap_or_default();
                }
                let i = n.preferred.load(Ordering::Relaxed).min(n.addrs.len() - 1);
                n.addrs[i].text.clone()
            })
            .collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            checks: get(&c.checks),
            degraded_allowed: get(&c.degraded_allowed),
            degraded_denied: get(&c.degraded_denied),
            degraded_table_full: get(&c.degraded_table_full),
            failovers: get(&c.failovers),
            transport_errors: get(&c.transport_errors),
            readonly_replies: get(&c.readonly_replies),
            discoveries: get(&c.discoveries),
            sentinel_errors: get(&c.sentinel_errors),
        }
    }

    /// `RL.CHECK client endpoint COST cost` on the owning node; when that node is unreachable,
    /// a local decision from the bounded fallback allowance (`Decision::source` says which).
    ///
    /// Errors only when the daemon rejects the command itself (e.g. a cost it refuses) or its
    /// reply does not parse — never because a node is down.
    pub async fn check(
        &self,
        client: &str,
        endpoint: &str,
        cost: u32,
    ) -> Result<Decision, ClientError> {
        let node = self.node_for(client, endpoint);
        let mut cmd = redis::cmd("RL.CHECK");
        cmd.arg(client).arg(endpoint).arg("COST").arg(cost);
        match self.inner.exec(node, &cmd, true).await {
            Ok((value, address)) => {
                bump(&self.inner.counters.checks);
                let name = &self.inner.nodes[node].name;
                parse_check(&value, name, address)
            }
            Err(ClientError::Unavailable { .. }) => Ok(self.degraded(node, client, endpoint, cost)),
            Err(e) => Err(e),
        }
    }

    /// [`Client::check`] for many requests at once. They are issued concurrently, so requests
    /// for one node share its multiplexed connections and go out pipelined. Results are in
    /// input order.
    pub async fn check_many(
        &self,
        requests: &[(&str, &str, u32)],
    ) -> Vec<Result<Decision, ClientError>> {
        let mut set = JoinSet::new();
        for (i, &(c, e, cost)) in requests.iter().enumerate() {
            let me = self.clone();
            let (c, e) = (c.to_string(), e.to_string());
            set.spawn(async move { (i, me.check(&c, &e, cost).await) });
        }
        let mut out: Vec<Option<Result<Decision, ClientError>>> =
            (0..requests.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, r)) = joined {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(ClientError::InvalidArgument("check task panicked".into())))
            })
            .collect()
    }

    fn degraded(&self, node: usize, client: &str, endpoint: &str, cost: u32) -> Decision {
        let now = u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let key = default_route_key(client, endpoint);
        let local = self
            .inner
            .fallback
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(&key, cost, now);
        let c = &self.inner.counters;
        if local.allowed {
            bump(&c.degraded_allowed);
        } else {
            bump(&c.degraded_denied);
            if local.table_full {
                bump(&c.degraded_table_full);
            }
        }
        Decision {
            allowed: local.allowed,
            limit: Some(local.limit),
            remaining: Some(local.remaining),
            retry_after: local.retry_after,
            reset_after: Some(local.reset_after),
            source: Source::Degraded {
                node: self.inner.nodes[node].name.clone(),
            },
        }
    }

    /// `RL.LIMIT SET <scope> RATE ... [BURST ...]` on every node (limits are configuration:
    /// any node may have to apply them). `ClientError::Partial` if some nodes failed.
    pub async fn set_limit(&self, scope: &Scope, windows: &[Window]) -> Result<(), ClientError> {
        if windows.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a limit needs at least one window".into(),
            ));
        }
        let mut cmd = redis::cmd("RL.LIMIT");
        cmd.arg("SET").arg(scope.args());
        for w in windows {
            cmd.arg("RATE").arg(w.rate_arg()?).arg("BURST").arg(w.burst);
        }
        self.broadcast(cmd).await.map(|_| ())
    }

    /// `RL.LIMIT GET <scope>` from the first node that answers; `None` when unset.
    pub async fn get_limit(&self, scope: &Scope) -> Result<Option<Vec<Window>>, ClientError> {
        let mut cmd = redis::cmd("RL.LIMIT");
        cmd.arg("GET").arg(scope.args());
        let (value, _, node) = self.read_any(&cmd).await?;
        parse_limit(&value, &node)
    }

    /// `RL.LIMIT DEL <scope>` on every node; whether any node had it.
    pub async fn del_limit(&self, scope: &Scope) -> Result<bool, ClientError> {
        let mut cmd = redis::cmd("RL.LIMIT");
        cmd.arg("DEL").arg(scope.args());
        let replies = self.broadcast(cmd).await?;
        Ok(replies.iter().any(|v| matches!(v, Value::Int(1))))
    }

    /// `RL.TIER SET client tier` on every node.
    pub async fn set_tier(&self, client: &str, tier: &str) -> Result<(), ClientError> {
        let mut cmd = redis::cmd("RL.TIER");
        cmd.arg("SET").arg(client).arg(tier);
        self.broadcast(cmd).await.map(|_| ())
    }

    /// `RL.TIER GET client` from the first node that answers.
    pub async fn get_tier(&self, client: &str) -> Result<Option<String>, ClientError> {
        let mut cmd = redis::cmd("RL.TIER");
        cmd.arg("GET").arg(client);
        let (value, _, node) = self.read_any(&cmd).await?;
        match value {
            Value::Nil => Ok(None),
            Value::BulkString(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Value::SimpleString(s) => Ok(Some(s)),
            other => Err(ClientError::Reply {
                node,
                detail: format!("RL.TIER GET replied {other:?}"),
            }),
        }
    }

    /// `RL.TIER DEL client` on every node; whether any node had it.
    pub async fn del_tier(&self, client: &str) -> Result<bool, ClientError> {
        let mut cmd = redis::cmd("RL.TIER");
        cmd.arg("DEL").arg(client);
        let replies = self.broadcast(cmd).await?;
        Ok(replies.iter().any(|v| matches!(v, Value::Int(1))))
    }

    /// Sends `cmd` as a write to every node concurrently; all replies, or `Partial`.
    async fn broadcast(&self, cmd: redis::Cmd) -> Result<Vec<Value>, ClientError> {
        let cmd = Arc::new(cmd);
        let mut set = JoinSet::new();
        for i in 0..self.inner.nodes.len() {
            let inner = Arc::clone(&self.inner);
            let cmd = Arc::clone(&cmd);
            set.spawn(async move { inner.exec(i, &cmd, true).await.map(|(v, _)| v) });
        }
        let total = self.inner.nodes.len();
        let mut values = Vec::with_capacity(total);
        let mut failed = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(v)) => values.push(v),
                Ok(Err(e)) => failed.push(e),
                Err(e) => failed.push(ClientError::InvalidArgument(format!("task failed: {e}"))),
            }
        }
        if failed.is_empty() {
            Ok(values)
        } else {
            Err(ClientError::Partial { total, failed })
        }
    }

    /// Sends a read to the nodes in order until one answers.
    async fn read_any(&self, cmd: &redis::Cmd) -> Result<(Value, String, String), ClientError> {
        let mut last = ClientError::NoNodes;
        for (i, node) in self.inner.nodes.iter().enumerate() {
            match self.inner.exec(i, cmd, false).await {
                Ok((v, addr)) => return Ok((v, addr, node.name.clone())),
                Err(e @ ClientError::Unavailable { .. }) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

impl Inner {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs `cmd` on node `node`: the preferred address first, then the others in list order.
    /// A write accepted by an address other than the preferred one makes it the preferred one
    /// (a promotion followed).
    async fn exec(
        &self,
        node: usize,
        cmd: &redis::Cmd,
        write: bool,
    ) -> Result<(Value, String), ClientError> {
        let state = &self.nodes[node];
        if let Some(sentinel) = &state.sentinel {
            return self.exec_sentinel(state, sentinel, cmd).await;
        }
        let preferred = state
            .preferred
            .load(Ordering::Relaxed)
            .min(state.addrs.len() - 1);
        let order =
            std::iter::once(preferred).chain((0..state.addrs.len()).filter(|&i| i != preferred));
        let mut reason = String::from("every address is in back-off after a failure");
        for i in order {
            let addr = &state.addrs[i];
            let now = self.now();
            if addr.down_until.load(Ordering::Relaxed) > now {
                continue;
            }
            match self.attempt(addr, cmd).await {
                Ok(v) => {
                    addr.down_until.store(0, Ordering::Relaxed);
                    if write && i != preferred {
                        state.preferred.store(i, Ordering::Relaxed);
                        bump(&self.counters.failovers);
                    }
                    return Ok((v, addr.text.clone()));
                }
                Err(Attempt::Transport(r)) => {
                    bump(&self.counters.transport_errors);
                    let backoff =
                        u64::try_from(self.config.down_backoff.as_nanos()).unwrap_or(u64::MAX);
                    addr.down_until
                        .store(self.now().saturating_add(backoff).max(1), Ordering::Relaxed);
                    reason = format!("{}: {r}", addr.text);
                }
                Err(Attempt::NotWritable(r)) => {
                    bump(&self.counters.readonly_replies);
                    reason = format!("{}: {r}", addr.text);
                }
                Err(Attempt::Server(message)) => {
                    return Err(ClientError::Server {
                        node: state.name.clone(),
                        message,
                    })
                }
            }
        }
        Err(ClientError::Unavailable {
            node: state.name.clone(),
            reason,
        })
    }

    /// Whether `addr` is in its back-off after a transport failure.
    fn in_backoff(&self, addr: &Addr) -> bool {
        addr.down_until.load(Ordering::Relaxed) > self.now()
    }

    fn back_off(&self, addr: &Addr) {
        let backoff = u64::try_from(self.config.down_backoff.as_nanos()).unwrap_or(u64::MAX);
        addr.down_until
            .store(self.now().saturating_add(backoff).max(1), Ordering::Relaxed);
    }

    /// [`Inner::exec`] for a Sentinel node: the primary in use (discovered first if there is
    /// none, or it is in back-off); when it fails by transport or READONLY, the Sentinels are
    /// asked again (rate-limited) and the primary they name, if another, is tried once.
    /// Reads go to the primary too: Sentinel nodes list no replicas.
    async fn exec_sentinel(
        &self,
        state: &NodeState,
        s: &SentinelState,
        cmd: &redis::Cmd,
    ) -> Result<(Value, String), ClientError> {
        let mut reason = String::new();
        let mut candidate = s.current();
        let mut tried: Option<Arc<Addr>> = None;
        // At most two addresses per call: the one in use and, when it fails, its successor.
        for _ in 0..2 {
            if candidate.as_ref().is_none_or(|a| self.in_backoff(a)) {
                candidate = self.discover(s, candidate.as_ref()).await;
            }
            let Some(addr) = candidate.clone() else {
                let last = s.last_error.lock().unwrap_or_else(PoisonError::into_inner);
                reason = format!("no Sentinel has named a primary (last error: {last})");
                break;
            };
            if tried.as_ref().is_some_and(|t| Arc::ptr_eq(t, &addr)) {
                break;
            }
            if self.in_backoff(&addr) {
                reason = format!(
                    "{} (named by Sentinel) is in back-off after a failure",
                    addr.text
                );
                break;
            }
            match self.attempt(&addr, cmd).await {
                Ok(v) => {
                    addr.down_until.store(0, Ordering::Relaxed);
                    return Ok((v, addr.text.clone()));
                }
                Err(Attempt::Transport(r)) => {
                    bump(&self.counters.transport_errors);
                    self.back_off(&addr);
                    reason = format!("{}: {r}", addr.text);
                }
                Err(Attempt::NotWritable(r)) => {
                    bump(&self.counters.readonly_replies);
                    reason = format!("{}: {r}", addr.text);
                }
                Err(Attempt::Server(message)) => {
                    return Err(ClientError::Server {
                        node: state.name.clone(),
                        message,
                    })
                }
            }
            candidate = self.discover(s, Some(&addr)).await;
            tried = Some(addr);
        }
        Err(ClientError::Unavailable {
            node: state.name.clone(),
            reason,
        })
    }

    /// One round of asking the Sentinels for the node's primary, unless one is under way (then
    /// it is awaited for at most `sentinel_timeout`), another caller's round has already
    /// replaced `seen` (the primary the caller found wanting), or the last round ended less
    /// than `rediscover_interval` ago. Returns the primary in use afterwards.
    async fn discover(&self, s: &SentinelState, seen: Option<&Arc<Addr>>) -> Option<Arc<Addr>> {
        let Ok(_round) =
            tokio::time::timeout(self.config.sentinel_timeout, s.discovering.lock()).await
        else {
            return s.current();
        };
        let current = s.current();
        let unchanged = match (&current, seen) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !unchanged || self.now() < s.next_round.load(Ordering::Relaxed) {
            return current;
        }
        let named = self.ask_sentinels(s).await;
        let interval =
            u64::try_from(self.config.rediscover_interval.as_nanos()).unwrap_or(u64::MAX);
        s.next_round
            .store(self.now().saturating_add(interval), Ordering::Relaxed);
        let Some((host, port)) = named else {
            return current;
        };
        bump(&self.counters.discoveries);
        let text = host_port(&host, port);
        if current.as_ref().is_some_and(|c| c.text == text) {
            return current;
        }
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(host, port),
            redis: RedisConnectionInfo {
                password: s.password.clone(),
                ..RedisConnectionInfo::default()
            },
        };
        // Opening a client only parses: it cannot fail for a TCP address.
        let Ok(client) = redis::Client::open(info) else {
            return current;
        };
        let addr = Arc::new(Addr::new(text, client, s.pool_size));
        *s.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&addr));
        if current.is_some() {
            bump(&self.counters.failovers);
        }
        Some(addr)
    }

    /// Asks the Sentinels in turn, the last one that answered first, for the primary's
    /// address; `None` if none names one.
    async fn ask_sentinels(&self, s: &SentinelState) -> Option<(String, u16)> {
        let order = s
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for i in order {
            match self.ask_sentinel(&s.sentinels[i], &s.master_name).await {
                Ok(named) => {
                    let mut order = s.order.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(pos) = order.iter().position(|&j| j == i) {
                        order[..=pos].rotate_right(1);
                    }
                    return Some(named);
                }
                Err(e) => {
                    bump(&self.counters.sentinel_errors);
                    *s.last_error.lock().unwrap_or_else(PoisonError::into_inner) = e;
                }
            }
        }
        None
    }

    /// `SENTINEL get-master-addr-by-name` on one Sentinel, on a fresh connection (rounds are
    /// rare), within `sentinel_timeout` to connect and again for the reply.
    async fn ask_sentinel(
        &self,
        sentinel: &SentinelAddr,
        master_name: &str,
    ) -> Result<(String, u16), String> {
        let t = self.config.sentinel_timeout;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(t)
            .set_response_timeout(t);
        let mut conn = sentinel
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| format!("{}: {e}", sentinel.text))?;
        let reply: Value = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master_name)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("{}: {e}", sentinel.text))?;
        let parsed = match &reply {
            Value::Array(items) if items.len() == 2 => text(&items[0])
                .zip(text(&items[1]).and_then(|p| p.parse::<u16>().ok()))
                .filter(|(host, port)| !host.is_empty() && *port != 0),
            _ => None,
        };
        parsed.ok_or_else(|| {
            format!(
                "{}: get-master-addr-by-name {master_name} replied {reply:?}",
                sentinel.text
            )
        })
    }

    /// One try on one address: take (or open) a pooled connection and run the command.
    async fn attempt(&self, addr: &Addr, cmd: &redis::Cmd) -> Result<Value, Attempt> {
        let slot = &addr.pool[addr.next_slot.fetch_add(1, Ordering::Relaxed) % addr.pool.len()];
        let mut conn = {
            let mut guard = slot.lock().await;
            match guard.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let cfg = AsyncConnectionConfig::new()
                        .set_connection_timeout(self.config.connect_timeout)
                        .set_response_timeout(self.config.command_timeout);
                    let c = addr
                        .client
                        .get_multiplexed_async_connection_with_config(&cfg)
                        .await
                        .map_err(|e| match classify(&e) {
                            // A connection that fails its handshake is a down address whatever
                            // the reason.
                            Attempt::Server(r)
                            | Attempt::NotWritable(r)
                            | Attempt::Transport(r) => Attempt::Transport(r),
                        })?;
                    *guard = Some(c.clone());
                    c
                }
            }
        };
        match cmd.query_async::<Value>(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                let attempt = classify(&e);
                if matches!(attempt, Attempt::Transport(_)) {
                    // The socket is unusable or the reply is late: drop it, dial afresh later.
                    *slot.lock().await = None;
                }
                Err(attempt)
            }
        }
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn opt_u64(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

fn opt_ms(v: i64) -> Option<Duration> {
    u64::try_from(v).ok().map(Duration::from_millis)
}

fn parse_check(value: &Value, node: &str, address: String) -> Result<Decision, ClientError> {
    let fields: Option<Vec<i64>> = match value {
        Value::Array(items) if items.len() == 5 => items.iter().map(int).collect(),
        _ => None,
    };
    let f = fields.ok_or_else(|| ClientError::Reply {
        node: node.to_string(),
        detail: format!("RL.CHECK replied {value:?}"),
    })?;
    Ok(Decision {
        allowed: f[0] == 1,
        limit: opt_u64(f[1]),
        remaining: opt_u64(f[2]),
        retry_after: opt_ms(f[3]),
        reset_after: opt_ms(f[4]),
        source: Source::Daemon {
            node: node.to_string(),
            address,
        },
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `["RATE", "10/500ms", "BURST", 2, ..., "ALGO", "gcra"]` or nil.
fn parse_limit(value: &Value, node: &str) -> Result<Option<Vec<Window>>, ClientError> {
    let bad = || ClientError::Reply {
        node: node.to_string(),
        detail: format!("RL.LIMIT GET replied {value:?}"),
    };
    let items = match value {
        Value::Nil => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(bad()),
    };
    // The reply ends with `ALGO <name>`; this client manages the windows (GCRA by default)
    // and leaves the algorithm to RL.LIMIT SET ... ALGO, so the pair is accepted and skipped.
    let items = match items.len().checked_sub(2) {
        Some(n) if text(&items[n]).as_deref() == Some("ALGO") => &items[..n],
        _ => &items[..],
    };
    let mut windows = Vec::new();
    for chunk in items.chunks(4) {
        let [rate_kw, rate, burst_kw, burst] = chunk else {
            return Err(bad());
        };
        let (rate_kw, burst_kw) = (text(rate_kw), text(burst_kw));
        if rate_kw.as_deref() != Some("RATE") || burst_kw.as_deref() != Some("BURST") {
            return Err(bad());
        }
        let (n, period) = text(rate)
            .as_deref()
            .and_then(Window::parse_rate)
            .ok_or_else(bad)?;
        let burst = int(burst)
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(bad)?;
        windows.push(Window {
            rate: n,
            period,
            burst,
        });
    }
    Ok(Some(windows))
}
