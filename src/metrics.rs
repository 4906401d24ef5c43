//! Prometheus metrics: what they are, how the command path feeds them cheaply, and the text
//! that `GET /metrics` serves.
//!
//! Cost on the hot path: a connection counts commands, errors and latencies in a
//! [`LocalMetrics`] (plain integers and prometheus `LocalHistogram`s, no atomics) and flushes
//! it once per read batch, exactly as `stats::LocalStats` does for INFO. Latency is measured
//! for every command with one read of the engine's clock per command, taken just before it
//! runs (the same reading its rate check uses): a command's latency runs from that reading to
//! the next command's, or to one more reading at the end of the batch, so it covers its
//! execution, its reply's encoding and the decoding of the request after it. Gauges that describe
//! the whole daemon (keys, memory, connections) are read at scrape time, not maintained.
//!
//! Cardinality is bounded by construction: labels are command names from the command table,
//! four command families, a fixed list of scope kinds, a fixed list of HTTP routes and status
//! codes. No client id, endpoint or key ever becomes a label.

use crate::cmd::table::{CmdId, COMMANDS};
use crate::server::Shared;
use prometheus::local::LocalHistogram;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use ratelimitd_engine::{Nanos, Scope};
use ratelimitd_protocol::Reply;

/// The kinds of scope a check can be decided by, as the `scope` label says them.
/// `none` is a check no limit applied to.
pub const SCOPE_KINDS: [&str; 7] = [
    "client_endpoint",
    "client",
    "tier_endpoint",
    "tier",
    "endpoint",
    "default",
    "none",
];

/// The index in [`SCOPE_KINDS`] of the scope that decided a check.
pub fn scope_kind(scope: Option<&Scope>) -> usize {
    match scope {
        Some(Scope::Client {
            endpoint: Some(_), ..
        }) => 0,
        Some(Scope::Client { .. }) => 1,
        Some(Scope::Tier {
            endpoint: Some(_), ..
        }) => 2,
        Some(Scope::Tier { .. }) => 3,
        Some(Scope::Endpoint(_)) => 4,
        Some(Scope::Default) => 5,
        None => 6,
    }
}

/// Command families of the latency histogram: the checks (the hot path), the rest of RL.*
/// (limit management, which may wait for an fsync), CL.THROTTLE, and everything else.
const FAMILIES: [&str; 4] = ["rl_check", "rl_admin", "cell", "server"];

fn family_of(name: &str) -> usize {
    if name == "rl.check" || name == "rl.peek" {
        0
    } else if name.starts_with("rl.") {
        1
    } else if name.starts_with("cl.") {
        2
    } else {
        3
    }
}

/// HTTP routes, for the `route` label (anything else is `other`).
pub const HTTP_ROUTES: [&str; 6] = [
    "metrics",
    "healthz",
    "readyz",
    "check",
    "forward_auth",
    "other",
];

/// Latency buckets, in seconds: 1 µs to 100 ms. A check takes about a microsecond; the top
/// buckets catch fsyncs (limit changes) and stalls.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.01,
    0.025,
    0.1,
];

