//! The daemon's one set of counters: what every request did, kept once and read by INFO,
//! `/metrics`, the once-a-second throttling log line and the snapshot's change count.
//!
//! ```text
//!  RESP / memcached connection ─┐  LocalCounters: plain integers, no atomics,
//!  HTTP request ────────────────┴► one per connection (per request for HTTP)
//!                                      │  absorbed once per read batch (Shared::flush)
//!                                      ▼
//!                                  Counters: Prometheus counters and histograms
//!                                      ├──► GET /metrics (src/metrics.rs renders them)
//!                                      ├──► INFO stats (minus CONFIG RESETSTAT's baseline)
//!                                      └──► the throttling summary (src/tasks.rs)
//!              LocalCounters::changes ───► Persist::changes (INFO rdb_changes_since_last_save,
//!                                          and whether the periodic snapshot runs)
//! ```
//!
//! Why local counters: a pipelined check takes about a hundred nanoseconds, and an atomic add
//! on a cache line that every worker writes would cost a sizeable part of it. A connection
//! counts in its own [`LocalCounters`] and adds them to the shared [`Counters`] once per read
//! batch.
//!
//! Why one set: every path (RESP, HTTP, memcached) counts through the same methods into the
//! same counters, so INFO and `/metrics` cannot disagree, and an HTTP check, a memcached `incr`
//! and an RL.RESET all mark the rate state changed for the periodic snapshot.
//!
//! Cardinality is bounded by construction: labels are command names from the command table,
//! four command families, the engine's scope kinds, a fixed list of HTTP routes and status
//! codes. No client id, endpoint or key ever becomes a label.

use prometheus::local::LocalHistogram;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use ratelimitd_engine::{Nanos, ScopeKind};
use std::sync::{Mutex, PoisonError};

/// The command families of the latency histogram: the checks (the hot path), the rest of the
/// RL.* API (limit management, which may wait for an fsync), CL.THROTTLE, and everything else.
/// Each command's family is a column of the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    RlCheck = 0,
    RlAdmin = 1,
    Cell = 2,
    Server = 3,
}

impl Family {
    /// Every family, in the order of their discriminants.
    pub const ALL: [Family; 4] = [
        Family::RlCheck,
        Family::RlAdmin,
        Family::Cell,
        Family::Server,
    ];

    /// The `family` label.
    pub fn label(self) -> &'static str {
        match self {
            Family::RlCheck => "rl_check",
            Family::RlAdmin => "rl_admin",
            Family::Cell => "cell",
            Family::Server => "server",
        }
    }
}

/// HTTP routes, for the `route` label of `ratelimitd_http_requests_total`.
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

/// How a TLS handshake ended, for `ratelimitd_tls_handshakes_total`'s `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Ok = 0,
    Failed = 1,
    TimedOut = 2,
}

impl Handshake {
    /// Every result, in the order of their discriminants.
    pub const ALL: [Handshake; 3] = [Handshake::Ok, Handshake::Failed, Handshake::TimedOut];

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            Handshake::Ok => "ok",
            Handshake::Failed => "failed",
            Handshake::TimedOut => "timed_out",
        }
    }
}

/// The totals INFO's `# Stats` section reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InfoTotals {
    pub connections_received: u64,
    pub rejected_connections: u64,
    pub commands_processed: u64,
    pub unknown_commands: u64,
    pub protocol_errors: u64,
    pub checks_allowed: u64,
    pub checks_denied: u64,
    /// TLS handshakes completed, failed, and timed out.
    pub tls_handshakes: u64,
    pub tls_handshake_failures: u64,
    pub tls_handshake_timeouts: u64,
}

impl InfoTotals {
    fn minus(self, base: InfoTotals) -> InfoTotals {
        InfoTotals {
            connections_received: self
                .connections_received
                .saturating_sub(base.connections_received),
            rejected_connections: self
                .rejected_connections
                .saturating_sub(base.rejected_connections),
            commands_processed: self
                .commands_processed
                .saturating_sub(base.commands_processed),
            unknown_commands: self.unknown_commands.saturating_sub(base.unknown_commands),
            protocol_errors: self.protocol_errors.saturating_sub(base.protocol_errors),
            checks_allowed: self.checks_allowed.saturating_sub(base.checks_allowed),
            checks_denied: self.checks_denied.saturating_sub(base.checks_denied),
            tls_handshakes: self.tls_handshakes.saturating_sub(base.tls_handshakes),
            tls_handshake_failures: self
                .tls_handshake_failures
                .saturating_sub(base.tls_handshake_failures),
            tls_handshake_timeouts: self
                .tls_handshake_timeouts
                .saturating_sub(base.tls_handshake_timeouts),
        }
    }
}

