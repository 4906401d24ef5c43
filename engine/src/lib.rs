//! # ratelimitd-engine
//!
//! The rate-limit engine: where state lives, how a decision is made, which limit applies, and
//! what time it is. It knows nothing of RESP or sockets; the daemon in `src/` calls [`Engine`]
//! and turns its typed results into replies.
//!
//! ## Layout (public API fixed here; modules are the implementer's to arrange)
//! - `clock`: the [`Clock`] trait, [`SystemClock`] (monotonic, anchored to wall-clock time at
//!   start) and [`FakeClock`] for tests. No test sleeps.
//! - `limit`: [`Window`], [`Limit`], [`Scope`], [`EndpointPattern`] — validated once, at the edge
//!   ([`LimitError`] says why not).
//! - `table`: the limits and tiers table, published as an immutable snapshot through
//!   crossbeam-epoch so a check reads it without a lock; precedence resolution.
//! - `gcra`: the pure GCRA decision function (state = one theoretical arrival time).
//! - `store`: the sharded map from a 64-bit key fingerprint to its state.
//! - `cell`: `CL.THROTTLE`, with redis-cell's exact arithmetic, argument handling and errors.

use std::fmt;

/// Nanoseconds since the Unix epoch, as read from a [`Clock`].
pub type Nanos = u64;

// ---------------------------------------------------------------------------------------------
// Clock

/// Source of time. `now()` never goes backwards.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Nanos;
}

/// Monotonic clock anchored to the wall clock once, at construction: readings are
/// `wall_at_start + monotonic_elapsed`, so they look like Unix time but never jump when NTP
/// steps the system clock.
#[derive(Debug)]
pub struct SystemClock {/* anchor fields */}

impl SystemClock {
    pub fn new() -> SystemClock {
        todo!()
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        todo!()
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct FakeClock {/* Arc<AtomicU64> */}

impl FakeClock {
    pub fn new(start: Nanos) -> FakeClock {
        let _ = start;
        todo!()
    }
    pub fn advance(&self, by: std::time::Duration) {
        let _ = by;
        todo!()
    }
    pub fn set(&self, to: Nanos) {
        let _ = to;
        todo!()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Nanos {
        todo!()
    }
}

// ---------------------------------------------------------------------------------------------
// Limits

/// Why a limit, window or scope was refused. Display is a message without an error code
/// (the daemon prefixes `ERR `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("rate count must be between 1 and 4294967295")]
    CountOutOfRange,
    #[error("period must be between 1ms and 30d")]
    PeriodOutOfRange,
    #[error("burst must be between 0 and 4294967295")]
    BurstOutOfRange,
    #[error("a limit needs between 1 and {0} windows")]
    WindowCount(usize),
    #[error("endpoint pattern must not be empty")]
    EmptyPattern,
}

/// One window of a limit: `count` per `period`, plus `burst` extra instant capacity.
/// Valid by construction: 1 <= count <= 2^32-1, 1 ms <= period <= 30 d, burst <= 2^32-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {/* count: u32, period_ms: u64, burst: u32 */}

impl Window {
    pub fn new(count: u64, period_ms: u64, burst: u64) -> Result<Window, LimitError> {
        let _ = (count, period_ms, burst);
        todo!()
    }
    pub fn count(&self) -> u64 {
        todo!()
    }
    pub fn period_ms(&self) -> u64 {
        todo!()
    }
    pub fn burst(&self) -> u64 {
        todo!()
    }
    /// Instant capacity of a fresh key: count + burst (the reply's `limit`).
    pub fn capacity(&self) -> u64 {
        todo!()
    }
}

/// Maximum number of windows in one limit.
pub const MAX_WINDOWS: usize = 8;

/// A validated limit: 1..=[`MAX_WINDOWS`] windows, all charged together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {/* windows */}

impl Limit {
    pub fn new(windows: Vec<Window>) -> Result<Limit, LimitError> {
        let _ = windows;
        todo!()
    }
    pub fn windows(&self) -> &[Window] {
        todo!()
    }
}

/// An endpoint pattern: exact (`/api/users`) or, when it ends in `*`, a prefix (`/api/*`
/// matches every endpoint starting with `/api/`). Among matching patterns, an exact match wins,
/// then the longest prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointPattern {/* bytes */}

impl EndpointPattern {
    pub fn new(text: &[u8]) -> Result<EndpointPattern, LimitError> {
        let _ = text;
        todo!()
    }
    pub fn as_bytes(&self) -> &[u8] {
        todo!()
    }
    pub fn matches(&self, endpoint: &[u8]) -> bool {
        let _ = endpoint;
        todo!()
    }
}

/// Where a limit is configured. Precedence, most specific first: client+endpoint > client >
/// tier+endpoint > tier > endpoint > default.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Default,
    Client {
        id: Vec<u8>,
        endpoint: Option<EndpointPattern>,
    },
    Tier {
        name: Vec<u8>,
        endpoint: Option<EndpointPattern>,
    },
    Endpoint(EndpointPattern),
}

/// The canonical text of a scope, as RL.LIMIT LIST prints it and RL.LIMIT SET would take it:
/// `DEFAULT`, `CLIENT alice`, `CLIENT alice ENDPOINT /api/*`, `TIER gold`,
/// `TIER gold ENDPOINT /x`, `ENDPOINT /x` (ids shown lossily as UTF-8).
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// The answer to RL.CHECK / RL.PEEK. With several windows it describes the most restrictive
/// one (see the `check` docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResult {
    pub allowed: bool,
    /// count + burst of the reported window; -1 when no limit applies ("unlimited").
    pub limit: i64,
    /// How many more cost-1 requests would be admitted right now (after this one, if charged);
    /// -1 when unlimited.
    pub remaining: i64,
    /// -1 when allowed, and -1 when the cost can never fit (cost > capacity); otherwise the
    /// milliseconds (rounded up) after which the same check would succeed if nothing else
    /// consumed.
    pub retry_after_ms: i64,
    /// Milliseconds (rounded up) until the key is back to its full allowance in every window;
    /// 0 for a fresh or fully decayed key; -1 when unlimited.
    pub reset_after_ms: i64,
}