/// The process-wide registry and the handles the command path uses, resolved once so that no
/// label lookup happens per command.
pub struct Metrics {
    registry: Registry,
    /// Indexed by `CmdId as usize`; the last slot counts unknown commands.
    commands: Vec<IntCounter>,
    command_errors: Vec<IntCounter>,
    /// Indexed like `commands`: the family of each command.
    families: Vec<usize>,
    latency: Vec<Histogram>,
    checks_allowed: IntCounter,
    checks_denied: IntCounter,
    denied_scope: Vec<IntCounter>,
    http: IntCounterVec,
    keys: IntGauge,
    expired: IntCounter,
    evicted: IntCounter,
    refused: IntCounter,
    /// Serialises scrapes: engine counters are copied into ours as deltas.
    scrape: std::sync::Mutex<()>,
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

/// Register `metric` or panic at start-up: every name is a constant of this file, so a clash
/// is a programming error that the unit test below catches, never something input can cause.
fn reg<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        panic!("metric registration: {e}");
    }
    metric
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Metrics {
        let r = Registry::new();
        let slots = COMMANDS.iter().map(|c| c.id as usize).max().unwrap_or(0) + 2;
        let commands_vec = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "ratelimitd_commands_total",
                    "Commands executed, by command.",
                ),
                &["command"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let errors_vec = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "ratelimitd_command_errors_total",
                    "Commands answered with an error, by command.",
                ),
                &["command"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let latency_vec = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "ratelimitd_command_duration_seconds",
                    "Time to decode and execute one command, by command family.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["family"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut names = vec!["unknown"; slots];
        let mut families = vec![3; slots];
        for c in COMMANDS {
            names[c.id as usize] = c.name;
            families[c.id as usize] = family_of(c.name);
        }
        let commands = names
            .iter()
            .map(|n| commands_vec.with_label_values(&[*n]))
            .collect();
        let command_errors = names
            .iter()
            .map(|n| errors_vec.with_label_values(&[*n]))
            .collect();
        let latency = FAMILIES
            .iter()
            .map(|f| latency_vec.with_label_values(&[*f]))
            .collect();
        let checks = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "ratelimitd_checks_total",
                    "Rate-limit checks (RL.CHECK, CL.THROTTLE, HTTP), by result.",
                ),
                &["result"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let denied_vec = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "ratelimitd_checks_denied_by_scope_total",
                    "Denied RL.CHECK and HTTP checks, by the kind of scope whose limit denied.",
                ),
                &["scope"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let http = reg(
            &r,
            IntCounterVec::new(
                opts(
                    "ratelimitd_http_requests_total",
                    "HTTP requests, by route and status code.",
                ),
                &["route", "code"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let gauge = |name: &str, help: &str| -> IntGauge {
            reg(
                &r,
                IntGauge::with_opts(opts(name, help)).unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let role = reg(
            &r,
            IntGaugeVec::new(
                opts(
                    "ratelimitd_replication_role",
                    "1 for the role this process has (master or replica).",
                ),
                &["role"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let build = reg(
            &r,
            IntGaugeVec::new(
                opts("ratelimitd_build_info", "Always 1; the version is a label."),
                &["version"],
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            commands,
            command_errors,
            families,
            latency,
            checks_allowed: checks.with_label_values(&["allowed"]),
            checks_denied: checks.with_label_values(&["denied"]),
            denied_scope: SCOPE_KINDS
                .iter()
                .map(|k| denied_vec.with_label_values(&[*k]))
                .collect(),
            http,
            keys: gauge("ratelimitd_keys", "Live rate-limit keys (as DBSIZE)."),
            expired: reg(
                &r,
                IntCounter::with_opts(opts(
                    "ratelimitd_expired_keys_total",
                    "Keys dropped because they decayed back to a full allowance.",
                ))
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            evicted: reg(
                &r,
                IntCounter::with_opts(opts(
                    "ratelimitd_evicted_keys_total",
                    "Keys dropped to stay within --max-keys / --maxmemory.",
                ))
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            refused: reg(
                &r,
                IntCounter::with_opts(opts(
                    "ratelimitd_refused_keys_total",
                    "New keys refused at the bound by a refuse-* --maxmemory-policy.",
                ))
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            scrape: std::sync::Mutex::new(()),
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
                "Open RESP connections.",
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
                "Checks that changed rate state since the last snapshot (approximate).",
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

    /// A per-connection recorder, flushed once per batch with [`LocalMetrics::flush`].
    pub fn local(&self) -> LocalMetrics {
        LocalMetrics {
            calls: vec![0; self.commands.len()],
            errors: vec![0; self.commands.len()],
            latency: self.latency.iter().map(|h| h.local()).collect(),
            families: self.families.clone(),
            last: 0,
            open: None,
        }
    }

    /// Count a check made outside the RESP path (the HTTP API).
    pub fn check(&self, allowed: bool, scope: usize) {
        if allowed {
            self.checks_allowed.inc();
        } else {
            self.checks_denied.inc();
            if let Some(c) = self.denied_scope.get(scope) {
                c.inc();
            }
        }
    }

    /// Count one HTTP response.
    pub fn http(&self, route: &str, code: u16) {
        let route = HTTP_ROUTES
            .iter()
            .find(|r| **r == route)
            .copied()
            .unwrap_or("other");
        self.http.with_label_values(&[route, itoa_code(code)]).inc();
    }

    /// Denied checks so far, by scope kind (for the once-a-second log summary).
    pub fn denied_by_scope(&self) -> Vec<(&'static str, u64)> {
        SCOPE_KINDS
            .iter()
            .zip(&self.denied_scope)
            .map(|(k, c)| (*k, c.get()))
            .collect()
    }

    /// The Prometheus text exposition of everything, with the scrape-time gauges refreshed.
    pub fn render(&self, shared: &Shared) -> String {
        let _one_at_a_time = self.scrape.lock();
        self.keys.set(to_i64(shared.engine.key_count()));
        let stats = shared.engine.stats();
        for (ours, theirs) in [
            (&self.expired, stats.expired),
            (&self.evicted, stats.evicted),
            (&self.refused, stats.refused),
        ] {
            if theirs > ours.get() {
                ours.inc_by(theirs - ours.get());
            }
        }
        self.memory.set(to_i64(shared.engine.memory_bytes()));
        self.rss.set(to_i64(crate::cmd::server::rss_bytes()));
        self.connections.set(to_i64(shared.clients.len() as u64));
        self.limits
            .set(to_i64(shared.engine.list_limits().len() as u64));
        let replica = shared.repl.is_replica();
        self.role
            .with_label_values(&["master"])
            .set(i64::from(!replica));
        self.role
            .with_label_values(&["replica"])
            .set(i64::from(replica));
        let view = shared.repl.view();
        self.repl_offset.set(to_i64(view.offset));
        self.connected_replicas
            .set(to_i64(view.replicas.len() as u64));
        self.repl_lag.set(to_i64(
            view.replicas.iter().map(|r| r.lag_s).max().unwrap_or(0),
        ));
        self.repl_link_up.set(i64::from(
            !replica || crate::cmd::replication::link_up(shared),
        ));
        let p = shared.persist.status();
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

/// Status codes as static label values (the set the HTTP listener can produce).
fn itoa_code(code: u16) -> &'static str {
    match code {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        503 => "503",
        _ => "other",
    }
}

/// What one connection counted since its last flush.
pub struct LocalMetrics {
    calls: Vec<u64>,
    errors: Vec<u64>,
    latency: Vec<LocalHistogram>,
    /// The family of each command slot (a copy of [`Metrics`]'s table: a few dozen bytes).
    families: Vec<usize>,
    /// When the command being timed started (engine clock).
    last: Nanos,
    /// The latency histogram of the command recorded last, still waiting for its end time.
    open: Option<usize>,
}

impl LocalMetrics {
    /// A command starts at `now` (engine clock; the connection reads it once per command and
    /// the engine's check uses the same reading): this ends the previous command's latency.
    pub fn begin(&mut self, now: Nanos) {
        self.close(now);
        self.last = now;
    }

    /// The batch ends at `now`: the last command's latency ends here. Only call it (and read
    /// the clock) if [`LocalMetrics::is_open`].
    pub fn close(&mut self, now: Nanos) {
        if let Some(h) = self.open.take().and_then(|f| self.latency.get_mut(f)) {
            h.observe(now.saturating_sub(self.last) as f64 / 1e9);
        }
    }

    /// Whether a recorded command still waits for its end time.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Record one executed command: `id` as dispatch saw it (None: unknown command) and
    /// whether its reply is an error. Its latency, from its [`LocalMetrics::begin`], ends at
    /// the next command's `begin` or at [`LocalMetrics::close`]: one clock read per command
    /// serves both the end of one and the start of the next.
    pub fn record(&mut self, id: Option<CmdId>, reply: &Reply) {
        let slot = id
            .map(|id| id as usize)
            .unwrap_or(self.calls.len().saturating_sub(1))
            .min(self.calls.len().saturating_sub(1));
        if let Some(c) = self.calls.get_mut(slot) {
            *c += 1;
        }
        if matches!(reply, Reply::Error(_)) {
            if let Some(e) = self.errors.get_mut(slot) {
                *e += 1;
            }
        }
        self.open = Some(self.families.get(slot).copied().unwrap_or(3));
    }

    /// Add the batch to the shared metrics. `local` is the batch's INFO counters, read for the
    /// check results before they are flushed (and reset) themselves.
    pub fn flush(&mut self, shared: &Shared, local: &crate::stats::LocalStats) {
        let metrics = &shared.metrics;
        if local.allowed > 0 {
            // Every admitted check may have changed rate state worth a snapshot.
            shared
                .persist
                .changes
                .fetch_add(local.allowed, std::sync::atomic::Ordering::Relaxed);
        }
        for (i, n) in self.calls.iter_mut().enumerate() {
            if *n > 0 {
                metrics.commands[i].inc_by(*n);
                *n = 0;
            }
        }
        for (i, n) in self.errors.iter_mut().enumerate() {
            if *n > 0 {
                metrics.command_errors[i].inc_by(*n);
                *n = 0;
            }
        }
        for h in &mut self.latency {
            h.flush();
        }
        if local.allowed > 0 {
            metrics.checks_allowed.inc_by(local.allowed);
        }
        if local.denied > 0 {
            metrics.checks_denied.inc_by(local.denied);
        }
        for (i, n) in local.denied_scope.iter().enumerate() {
            if *n > 0 {
                if let Some(c) = metrics.denied_scope.get(i) {
                    c.inc_by(*n);
                }
            }
        }
    }
}