/// The process-wide counters, registered in the `/metrics` registry. Prometheus counters only
/// ever grow; INFO shows them minus the values at the last CONFIG RESETSTAT, as Redis resets
/// its own statistics.
pub struct Counters {
    /// By command index (the command table's order); the last slot counts unknown commands.
    commands: Vec<IntCounter>,
    command_errors: Vec<IntCounter>,
    /// By [`Family`].
    latency: Vec<Histogram>,
    checks_allowed: IntCounter,
    checks_denied: IntCounter,
    /// By [`ScopeKind`] (`ScopeKind::ALL`'s order).
    denied_by: Vec<IntCounter>,
    connections_received: IntCounter,
    connections_rejected: IntCounter,
    protocol_errors: IntCounter,
    http: IntCounterVec,
    /// By [`Handshake`].
    tls_handshakes: Vec<IntCounter>,
    /// INFO's zero point, set by CONFIG RESETSTAT.
    baseline: Mutex<InfoTotals>,
}

/// Register `metric` or panic at start-up: every name is a constant of this file, so a clash
/// is a programming error that the unit tests catch, never something input can cause.
pub(crate) fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        panic!("metric registration: {e}");
    }
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{e}")),
    )
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|e| panic!("{e}")),
    )
}

impl Counters {
    /// The counters, registered in `registry`. `command_names` are the command table's names
    /// in its order (a command's index is its position); one more slot counts unknown commands.
    pub fn new(registry: &Registry, command_names: &[&'static str]) -> Counters {
        let commands = counter_vec(
            registry,
            "ratelimitd_commands_total",
            "Commands executed, by command.",
            &["command"],
        );
        let errors = counter_vec(
            registry,
            "ratelimitd_command_errors_total",
            "Commands answered with an error, by command.",
            &["command"],
        );
        let latency = register(
            registry,
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
        let checks = counter_vec(
            registry,
            "ratelimitd_checks_total",
            "Rate-limit checks (RL.CHECK, CL.THROTTLE, HTTP), by result.",
            &["result"],
        );
        let denied = counter_vec(
            registry,
            "ratelimitd_checks_denied_by_scope_total",
            "Denied RL.CHECK and HTTP checks, by the kind of scope whose limit denied.",
            &["scope"],
        );
        let handshakes = counter_vec(
            registry,
            "ratelimitd_tls_handshakes_total",
            "TLS handshakes on the listeners, by result (ok, failed, timed_out).",
            &["result"],
        );
        let names = command_names.iter().copied().chain(["unknown"]);
        Counters {
            commands: names
                .clone()
                .map(|n| commands.with_label_values(&[n]))
                .collect(),
            command_errors: names.map(|n| errors.with_label_values(&[n])).collect(),
            latency: Family::ALL
                .iter()
                .map(|f| latency.with_label_values(&[f.label()]))
                .collect(),
            checks_allowed: checks.with_label_values(&["allowed"]),
            checks_denied: checks.with_label_values(&["denied"]),
            denied_by: ScopeKind::ALL
                .iter()
                .map(|k| denied.with_label_values(&[k.name()]))
                .collect(),
            connections_received: counter(
                registry,
                "ratelimitd_connections_received_total",
                "Connections accepted (RESP and memcached), refused ones included.",
            ),
            connections_rejected: counter(
                registry,
                "ratelimitd_connections_rejected_total",
                "Connections refused at --maxclients.",
            ),
            protocol_errors: counter(
                registry,
                "ratelimitd_protocol_errors_total",
                "Requests refused by the RESP or memcached framing (too large, malformed).",
            ),
            http: counter_vec(
                registry,
                "ratelimitd_http_requests_total",
                "HTTP requests, by route and status code.",
                &["route", "code"],
            ),
            tls_handshakes: Handshake::ALL
                .iter()
                .map(|h| handshakes.with_label_values(&[h.label()]))
                .collect(),
            baseline: Mutex::new(InfoTotals::default()),
        }
    }

    /// A per-connection recorder, with latency histograms; absorbed with [`Counters::absorb`].
    pub fn local(&self) -> LocalCounters {
        LocalCounters {
            latency: self.latency.iter().map(|h| h.local()).collect(),
            ..LocalCounters::default()
        }
    }

    /// The index of the unknown-command slot.
    pub fn unknown_index(&self) -> usize {
        self.commands.len().saturating_sub(1)
    }

    /// A connection was accepted (`refused`: and turned away at --maxclients).
    pub fn connection(&self, refused: bool) {
        self.connections_received.inc();
        if refused {
            self.connections_rejected.inc();
        }
    }

    /// Count one TLS handshake.
    pub fn tls_handshake(&self, result: Handshake) {
        if let Some(c) = self.tls_handshakes.get(result as usize) {
            c.inc();
        }
    }

    /// Count one HTTP response.
    pub fn http(&self, route: &str, code: u16) {
        let route = HTTP_ROUTES
            .iter()
            .find(|r| **r == route)
            .copied()
            .unwrap_or("other");
        self.http
            .with_label_values(&[route, status_label(code)])
            .inc();
    }

    /// Add what `local` counted, and reset it. Returns the rate-state changes it counted, for
    /// the snapshot's change count (see `Shared::flush`).
    pub fn absorb(&self, local: &mut LocalCounters) -> u64 {
        for (ours, n) in self.commands.iter().zip(local.calls.iter_mut()) {
            if *n > 0 {
                ours.inc_by(std::mem::take(n));
            }
        }
        for (ours, n) in self.command_errors.iter().zip(local.errors.iter_mut()) {
            if *n > 0 {
                ours.inc_by(std::mem::take(n));
            }
        }
        for h in &mut local.latency {
            h.flush();
        }
        for (ours, n) in [
            (&self.checks_allowed, &mut local.allowed),
            (&self.checks_denied, &mut local.denied),
            (&self.protocol_errors, &mut local.protocol_errors),
        ] {
            if *n > 0 {
                ours.inc_by(std::mem::take(n));
            }
        }
        for (ours, n) in self.denied_by.iter().zip(local.denied_by.iter_mut()) {
            if *n > 0 {
                ours.inc_by(std::mem::take(n));
            }
        }
        std::mem::take(&mut local.changes)
    }

    fn totals(&self) -> InfoTotals {
        InfoTotals {
            connections_received: self.connections_received.get(),
            rejected_connections: self.connections_rejected.get(),
            commands_processed: self.commands.iter().map(IntCounter::get).sum(),
            unknown_commands: self.commands.last().map_or(0, IntCounter::get),
            protocol_errors: self.protocol_errors.get(),
            checks_allowed: self.checks_allowed.get(),
            checks_denied: self.checks_denied.get(),
            tls_handshakes: self.handshakes(Handshake::Ok),
            tls_handshake_failures: self.handshakes(Handshake::Failed)
                + self.handshakes(Handshake::TimedOut),
            tls_handshake_timeouts: self.handshakes(Handshake::TimedOut),
        }
    }

    fn handshakes(&self, result: Handshake) -> u64 {
        self.tls_handshakes
            .get(result as usize)
            .map_or(0, IntCounter::get)
    }

    /// INFO's figures: the totals since start, or since the last CONFIG RESETSTAT.
    pub fn info(&self) -> InfoTotals {
        let base = *self.baseline.lock().unwrap_or_else(PoisonError::into_inner);
        self.totals().minus(base)
    }

    /// CONFIG RESETSTAT: INFO starts again from zero; `/metrics` counters keep growing.
    pub fn reset_info(&self) {
        *self.baseline.lock().unwrap_or_else(PoisonError::into_inner) = self.totals();
    }

    /// Denied checks since start, by scope kind.
    pub fn denied_by_scope(&self) -> [(ScopeKind, u64); ScopeKind::ALL.len()] {
        ScopeKind::ALL.map(|k| (k, self.denied_by.get(k as usize).map_or(0, IntCounter::get)))
    }
}

/// Status codes as static label values (the set the HTTP listener produces).
fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        503 => "503",
        _ => "other",
    }
}