/// One window's state, for RL.EXPLAIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub window: Window,
    pub remaining: i64,
    pub reset_after_ms: i64,
}

/// What RL.EXPLAIN reports: the scope that applies (None: no limit, unlimited), the client's
/// tier if it has one, and each window's current state (nothing consumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub scope: Option<Scope>,
    pub tier: Option<Vec<u8>>,
    pub limit: Option<Limit>,
    pub windows: Vec<WindowState>,
}

/// The CL.THROTTLE reply: `[limited, limit, remaining, retry_after_s, reset_after_s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleResult {
    pub limited: bool,
    pub limit: i64,
    pub remaining: i64,
    pub retry_after_s: i64,
    pub reset_after_s: i64,
}

/// CL.THROTTLE arguments after redis-cell's own parsing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleArgs {
    pub max_burst: i64,
    pub count: i64,
    pub period_s: i64,
    pub quantity: i64,
}

/// A CL.THROTTLE error; Display is the complete error text redis-cell sends
/// (e.g. `Cell error: ...`), without the leading `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CellError(pub String);

/// Parse CL.THROTTLE's arguments (everything after the command name: key, max_burst, count,
/// period, [quantity]) exactly as redis-cell does, with its error texts.
pub fn parse_throttle_args(args: &[&[u8]]) -> Result<(Vec<u8>, ThrottleArgs), CellError> {
    let _ = args;
    todo!()
}

// ---------------------------------------------------------------------------------------------
// Engine

/// Sizing of an [`Engine`].
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Number of shards; rounded up to a power of two (default 256).
    pub shards: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { shards: 256 }
    }
}

/// The store, the limits table and the clock. All methods take `&self` and are safe to call
/// from many threads; a shard lock is held only for one key's update.
pub struct Engine<C: Clock = SystemClock> {
    _clock: C,
}

impl<C: Clock> Engine<C> {
    pub fn new(clock: C, config: EngineConfig) -> Engine<C> {
        let _ = (clock, config);
        todo!()
    }

    /// The engine's clock reading (for TIME and tests).
    pub fn now(&self) -> Nanos {
        todo!()
    }

    /// Check-and-consume `cost` for (client, endpoint) under the limit that applies.
    /// All windows are charged or none. Allowed: the reported window is the one with the fewest
    /// `remaining` after charging. Denied: the one needing the longest wait; `retry_after_ms`
    /// is the wait after which every window fits, or -1 if some window can never fit `cost`.
    /// `reset_after_ms` is the longest over all windows. Cost 0 behaves as a peek.
    pub fn check(&self, client: &[u8], endpoint: &[u8], cost: u64) -> CheckResult {
        let _ = (client, endpoint, cost);
        todo!()
    }

    /// Same reply as a cost-1 check, consuming nothing. A key decayed to full reads as fresh.
    pub fn peek(&self, client: &[u8], endpoint: &[u8]) -> CheckResult {
        let _ = (client, endpoint);
        todo!()
    }

    /// Restore the full allowance of (client, endpoint). True if any state was removed.
    pub fn reset(&self, client: &[u8], endpoint: &[u8]) -> bool {
        let _ = (client, endpoint);
        todo!()
    }

    pub fn explain(&self, client: &[u8], endpoint: &[u8]) -> Explanation {
        let _ = (client, endpoint);
        todo!()
    }

    /// Set (replace) the limit of a scope; applies to the next check.
    pub fn set_limit(&self, scope: Scope, limit: Limit) {
        let _ = (scope, limit);
        todo!()
    }
    pub fn get_limit(&self, scope: &Scope) -> Option<Limit> {
        let _ = scope;
        todo!()
    }
    /// True if the scope had a limit.
    pub fn del_limit(&self, scope: &Scope) -> bool {
        let _ = scope;
        todo!()
    }
    /// All limits, sorted by scope (Default, then clients, tiers, endpoints, each by name).
    pub fn list_limits(&self) -> Vec<(Scope, Limit)> {
        todo!()
    }

    pub fn set_tier(&self, client: &[u8], tier: &[u8]) {
        let _ = (client, tier);
        todo!()
    }
    pub fn get_tier(&self, client: &[u8]) -> Option<Vec<u8>> {
        let _ = client;
        todo!()
    }
    /// True if the client had a tier.
    pub fn del_tier(&self, client: &[u8]) -> bool {
        let _ = client;
        todo!()
    }

    /// CL.THROTTLE with redis-cell's semantics (quantity 0 peeks).
    pub fn throttle(&self, key: &[u8], args: ThrottleArgs) -> Result<ThrottleResult, CellError> {
        let _ = (key, args);
        todo!()
    }

    /// Live keys (state not yet decayed to full). May purge decayed entries as it counts.
    pub fn key_count(&self) -> u64 {
        todo!()
    }

    /// Approximate bytes used by the store's tables (capacity x entry size).
    pub fn memory_bytes(&self) -> u64 {
        todo!()
    }

    /// Drop all rate state (limits and tiers are kept, as they are configuration).
    pub fn flush_state(&self) {
        todo!()
    }

    /// Remove up to `budget` decayed entries, scanning shards round-robin; returns how many were
    /// removed. The daemon calls this periodically so idle keys do not pile up.
    pub fn purge_decayed(&self, budget: usize) -> usize {
        let _ = budget;
        todo!()
    }
}
