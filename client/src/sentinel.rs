//! Sentinel nodes: a node built with [`Node::sentinel`] has no fixed addresses; its primary is
//! the one its Redis Sentinels name (`SENTINEL get-master-addr-by-name`). This file holds the
//! node's discovery state and the calls that use it: run a command on the primary in use, and
//! ask the Sentinels again when that primary fails.
//!
//! The Sentinels are asked by hand over plain connections (not the `redis` crate's sentinel
//! feature) so that every timeout is ours and re-discovery is single-flight and rate-limited
//! per node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisConnectionInfo, Value};

use crate::client::Inner;
use crate::error::ClientError;
use crate::node::SentinelSpec;
use crate::pool::{redis_url, Addr, Attempt};
use crate::reply::parse_master_addr;
use crate::stats::bump;

#[cfg(doc)]
use crate::Node;

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
pub(crate) struct SentinelState {
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
    /// The discovery state for `spec`; the primaries it finds get `password` and `pool_size`
    /// connections. Fails on a Sentinel address that is not a valid URL.
    pub(crate) fn new(
        spec: &SentinelSpec,
        password: Option<String>,
        pool_size: usize,
    ) -> Result<SentinelState, ClientError> {
        let mut sentinels = Vec::with_capacity(spec.sentinels.len());
        for text in &spec.sentinels {
            let client = redis::Client::open(redis_url(text)).map_err(|source| {
                ClientError::InvalidAddress {
                    addr: text.clone(),
                    source,
                }
            })?;
            sentinels.push(SentinelAddr {
                text: text.clone(),
                client,
            });
        }
        Ok(SentinelState {
            master_name: spec.master_name.clone(),
            order: Mutex::new((0..sentinels.len()).collect()),
            sentinels,
            password,
            pool_size,
            current: Mutex::new(None),
            last_error: Mutex::new(String::new()),
            discovering: tokio::sync::Mutex::new(()),
            next_round: AtomicU64::new(0),
        })
    }

    /// The primary in use; `None` until a Sentinel has named one.
    pub(crate) fn current(&self) -> Option<Arc<Addr>> {
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

impl Inner {
    /// [`Inner::exec`] for a Sentinel node: the primary in use (discovered first if there is
    /// none, or it is in back-off); when it fails by transport or READONLY, the Sentinels are
    /// asked again (rate-limited) and the primary they name, if another, is tried once.
    /// Reads go to the primary too: Sentinel nodes list no replicas.
    pub(crate) async fn exec_sentinel(
        &self,
        node: &str,
        s: &SentinelState,
        cmd: &redis::Cmd,
    ) -> Result<(Value, String), ClientError> {
        let mut reason = String::new();
        let mut candidate = s.current();
        let mut tried: Option<Arc<Addr>> = None;
        // At most two addresses per call: the one in use and, when it fails, its successor.
        for _ in 0..2 {
            if candidate.as_ref().is_none_or(|a| a.in_backoff(self.now())) {
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
            if addr.in_backoff(self.now()) {
                reason = format!(
                    "{} (named by Sentinel) is in back-off after a failure",
                    addr.text
                );
                break;
            }
            match addr.attempt(&self.config, cmd).await {
                Ok(v) => {
                    addr.mark_up();
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
                        node: node.to_string(),
                        message,
                    })
                }
            }
            candidate = self.discover(s, Some(&addr)).await;
            tried = Some(addr);
        }
        Err(ClientError::Unavailable {
            node: node.to_string(),
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
        parse_master_addr(&reply).ok_or_else(|| {
            format!(
                "{}: get-master-addr-by-name {master_name} replied {reply:?}",
                sentinel.text
            )
        })
    }
}