/// What one connection (or one HTTP request) counted since it was last absorbed. Plain
/// integers: only its own task touches it.
///
/// Latency: a connection reads the engine's clock once per command, just before running it
/// (the same reading its rate check uses). A command's latency runs from that reading to the
/// next command's, or to one more reading at the end of the batch, so it covers its execution,
/// the encoding of its reply and the decoding of the request after it.
#[derive(Default)]
pub struct LocalCounters {
    /// By command index, grown on first use (an HTTP request never counts a command).
    calls: Vec<u64>,
    errors: Vec<u64>,
    /// By [`Family`]; empty unless made by [`Counters::local`].
    latency: Vec<LocalHistogram>,
    allowed: u64,
    denied: u64,
    denied_by: [u64; ScopeKind::ALL.len()],
    changes: u64,
    protocol_errors: u64,
    /// When the command being timed started (engine clock).
    started: Nanos,
    /// The family of the command timed last, still waiting for its end time.
    open: Option<Family>,
}

impl LocalCounters {
    /// One command ran (`index`: its place in the command table, or the unknown slot);
    /// `error`: it answered with an error.
    pub fn call(&mut self, index: usize, error: bool) {
        if self.calls.len() <= index {
            self.calls.resize(index + 1, 0);
            self.errors.resize(index + 1, 0);
        }
        self.calls[index] += 1;
        if error {
            self.errors[index] += 1;
        }
    }

