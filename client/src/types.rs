//! The typed values the client sends and receives: a check's [`Decision`], a limit's
//! [`Window`]s and the [`Scope`] a limit is set on. They mirror docs/API.md so that callers
//! never format or parse the daemon's strings themselves.

use std::time::Duration;

use crate::error::ClientError;

/// Who made a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The daemon owning the key answered; `node` is its name, `address` the address that
    /// answered (the primary, or a replica after failover).
    Daemon {
        /// Name of the node in the ring.
        node: String,
        /// Address that answered.
        address: String,
    },
    /// The node was unreachable: the local fallback allowance decided (see `fallback.rs`).
    Degraded {
        /// Name of the unreachable node.
        node: String,
    },
}

/// The answer to a check: RL.CHECK's `[allowed, limit, remaining, retry_after_ms,
/// reset_after_ms]`, with the daemon's `-1` sentinels turned into `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted (and was charged).
    pub allowed: bool,
    /// Capacity of the reported window; `None` when no limit applies (unlimited).
    pub limit: Option<u64>,
    /// Cost-1 requests still admissible now; `None` when unlimited.
    pub remaining: Option<u64>,
    /// When denied, how long until the same check succeeds; `None` when allowed or when the
    /// cost can never fit.
    pub retry_after: Option<Duration>,
    /// Time until the allowance is full again; `None` when unlimited.
    pub reset_after: Option<Duration>,
    /// Whether the daemon or the local fallback decided.
    pub source: Source,
}

impl Decision {
    /// Whether this decision came from degraded mode.
    pub fn is_degraded(&self) -> bool {
        matches!(self.source, Source::Degraded { .. })
    }
}

/// One window of a limit: `RATE <rate>/<period> BURST <burst>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests per period (1 … 4294967295).
    pub rate: u32,
    /// The period, 1 ms … 30 d, in whole milliseconds.
    pub period: Duration,
    /// Extra instant capacity.
    pub burst: u32,
}

impl Window {
    /// `rate` per `period`, no burst.
    pub fn new(rate: u32, period: Duration) -> Window {
        Window {
            rate,
            period,
            burst: 0,
        }
    }

    /// The same window with `burst` extra instant capacity.
    pub fn burst(mut self, burst: u32) -> Window {
        self.burst = burst;
        self
    }

    /// The `<n>/<period>` text the daemon takes, with the largest unit that is exact.
    pub(crate) fn rate_arg(&self) -> Result<String, ClientError> {
        let ms = self.period.as_millis();
        if ms == 0 || !self.period.as_nanos().is_multiple_of(1_000_000) {
            return Err(ClientError::InvalidArgument(format!(
                "period {:?} is not a whole number of milliseconds (>= 1 ms)",
                self.period
            )));
        }
        let period = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ]
        .iter()
        .find(|(unit, _)| ms.is_multiple_of(*unit))
        .map(|(unit, suffix)| format!("{}{suffix}", ms / unit))
        .unwrap_or_else(|| format!("{ms}ms"));
        Ok(format!("{}/{period}", self.rate))
    }

    /// Parse `<n>/<int><ms|s|m|h|d>` as the daemon writes it in RL.LIMIT GET.
    pub(crate) fn parse_rate(text: &str) -> Option<(u32, Duration)> {
        let (n, period) = text.split_once('/')?;
        let rate = n.parse().ok()?;
        let split = period.find(|c: char| !c.is_ascii_digit())?;
        let (num, unit) = period.split_at(split);
        let num: u64 = num.parse().ok()?;
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        Some((rate, Duration::from_millis(num.checked_mul(unit_ms)?)))
    }
}

/// Where a limit is set (docs/API.md, "Which limit applies").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `DEFAULT`.
    Default,
    /// `CLIENT <id>`.
    Client(String),
    /// `CLIENT <id> ENDPOINT <pattern>`.
    ClientEndpoint(String, String),
    /// `TIER <name>`.
    Tier(String),
    /// `TIER <name> ENDPOINT <pattern>`.
    TierEndpoint(String, String),
    /// `ENDPOINT <pattern>`.
    Endpoint(String),
}

impl Scope {
    /// The scope's arguments as RL.LIMIT takes them.
    pub(crate) fn args(&self) -> Vec<&str> {
        match self {
            Scope::Default => vec!["DEFAULT"],
            Scope::Client(c) => vec!["CLIENT", c],
            Scope::ClientEndpoint(c, e) => vec!["CLIENT", c, "ENDPOINT", e],
            Scope::Tier(t) => vec!["TIER", t],
            Scope::TierEndpoint(t, e) => vec!["TIER", t, "ENDPOINT", e],
            Scope::Endpoint(e) => vec!["ENDPOINT", e],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_text_round_trips() {
        for (w, text) in [
            (Window::new(5, Duration::from_secs(60)), "5/1m"),
            (Window::new(10, Duration::from_millis(500)), "10/500ms"),
            (Window::new(1000, Duration::from_secs(3600)), "1000/1h"),
            (Window::new(3, Duration::from_secs(2 * 86_400)), "3/2d"),
            (Window::new(7, Duration::from_secs(90)), "7/90s"),
        ] {
            assert_eq!(w.rate_arg().ok().as_deref(), Some(text));
            assert_eq!(Window::parse_rate(text), Some((w.rate, w.period)));
        }
        assert!(Window::new(1, Duration::from_micros(1500))
            .rate_arg()
            .is_err());
        assert_eq!(Window::parse_rate("5/1w"), None);
        assert_eq!(Window::parse_rate("x/1s"), None);
    }
}
