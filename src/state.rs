//! The state every connection, listener and background task shares: the bottom of the
//! daemon's house. It holds the engine and the sub-states beside it, and imports only the
//! modules that define those (none of which imports this one back).
//!
//! A sub-state that needs another one is handed the piece it needs (`Repl::promote` takes the
//! engine, `Metrics::render` takes a [`Scrape`]), never the whole of [`Shared`].

use crate::acl::{Catalog, Users};
use crate::bounds::ClientBounds;
use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::counters::{Counters, LocalCounters};
use crate::metrics::{Metrics, Scrape};
use crate::persist::Persist;
use crate::pubsub::PubSub;
use crate::repl::Repl;
use crate::stream::Stream;
use crate::tls::{HandshakeError, Tls};
use ratelimitd_engine::{AnyClock, Engine, EngineConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The ports actually bound (they differ from the configured ones when those were 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The plain-text RESP port; 0 with `--plain-port no` (as Redis reports `port 0`).
    pub resp: u16,
    pub http: Option<u16>,
    pub memcached: Option<u16>,
    /// The TLS RESP port (`--tls-port`).
    pub tls: Option<u16>,
    /// The TLS memcached port (`--memcached-tls-port`).
    pub memcached_tls: Option<u16>,
}

/// State every connection shares.
pub struct Shared {
    pub config: Config,
    pub engine: Engine<AnyClock>,
    /// What requests did (INFO, /metrics, the snapshot's change count).
    pub counters: Counters,
    /// The /metrics registry and its scrape-time gauges.
    pub metrics: Metrics,
    pub clients: ClientRegistry,
    /// 40 hex characters, new for every process start (INFO's run_id).
    pub run_id: String,
    pub started: Instant,
    pub ports: Ports,
    /// The data directory: limits log and snapshots (src/persist.rs).
    pub persist: Persist,
    /// True while serving; false until start-up has loaded everything and once shutdown
    /// began (GET /readyz).
    pub ready: AtomicBool,
    /// Replication: role, ids, backlog, attached replicas, the link (src/repl.rs).
    pub repl: Repl,
    /// Pub/sub channels and patterns (src/pubsub.rs).
    pub pubsub: PubSub,
    /// Users and what they may do (src/acl/).
    pub users: Users,
    /// --protected-mode (CONFIG SET protected-mode).
    pub protected_mode: AtomicBool,
    /// Idle and sign-in timeouts, output-buffer limits (src/bounds.rs).
    pub bounds: Arc<ClientBounds>,
    /// The certificates in force and the handshakes under way (src/tls.rs).
    pub tls: Tls,
}

/// What a client from another host hears while protected mode refuses it.
pub const DENIED: &str = "DENIED ratelimitd is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to ratelimitd you may adopt one of the following solutions: 1) Set up an authentication password for the default user (--requirepass, or ACL SETUSER default >password) and connect with it. 2) Disable protected mode by sending the command 'CONFIG SET protected-mode no' from the loopback interface, making sure the daemon is not reachable from the internet if you do so. 3) Restart the daemon with the '--protected-mode no' option.";

impl Shared {
    /// The shared state of a daemon whose listeners are bound on `ports`, with `persist`
    /// opened and the engine reading `clock`. `command_names` are the command table's names
    /// in its order (the counters' labels), `catalog` what ACL rules can name, `tls` the
    /// certificates loaded from the flags.
    pub fn new(
        config: Config,
        ports: Ports,
        persist: Persist,
        clock: AnyClock,
        command_names: &[&'static str],
        catalog: Catalog,
        tls: Tls,
    ) -> Shared {
        // Before the engine allocates anything (process-wide; engine/src/arena.rs).
        ratelimitd_engine::arena::set_enabled(config.huge_pages == "yes");
        let engine = Engine::new(
            clock,
            EngineConfig {
                shards: config.shards,
                // 0 means "no bound", as in Redis (and as CONFIG SET reads it).
                max_keys: config.max_keys.filter(|&n| n > 0),
                max_memory: config.maxmemory.map(|m| m.0).filter(|&b| b > 0),
                policy: config.maxmemory_policy.0,
            },
        );
        let bounds = Arc::new(ClientBounds::new(config.timeout, config.auth_timeout));
        // The flag's parser has checked it (config::parse_output_limits).
        let _ = bounds.set_output_limits(&config.client_output_buffer_limit);
        let repl = Repl::new(&config, bounds.clone());
        let protected = config.protected_mode == "yes";
        let metrics = Metrics::new();
        let counters = Counters::new(metrics.registry(), command_names);
        Shared {
            config,
            engine,
            counters,
            metrics,
            clients: ClientRegistry::default(),
            run_id: crate::process::new_run_id(),
            started: Instant::now(),
            ports,
            persist,
            ready: AtomicBool::new(false),
            repl,
            pubsub: PubSub::new(bounds.clone()),
            bounds,
            users: Users::new(catalog),
            protected_mode: AtomicBool::new(protected),
            tls,
        }
    }

    /// The server side of a TLS handshake on a connection from `peer`, counted (INFO,
    /// /metrics); None when it failed or timed out (logged at debug: any client can cause it).
    pub async fn tls_accept(
        &self,
        tcp: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
    ) -> Option<Stream> {
        let result = self.tls.accept(tcp).await;
        self.counters.tls_handshake(match &result {
            Ok(_) => crate::counters::Handshake::Ok,
            Err(HandshakeError::TimedOut(_)) => crate::counters::Handshake::TimedOut,
            Err(_) => crate::counters::Handshake::Failed,
        });
        result
            .map_err(|e| tracing::debug!("TLS handshake with {peer}: {e}"))
            .ok()
    }

    /// Add what a connection (or an HTTP request) counted to the process's counters, and its
    /// writes to the snapshot's change count.
    pub fn flush(&self, local: &mut LocalCounters) {
        let changes = self.counters.absorb(local);
        if changes > 0 {
            self.persist.changes.fetch_add(changes, Ordering::Relaxed);
        }
    }

    /// The Prometheus text of `GET /metrics`.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&Scrape {
            engine: &self.engine,
            clients: &self.clients,
            repl: &self.repl,
            persist: &self.persist,
        })
    }

    /// Whether protected mode refuses a client from `peer`: it is on, the default user needs
    /// no password, and the peer is not this host.
    pub fn refuses(&self, peer: std::net::SocketAddr) -> bool {
        self.protected_mode.load(Ordering::Relaxed)
            && self.users.default_open()
            && !peer.ip().to_canonical().is_loopback()
    }

    /// Ready to serve (GET /readyz): start-up is done and shutdown has not begun, and on a
    /// replica the link to the primary is up (until then it would serve stale limits).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && (!self.repl.is_replica() || self.repl.link_up())
    }
}