    /// An RL.CHECK-style decision: an admission may have changed the rate state; a denial
    /// charges nothing, and is counted by the kind of scope that denied.
    pub fn check(&mut self, allowed: bool, scope: ScopeKind) {
        if allowed {
            self.allowed += 1;
            self.changes += 1;
        } else {
            self.denied += 1;
            self.denied_by[scope as usize] += 1;
        }
    }

    /// A CL.THROTTLE decision (its limit is the caller's, so there is no scope to count).
    pub fn throttle(&mut self, allowed: bool) {
        if allowed {
            self.allowed += 1;
            self.changes += 1;
        } else {
            self.denied += 1;
        }
    }

    /// `n` writes to the rate or key-value state that a snapshot would carry (key-value
    /// writes, RL.RESET, FLUSHALL).
    pub fn changed(&mut self, n: u64) {
        self.changes += n;
    }

    /// A request refused by the framing.
    pub fn protocol_error(&mut self) {
        self.protocol_errors += 1;
    }

    /// A command starts at `now`: the previous command's latency ends here.
    pub fn begin(&mut self, now: Nanos) {
        self.close(now);
        self.started = now;
    }

    /// The command begun last belongs to `family`; its latency ends at the next
    /// [`LocalCounters::begin`] or [`LocalCounters::close`].
    pub fn timed(&mut self, family: Family) {
        self.open = Some(family);
    }

    /// Whether a command still waits for its end time (then read the clock and `close`).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The batch ends at `now`: the last command's latency ends here.
    pub fn close(&mut self, now: Nanos) {
        if let Some(h) = self
            .open
            .take()
            .and_then(|f| self.latency.get_mut(f as usize))
        {
            h.observe(now.saturating_sub(self.started) as f64 / 1e9);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_kinds_index_their_counters() {
        for (i, k) in ScopeKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        for (i, f) in Family::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
    }

    #[test]
    fn info_and_metrics_read_the_same_counters_and_reset_only_info() {
        let registry = Registry::new();
        let counters = Counters::new(&registry, &["ping", "rl.check"]);
        let mut local = counters.local();
        local.call(1, false);
        local.call(1, true);
        local.call(counters.unknown_index(), true);
        local.check(true, ScopeKind::Endpoint);
        local.check(false, ScopeKind::Endpoint);
        local.throttle(true);
        local.changed(2);
        assert_eq!(
            counters.absorb(&mut local),
            4,
            "two admissions and two writes"
        );
        assert_eq!(
            counters.absorb(&mut local),
            0,
            "absorbing resets the local set"
        );
        let info = counters.info();
        assert_eq!(info.commands_processed, 3);
        assert_eq!(info.unknown_commands, 1);
        assert_eq!((info.checks_allowed, info.checks_denied), (2, 1));
        let denied = counters.denied_by_scope();
        assert_eq!(
            denied[ScopeKind::Endpoint as usize],
            (ScopeKind::Endpoint, 1)
        );
        counters.reset_info();
        assert_eq!(counters.info(), InfoTotals::default());
        let text = {
            use prometheus::Encoder;
            let mut out = Vec::new();
            let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
            String::from_utf8(out).unwrap_or_default()
        };
        assert!(
            text.contains("ratelimitd_checks_total{result=\"allowed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ratelimitd_commands_total{command=\"rl.check\"} 2"),
            "{text}"
        );
    }
}
