//! Limit configuration values: [`Window`], [`Limit`], [`EndpointPattern`] and [`Scope`].
//!
//! They are validated once, when built, so that the hot path (a check) never has to re-check a
//! count or a period: a value of these types is valid by construction, and [`LimitError`]
//! says why a candidate was refused.

use std::fmt;

/// Longest allowed window period: 30 days. Longer windows would make a key's state live for
/// months, which is not what an in-memory rate limiter is for.
const MAX_PERIOD_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Longest time an emptied allowance may take to refill: 30 years of 365 days, in ns.
const MAX_REFILL_NS: u128 = 30 * 365 * 24 * 60 * 60 * 1_000_000_000;

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
    #[error("burst too large for the rate: an emptied allowance must refill within 30 years")]
    RefillTooLong,
    #[error("a limit needs between 1 and {0} windows")]
    WindowCount(usize),
    #[error("endpoint pattern must not be empty")]
    EmptyPattern,
}

/// One window of a limit: `count` per `period`, plus `burst` extra instant capacity.
/// Valid by construction: 1 <= count <= 2^32-1, 1 ms <= period <= 30 d, burst <= 2^32-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    count: u32,
    period_ms: u64,
    burst: u32,
    /// GCRA's emission interval, period / count in ns (at least 1): derived, but every check
    /// needs it, and a division per check was a tenth of a check's time.
    interval_ns: u64,
    /// [`crate::gcra::reciprocal`] of `interval_ns`, so that a check divides by the interval
    /// with a multiplication (see there).
    interval_recip: u64,
}

impl Window {
    /// Checks are made in argument order (count, period, burst) so the first bad argument is
    /// the one reported.
    pub fn new(count: u64, period_ms: u64, burst: u64) -> Result<Window, LimitError> {
        let count = u32::try_from(count)
            .ok()
            .filter(|&c| c >= 1)
            .ok_or(LimitError::CountOutOfRange)?;
        if !(1..=MAX_PERIOD_MS).contains(&period_ms) {
            return Err(LimitError::PeriodOutOfRange);
        }
        let burst = u32::try_from(burst).map_err(|_| LimitError::BurstOutOfRange)?;
        // A period is at most 30 days, so its nanoseconds fit u64.
        let interval_ns = (period_ms * 1_000_000 / u64::from(count)).max(1);
        // GCRA stores how far ahead of now the allowance is spent as a time 52 bits of
        // microseconds wide (until the year 2112, see `packing::pack`). A window whose emptied
        // allowance takes longer to refill (`1/30d BURST 2000`: 164 years) would be clamped
        // to that horizon, i.e. credited back, so such windows are refused here instead.
        if u128::from(interval_ns) * u128::from(u64::from(count) + u64::from(burst)) > MAX_REFILL_NS
        {
            return Err(LimitError::RefillTooLong);
        }
        Ok(Window {
            count,
            period_ms,
            burst,
            interval_ns,
            interval_recip: crate::gcra::reciprocal(interval_ns),
        })
    }

    pub fn count(&self) -> u64 {
        u64::from(self.count)
    }

    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Nanoseconds one unit of cost takes to drip back under GCRA (period / count, truncated,
    /// at least 1).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// [`Window::interval_ns`]'s reciprocal for [`crate::gcra::div_by`].
    pub(crate) fn interval_recip(&self) -> u64 {
        self.interval_recip
    }

    pub fn burst(&self) -> u64 {
        u64::from(self.burst)
    }

    /// Instant capacity of a fresh key: count + burst (the reply's `limit`).
    pub fn capacity(&self) -> u64 {
        // Both are u32, so the sum cannot overflow u64.
        u64::from(self.count) + u64::from(self.burst)
    }
}

/// Maximum number of windows in one limit.
pub const MAX_WINDOWS: usize = 8;

/// How a limit's windows count. All three answer with the same reply shape and all keep the
/// all-or-nothing rule across windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Algorithm {
    /// GCRA, the generic cell rate algorithm: a token bucket of `count + burst` tokens refilled
    /// at `count` per period, computed from one stored time. Equivalent to a token bucket and
    /// to a leaky bucket used as a meter (see docs/API.md).
    #[default]
    Gcra = 0,
    /// Two-window weighted counter: the previous window's count, scaled by how much of it
    /// still overlaps the sliding window, plus the current window's count.
    Sliding = 1,
    /// Fixed windows aligned to the Unix epoch (as envoy's ratelimit service counts).
    Fixed = 2,
}

