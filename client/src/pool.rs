//! One address of a node: its pool of multiplexed connections, its back-off after a failure,
//! and one attempt to run a command there, with the failure classified for the failover loop.
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
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, Value};

use crate::config::Config;

/// One address of a node, with its connection pool and back-off.
pub(crate) struct Addr {
    /// The address as the caller wrote it (or `host:port` as a Sentinel named it).
    pub(crate) text: String,
    client: redis::Client,
    /// Each slot holds a live connection or nothing. A tokio mutex because the connect is
    /// awaited under it: concurrent callers wait for one dial instead of each dialing.
    pool: Vec<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
    next_slot: AtomicUsize,
    /// Skip this address until this time (ns since the client's epoch); 0 = not down.
    down_until: AtomicU64,
}

impl Addr {
    pub(crate) fn new(text: String, client: redis::Client, pool_size: usize) -> Addr {
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

    /// Whether the address is in its back-off after a transport failure at `now` (ns since
    /// the client's epoch).
    pub(crate) fn in_backoff(&self, now: u64) -> bool {
        self.down_until.load(Ordering::Relaxed) > now
    }

    /// Skips the address for `backoff` from `now`.
    pub(crate) fn back_off(&self, now: u64, backoff: Duration) {
        let backoff = u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX);
        self.down_until
            .store(now.saturating_add(backoff).max(1), Ordering::Relaxed);
    }

    /// Ends the back-off: the address answered.
    pub(crate) fn mark_up(&self) {
        self.down_until.store(0, Ordering::Relaxed);
    }

    /// One try on this address: take (or open) a pooled connection and run the command.
    pub(crate) async fn attempt(
        &self,
        config: &Config,
        cmd: &redis::Cmd,
    ) -> Result<Value, Attempt> {
        let slot = &self.pool[self.next_slot.fetch_add(1, Ordering::Relaxed) % self.pool.len()];
        let mut conn = {
            let mut guard = slot.lock().await;
            match guard.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let cfg = AsyncConnectionConfig::new()
                        .set_connection_timeout(config.connect_timeout)
                        .set_response_timeout(config.command_timeout);
                    let c = self
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

/// What went wrong with one attempt on one address, for the failover loop.
pub(crate) enum Attempt {
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

/// A `redis://` URL for an address given as `host:port` (a URL is kept as it is).
pub(crate) fn redis_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("redis://{addr}/")
    }
}
