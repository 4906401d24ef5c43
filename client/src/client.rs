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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Value};
use tokio::task::JoinSet;

use crate::error::ClientError;
use crate::fallback::{Fallback, FallbackLimit};
use crate::ring::{default_route_key, Ring};
use crate::types::{Decision, Scope, Source, Window};

/// One daemon in the ring: a primary address and optional replica addresses.
///
/// The node's *name* is what the ring hashes (docs/HASHING.md); it defaults to the primary
/// address as written. Give nodes explicit names when addresses may change (a replica promoted
/// in place, a host renumbered) so that keys do not move with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    name: Option<String>,
    primary: String,
    replicas: Vec<String>,
}

impl Node {
    /// A node whose primary listens at `primary` (`host:port` or a `redis://` URL).
    pub fn new(primary: impl Into<String>) -> Node {
        Node {
            name: None,
            primary: primary.into(),
            replicas: Vec::new(),
        }
    }

    /// Adds a replica address, tried when the primary does not answer.
    pub fn replica(mut self, addr: impl Into<String>) -> Node {
        self.replicas.push(addr.into());
        self
    }

    /// Sets the name the ring hashes (default: the primary address).
    pub fn name(mut self, name: impl Into<String>) -> Node {
        self.name = Some(name.into());
        self
    }

    /// The name the ring hashes.
    pub fn ring_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.primary)
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
    /// Times a node's preferred address changed because another one accepted a write.
    pub failovers: u64,
    /// Requests that failed on an address by I/O error or timeout.
    pub transport_errors: u64,
    /// Requests an address refused with READONLY (or LOADING / MASTERDOWN).
    pub readonly_replies: u64,
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

struct NodeState {
    name: String,
    addrs: Vec<Addr>,
    /// Index of the address that last accepted a write: tried first. Starts at the primary;
    /// moves to a replica once that replica accepts a write (it was promoted).
    preferred: AtomicUsize,
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
            let mut addrs = Vec::new();
            for text in std::iter::once(&node.primary).chain(&node.replicas) {
                let client = redis::Client::open(redis_url(text)).map_err(|source| {
                    ClientError::InvalidAddress {
                        addr: text.clone(),
                        source,
                    }
                })?;
                addrs.push(Addr {
                    text: text.clone(),
                    client,
                    pool: (0..pool_size)
                        .map(|_| tokio::sync::Mutex::new(None))
                        .collect(),
                    next_slot: AtomicUsize::new(0),
                    down_until: AtomicU64::new(0),
                });
            }
            states.push(NodeState {
                name: node.ring_name().to_string(),
                addrs,
                preferred: AtomicUsize::new(0),
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

    /// The address each node currently sends writes to first (follows failover).
    pub fn preferred_addresses(&self) -> Vec<String> {
        self.inner
            .nodes
            .iter()
            .map(|n| {
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