impl Algorithm {
    /// The lowercase name used by `ALGO`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::Sliding => "sliding",
            Algorithm::Fixed => "fixed",
        }
    }

    /// Parse `gcra`, `sliding` or `fixed`, ASCII case-insensitively.
    pub fn from_name(name: &[u8]) -> Option<Algorithm> {
        [Algorithm::Gcra, Algorithm::Sliding, Algorithm::Fixed]
            .into_iter()
            .find(|a| a.name().as_bytes().eq_ignore_ascii_case(name))
    }

    pub(crate) fn from_index(i: u64) -> Option<Algorithm> {
        match i {
            0 => Some(Algorithm::Gcra),
            1 => Some(Algorithm::Sliding),
            2 => Some(Algorithm::Fixed),
            _ => None,
        }
    }
}

/// A validated limit: 1..=[`MAX_WINDOWS`] windows, all charged together or not at all, and the
/// algorithm that counts them.
///
/// The window count is bounded because every window of a check is one map entry updated under
/// the same shard lock; a small bound keeps that critical section short.
#[derive(Debug, Clone)]
pub struct Limit {
    windows: Vec<Window>,
    algorithm: Algorithm,
    /// Shape id of each window (see `shape.rs`), filled in by the engine when the limit is
    /// stored; empty until then. Not part of the limit's value (ignored by ==).
    pub(crate) shapes: Vec<u16>,
}

impl PartialEq for Limit {
    fn eq(&self, other: &Limit) -> bool {
        self.windows == other.windows && self.algorithm == other.algorithm
    }
}

impl Eq for Limit {}

impl std::hash::Hash for Limit {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.windows.hash(state);
        self.algorithm.hash(state);
    }
}

impl Limit {
    /// A GCRA limit (see [`Limit::with_algorithm`]).
    pub fn new(windows: Vec<Window>) -> Result<Limit, LimitError> {
        if windows.is_empty() || windows.len() > MAX_WINDOWS {
            return Err(LimitError::WindowCount(MAX_WINDOWS));
        }
        Ok(Limit {
            windows,
            algorithm: Algorithm::Gcra,
            shapes: Vec::new(),
        })
    }

    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Limit {
        self.algorithm = algorithm;
        self.shapes.clear();
        self
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Shape id of window `i`, 0 if not assigned.
    pub(crate) fn shape(&self, i: usize) -> u16 {
        self.shapes.get(i).copied().unwrap_or(0)
    }
}

/// An endpoint pattern: exact (`/api/users`) or, when it ends in `*`, a prefix (`/api/*`
/// matches every endpoint starting with `/api/`). Among matching patterns, an exact match wins,
/// then the longest prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointPattern {
    /// The pattern text as given, including a trailing `*` for a prefix pattern, so that it
    /// prints back exactly as it was configured.
    text: Box<[u8]>,
}

