//! What the engine answers: the result of a check ([`CheckResult`]), of RL.EXPLAIN
//! ([`Explanation`]), a batch's requests ([`CheckRequest`]), a prefetch's hint
//! ([`Prefetched`]) and the counters of [`EngineStats`].
//!
//! Separate from the engine's methods because these are plain values the daemon matches on
//! and encodes; nothing here reads state.

use crate::limit::{Limit, Scope, Window};

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
    /// Which kind of scope supplied the limit (for metrics, whose labels must not carry ids).
    pub scope: ScopeKind,
    /// Index, in the limit's windows, of the window `limit` describes (0 when unlimited): the
    /// HTTP check names it in its RateLimit-Policy header. Two windows can share a capacity
    /// (10/1s and 10/1m), so the capacity alone does not say which one it is.
    pub window: u8,
}

/// A key's fingerprint as a prefetch worked it out ([`Engine::prefetch_check`](crate::Engine::prefetch_check),
/// [`Engine::prefetch_throttle`](crate::Engine::prefetch_throttle)), handed back with the check of the same key so that the key
/// is hashed once. Only the engine makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetched(pub(crate) u64);

/// One check of a batch ([`Engine::check_many`](crate::Engine::check_many)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckRequest<'a> {
    pub client: &'a [u8],
    pub endpoint: &'a [u8],
    pub cost: u64,
}

/// The precedence level a check's limit came from, without the ids (bounded cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    ClientEndpoint = 0,
    Client = 1,
    TierEndpoint = 2,
    Tier = 3,
    Endpoint = 4,
    Default = 5,
    /// No limit applied.
    None = 6,
}

impl ScopeKind {
    /// Every kind, in the order of their discriminants: `ALL[k as usize] == k`, so a table
    /// of counters indexed by kind can be walked with its labels.
    pub const ALL: [ScopeKind; 7] = [
        ScopeKind::ClientEndpoint,
        ScopeKind::Client,
        ScopeKind::TierEndpoint,
        ScopeKind::Tier,
        ScopeKind::Endpoint,
        ScopeKind::Default,
        ScopeKind::None,
    ];

    /// Label text, e.g. for Prometheus.
    pub fn name(self) -> &'static str {
        match self {
            ScopeKind::ClientEndpoint => "client_endpoint",
            ScopeKind::Client => "client",
            ScopeKind::TierEndpoint => "tier_endpoint",
            ScopeKind::Tier => "tier",
            ScopeKind::Endpoint => "endpoint",
            ScopeKind::Default => "default",
            ScopeKind::None => "none",
        }
    }
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

/// Counters for INFO and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Entries held (one per window of an RL key, one per CL.THROTTLE key).
    pub keys: u64,
    /// Entries dropped by the timing wheels because they decayed back to full.
    pub expired: u64,
    /// Entries dropped to stay within the bounds.
    pub evicted: u64,
    /// New keys refused by a refuse-* policy.
    pub refused: u64,
    /// Bytes of tables and wheels.
    pub memory_bytes: u64,
}

/// The reply when no limit applies: allowed, and every number -1 ("unlimited").
pub(crate) const UNLIMITED: CheckResult = CheckResult {
    allowed: true,
    limit: -1,
    remaining: -1,
    retry_after_ms: -1,
    reset_after_ms: -1,
    scope: ScopeKind::None,
    window: 0,
};
