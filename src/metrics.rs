//! The Prometheus exposition that `GET /metrics` serves: the registry the counters live in
//! (src/counters.rs) and the gauges that describe the whole daemon (keys, memory, connections,
//! replication, persistence), which are read at scrape time rather than maintained.
//!
//! It takes the pieces it reads ([`Scrape`]) rather than the whole shared state, so that it
//! sits below that state.

use crate::clients::ClientRegistry;
use crate::counters::register;
use crate::persist::Persist;
use crate::repl::Repl;
use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use ratelimitd_engine::{Clock, Engine};
use std::sync::{Mutex, PoisonError};

/// What a scrape reads.
pub struct Scrape<'a, C: Clock> {
    pub engine: &'a Engine<C>,
    pub clients: &'a ClientRegistry,
    pub repl: &'a Repl,
    pub persist: &'a Persist,
}

/// The registry and the scrape-time gauges.
pub struct Metrics {
    registry: Registry,
    keys: IntGauge,
    expired: IntCounter,
    evicted: IntCounter,
    refused: IntCounter,
    /// Serialises scrapes: engine counters are copied into ours as deltas.
    scrape: Mutex<()>,
    memory: IntGauge,
    rss: IntGauge,
    connections: IntGauge,
    limits: IntGauge,
    role: IntGaugeVec,
    repl_offset: IntGauge,
    connected_replicas: IntGauge,
    repl_lag: IntGauge,
    repl_link_up: IntGauge,
    log_bytes: IntGauge,
    log_records: IntGauge,
    last_save: IntGauge,
    last_save_ok: IntGauge,
    changes_since_save: IntGauge,
    persist_errors: IntGauge,
    snapshot_load_ok: IntGauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let gauge = |name: &str, help: &str| -> IntGauge {
            register(
                &r,
                IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let counter = |name: &str, help: &str| -> IntCounter {
            register(
                &r,
                IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let role = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "ratelimitd_replication_role",
                    "1 for the role this process has (master or replica).",
                ),
                &["role"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let build = register(
            &r,
            IntGaugeVec::new(
                Opts::new("ratelimitd_build_info", "Always 1; the version is a label."),
                &["version"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            keys: gauge("ratelimitd_keys", "Live rate-limit keys (as DBSIZE)."),
            expired: counter(
                "ratelimitd_expired_keys_total",
                "Keys dropped because they decayed back to a full allowance.",
            ),
            evicted: counter(
                "ratelimitd_evicted_keys_total",
                "Keys dropped to stay within --max-keys / --maxmemory.",
            ),
            refused: counter(
                "ratelimitd_refused_keys_total",
                "New keys refused at the bound by a refuse-* --maxmemory-policy.",
            ),
            scrape: Mutex::new(()),
            memory: gauge(
                "ratelimitd_memory_bytes",
                "Memory used by rate state, as the engine accounts it (INFO used_memory).",
            ),
            rss: gauge(
                "ratelimitd_resident_memory_bytes",
                "Resident set size of the process.",
            ),
            connections: gauge(
                "ratelimitd_connected_clients",
                "Open RESP and memcached connections.",
            ),
            limits: gauge("ratelimitd_limits", "Configured limits (RL.LIMIT LIST)."),
            role,
            repl_offset: gauge(
                "ratelimitd_replication_offset",
                "Replication offset (master_repl_offset on a primary, the applied offset on a replica).",
            ),
            connected_replicas: gauge(
                "ratelimitd_connected_replicas",
                "Replicas connected to this primary.",
            ),
            repl_lag: gauge(
                "ratelimitd_replication_lag_seconds",
                "On a primary: seconds since the slowest replica last acknowledged (INFO slaveN lag).",
            ),
            repl_link_up: gauge(
                "ratelimitd_replication_link_up",
                "On a replica: 1 while the link to the primary is up, else 0 (1 on a primary).",
            ),
            log_bytes: gauge(
                "ratelimitd_limits_log_bytes",
                "Size of the limits log on disk.",
            ),
            log_records: gauge(
                "ratelimitd_limits_log_live_records",
                "Limit and tier records a compaction would keep.",
            ),
            last_save: gauge(
                "ratelimitd_last_save_timestamp_seconds",
                "Unix time of the last successful snapshot (LASTSAVE).",
            ),
            last_save_ok: gauge(
                "ratelimitd_last_save_success",
                "1 if the last snapshot attempt succeeded, else 0.",
            ),
            changes_since_save: gauge(
                "ratelimitd_changes_since_last_save",
                "Writes to the rate and key-value state since the last snapshot.",
            ),
            persist_errors: gauge(
                "ratelimitd_persistence_errors",
                "Failed limits-log writes and snapshots since start.",
            ),
            snapshot_load_ok: gauge(
                "ratelimitd_snapshot_load_success",
                "1 if the rate-state snapshot loaded at start (or there was none), 0 if it was rejected.",
            ),
            registry: r,
        }
    }

    /// The registry the counters register in (src/counters.rs).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of everything, with the scrape-time gauges refreshed.
    pub fn render<C: Clock>(&self, s: &Scrape<'_, C>) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.keys.set(to_i64(s.engine.key_count()));
        let stats = s.engine.stats();
        for (ours, theirs) in [
            (&self.expired, stats.expired),
            (&self.evicted, stats.evicted),
            (&self.refused, stats.refused),
        ] {
            if theirs > ours.get() {
                ours.inc_by(theirs - ours.get());
            }
        }
        self.memory.set(to_i64(s.engine.memory_bytes()));
        self.rss.set(to_i64(crate::process::rss_bytes()));
        self.connections.set(to_i64(s.clients.len() as u64));
        self.limits.set(to_i64(s.engine.list_limits().len() as u64));
        let replica = s.repl.is_replica();
        self.role
            .with_label_values(&["master"])
            .set(i64::from(!replica));
        self.role
            .with_label_values(&["replica"])
            .set(i64::from(replica));
        let view = s.repl.view();
        self.repl_offset.set(to_i64(view.offset));
        self.connected_replicas
            .set(to_i64(view.replicas.len() as u64));
        self.repl_lag.set(to_i64(
            view.replicas.iter().map(|r| r.lag_s).max().unwrap_or(0),
        ));
        self.repl_link_up
            .set(i64::from(!replica || s.repl.link_up()));
        let p = s.persist.status();
        self.log_bytes.set(to_i64(p.log_bytes));
        self.log_records.set(to_i64(p.log_live_records));
        self.last_save.set(p.last_save_unix);
        self.last_save_ok.set(p.last_save_ok as i64);
        self.changes_since_save.set(to_i64(p.changes_since_save));
        self.persist_errors.set(to_i64(p.errors));
        self.snapshot_load_ok.set(p.snapshot_load_ok as i64);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}