impl EndpointPattern {
    pub fn new(text: &[u8]) -> Result<EndpointPattern, LimitError> {
        if text.is_empty() {
            return Err(LimitError::EmptyPattern);
        }
        Ok(EndpointPattern { text: text.into() })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// True when the pattern ends in `*` (so `*` alone is a prefix pattern matching everything).
    pub fn is_prefix(&self) -> bool {
        self.text.last() == Some(&b'*')
    }

    /// The text an endpoint must equal (exact) or start with (prefix): the pattern without its
    /// trailing `*`. This is the key the limits table indexes the pattern by.
    pub fn stem(&self) -> &[u8] {
        if self.is_prefix() {
            &self.text[..self.text.len() - 1]
        } else {
            &self.text
        }
    }

    pub fn matches(&self, endpoint: &[u8]) -> bool {
        if self.is_prefix() {
            endpoint.starts_with(self.stem())
        } else {
            endpoint == &*self.text
        }
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
        fn endpoint_suffix(
            f: &mut fmt::Formatter<'_>,
            endpoint: &Option<EndpointPattern>,
        ) -> fmt::Result {
            match endpoint {
                Some(p) => write!(f, " ENDPOINT {}", String::from_utf8_lossy(p.as_bytes())),
                None => Ok(()),
            }
        }
        match self {
            Scope::Default => f.write_str("DEFAULT"),
            Scope::Client { id, endpoint } => {
                write!(f, "CLIENT {}", String::from_utf8_lossy(id))?;
                endpoint_suffix(f, endpoint)
            }
            Scope::Tier { name, endpoint } => {
                write!(f, "TIER {}", String::from_utf8_lossy(name))?;
                endpoint_suffix(f, endpoint)
            }
            Scope::Endpoint(p) => write!(f, "ENDPOINT {}", String::from_utf8_lossy(p.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_validation_table() {
        let day_ms = 24 * 60 * 60 * 1000;
        let cases: &[(u64, u64, u64, Result<(), LimitError>)] = &[
            (1, 1, 0, Ok(())),
            (
                u64::from(u32::MAX),
                30 * day_ms,
                u64::from(u32::MAX),
                Ok(()),
            ),
            (0, 1000, 0, Err(LimitError::CountOutOfRange)),
            (
                u64::from(u32::MAX) + 1,
                1000,
                0,
                Err(LimitError::CountOutOfRange),
            ),
            (1, 0, 0, Err(LimitError::PeriodOutOfRange)),
            (1, 30 * day_ms + 1, 0, Err(LimitError::PeriodOutOfRange)),
            (
                1,
                1000,
                u64::from(u32::MAX) + 1,
                Err(LimitError::BurstOutOfRange),
            ),
            // The first bad argument is the one reported.
            (0, 0, u64::MAX, Err(LimitError::CountOutOfRange)),
        ];
        for (count, period, burst, want) in cases {
            let got = Window::new(*count, *period, *burst).map(|_| ());
            assert_eq!(&got, want, "Window::new({count}, {period}, {burst})");
        }
        let w = Window::new(5, 1000, 2).expect("valid");
        assert_eq!(
            (w.count(), w.period_ms(), w.burst(), w.capacity()),
            (5, 1000, 2, 7)
        );
    }

    #[test]
    fn limit_and_pattern_validation() {
        let w = Window::new(1, 1000, 0).expect("valid");
        assert_eq!(
            Limit::new(vec![]),
            Err(LimitError::WindowCount(MAX_WINDOWS))
        );
        assert_eq!(
            Limit::new(vec![w; MAX_WINDOWS + 1]),
            Err(LimitError::WindowCount(MAX_WINDOWS))
        );
        assert_eq!(
            Limit::new(vec![w; MAX_WINDOWS]).map(|l| l.windows().len()),
            Ok(8)
        );
        assert_eq!(EndpointPattern::new(b""), Err(LimitError::EmptyPattern));
        assert_eq!(
            LimitError::WindowCount(8).to_string(),
            "a limit needs between 1 and 8 windows"
        );
    }

    #[test]
    fn pattern_matching() {
        let exact = EndpointPattern::new(b"/api/users").expect("valid");
        let prefix = EndpointPattern::new(b"/api/*").expect("valid");
        let all = EndpointPattern::new(b"*").expect("valid");
        assert!(exact.matches(b"/api/users"));
        assert!(!exact.matches(b"/api/users/1"));
        assert!(prefix.matches(b"/api/"));
        assert!(prefix.matches(b"/api/users"));
        assert!(!prefix.matches(b"/api"));
        assert!(all.matches(b""));
        assert!(all.matches(b"anything"));
        assert_eq!(prefix.stem(), b"/api/");
        assert_eq!(prefix.as_bytes(), b"/api/*");
    }

    #[test]
    fn scope_display() {
        let p = |s: &[u8]| EndpointPattern::new(s).expect("valid");
        let cases = [
            (Scope::Default, "DEFAULT"),
            (
                Scope::Client {
                    id: b"alice".to_vec(),
                    endpoint: None,
                },
                "CLIENT alice",
            ),
            (
                Scope::Client {
                    id: b"alice".to_vec(),
                    endpoint: Some(p(b"/api/*")),
                },
                "CLIENT alice ENDPOINT /api/*",
            ),
            (
                Scope::Tier {
                    name: b"gold".to_vec(),
                    endpoint: None,
                },
                "TIER gold",
            ),
            (
                Scope::Tier {
                    name: b"gold".to_vec(),
                    endpoint: Some(p(b"/x")),
                },
                "TIER gold ENDPOINT /x",
            ),
            (Scope::Endpoint(p(b"/x")), "ENDPOINT /x"),
            (
                Scope::Client {
                    id: vec![b'a', 0xff],
                    endpoint: None,
                },
                "CLIENT a\u{fffd}",
            ),
        ];
        for (scope, want) in cases {
            assert_eq!(scope.to_string(), want);
        }
    }
}
