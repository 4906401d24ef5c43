//! [`Client`]: the facade callers use. It routes each call to the node that owns its key,
//! fails over between a fixed node's addresses, and falls back to the bounded local allowance
//! when a node is unreachable. Connections and back-off per address are in `pool.rs`, Sentinel
//! discovery in `sentinel.rs`, reply parsing in `reply.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use redis::{IntoConnectionInfo, Value};
use tokio::task::JoinSet;

// What a `Client` is built from and reports: named here as well as at the crate root, so that
// `ratelimitd_client::client::Config` and the others resolve as `client::Client` does.
pub use crate::config::{Config, RouteKeyFn};
pub use crate::node::Node;
pub use crate::stats::Stats;

use crate::error::ClientError;
use crate::fallback::Fallback;
use crate::pool::{redis_url, Addr, Attempt};
use crate::reply::{parse_check, parse_limit, parse_tier};
use crate::ring::{default_route_key, Ring};
use crate::sentinel::SentinelState;
use crate::stats::{bump, Counters};
use crate::types::{Decision, Scope, Source, Window};

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
                let sentinel = SentinelState::new(spec, node.password.clone(), pool_size)?;
                states.push(NodeState {
                    name: node.ring_name().to_string(),
                    addrs: Vec::new(),
                    preferred: AtomicUsize::new(0),
                    sentinel: Some(sentinel),
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
        self.inner.counters.snapshot()
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
        let now = self.inner.now();
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
        parse_tier(value, node)
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

/// What every clone of a [`Client`] shares.
pub(crate) struct Inner {
    nodes: Vec<NodeState>,
    ring: Ring,
    pub(crate) config: Config,
    fallback: Mutex<Fallback>,
    pub(crate) counters: Counters,
    epoch: Instant,
}

/// One node at run time: its fixed addresses, or its Sentinel discovery state.
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

impl Inner {
    /// Nanoseconds since the client was built: the clock of back-offs and rediscovery.
    pub(crate) fn now(&self) -> u64 {
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
            return self.exec_sentinel(&state.name, sentinel, cmd).await;
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
            if addr.in_backoff(self.now()) {
                continue;
            }
            match addr.attempt(&self.config, cmd).await {
                Ok(v) => {
                    addr.mark_up();
                    if write && i != preferred {
                        state.preferred.store(i, Ordering::Relaxed);
                        bump(&self.counters.failovers);
                    }
                    return Ok((v, addr.text.clone()));
                }
                Err(Attempt::Transport(r)) => {
                    bump(&self.counters.transport_errors);
                    addr.back_off(self.now(), self.config.down_backoff);
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
}
