//! Degraded mode: the local, in-process allowance used while a key's daemon is unreachable.
//!
//! Failing closed during an outage would take the API down with the rate limiter; failing open
//! without a bound would turn every outage into an abuse window. So the client fails open only
//! up to a small local GCRA per (client, endpoint): `rate` per `period` plus `burst`, the same
//! arithmetic as the daemon's `RATE n/period BURST b` (n + b at once, then one every
//! period / n). The table of tracked keys is bounded: entries whose allowance has refilled are
//! dropped (a full key is the same as an unseen one), and when the table is still full a *new*
//! key is denied rather than admitted — admitting it, or evicting a live key, would hand out
//! allowance nobody is tracking.
//!
//! Time is passed in (nanoseconds on a monotonic clock) so the tests are exact and instant.

use std::collections::HashMap;
use std::time::Duration;

/// The local allowance per key while its daemon is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackLimit {
    /// Requests refilled per `period` (at least 1).
    pub rate: u32,
    /// The refill period.
    pub period: Duration,
    /// Extra instant capacity on top of `rate`.
    pub burst: u32,
    /// Most keys tracked at once; beyond that, new keys are denied until entries decay.
    pub max_keys: usize,
}

impl Default for FallbackLimit {
    /// 10 per second per key, 100,000 keys (about 5 MB of table at most): generous enough that
    /// a short outage is invisible to well-behaved clients, small enough not to be an open door.
    fn default() -> Self {
        FallbackLimit {
            rate: 10,
            period: Duration::from_secs(1),
            burst: 0,
            max_keys: 100_000,
        }
    }
}

/// One local decision, shaped like the daemon's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDecision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// `rate + burst`.
    pub limit: u64,
    /// Cost-1 requests still admissible right now.
    pub remaining: u64,
    /// When denied, the wait until the same request would fit; `None` when allowed or never.
    pub retry_after: Option<Duration>,
    /// Time until the key's allowance is full again.
    pub reset_after: Duration,
    /// Denied only because the key table was full of live keys.
    pub table_full: bool,
}

/// The bounded table of local GCRA states (key → theoretical arrival time, ns).
#[derive(Debug)]
pub struct Fallback {
    limit: FallbackLimit,
    /// Emission interval: `period / rate`, in ns.
    interval: u64,
    /// Tolerance: `interval * (rate + burst)`, in ns.
    tolerance: u64,
    tats: HashMap<Vec<u8>, u64>,
    /// No entry can have decayed before this time: skip purge scans until then.
    next_purge: u64,
}

impl Fallback {
    /// A table enforcing `limit` (a rate of 0 is treated as 1: a zero allowance is fail-closed,
    /// which is expressed by `max_keys = 0` instead).
    pub fn new(limit: FallbackLimit) -> Fallback {
        let rate = u64::from(limit.rate.max(1));
        let period = u64::try_from(limit.period.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let interval = (period / rate).max(1);
        let tolerance = interval.saturating_mul(rate + u64::from(limit.burst));
        Fallback {
            limit,
            interval,
            tolerance,
            tats: HashMap::new(),
            next_purge: 0,
        }
    }

    /// The limit this table enforces.
    pub fn limit(&self) -> FallbackLimit {
        self.limit
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.tats.len()
    }

    /// Decide for `key` at `now` (ns, monotonic) and charge `cost` when admitted.
    pub fn check(&mut self, key: &[u8], cost: u32, now: u64) -> LocalDecision {
        let capacity = u64::from(self.limit.rate.max(1)) + u64::from(self.limit.burst);
        let existing = self.tats.get(key).copied();
        if existing.is_none() && self.tats.len() >= self.limit.max_keys {
            self.purge(now);
            if self.tats.len() >= self.limit.max_keys {
                return LocalDecision {
                    allowed: false,
                    limit: capacity,
                    remaining: 0,
                    retry_after: Some(Duration::from_nanos(self.next_purge.saturating_sub(now))),
                    reset_after: Duration::ZERO,
                    table_full: true,
                };
            }
        }
        let tat = existing.unwrap_or(now).max(now);
        let new_tat = tat.saturating_add(self.interval.saturating_mul(u64::from(cost)));
        let allowed = new_tat - now <= self.tolerance;
        let effective = if allowed { new_tat } else { tat };
        if allowed && cost > 0 {
            self.tats.insert(key.to_vec(), new_tat);
        }
        let used = effective - now;
        let remaining = self.tolerance.saturating_sub(used) / self.interval;
        let retry_after = if allowed || u64::from(cost) > capacity {
            None
        } else {
            Some(Duration::from_nanos(new_tat - now - self.tolerance))
        };
        LocalDecision {
            allowed,
            limit: capacity,
            remaining,
            retry_after,
            reset_after: Duration::from_nanos(used),
            table_full: false,
        }
    }

    /// Drop every entry whose allowance has refilled (TAT at or before now), and remember the
    /// earliest time any surviving entry can decay so a full table is not rescanned per call.
    fn purge(&mut self, now: u64) {
        if now < self.next_purge {
            return;
        }
        self.tats.retain(|_, tat| *tat > now);
        self.next_purge = self.tats.values().copied().min().unwrap_or(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn table(rate: u32, burst: u32, max_keys: usize) -> Fallback {
        Fallback::new(FallbackLimit {
            rate,
            period: Duration::from_secs(1),
            burst,
            max_keys,
        })
    }

    #[test]
    fn admits_rate_plus_burst_then_one_per_interval() {
        let mut f = table(5, 2, 10);
        let admitted = (0..20).filter(|_| f.check(b"k", 1, S).allowed).count();
        assert_eq!(admitted, 7);
        let d = f.check(b"k", 1, S);
        assert_eq!(d.retry_after, Some(Duration::from_millis(200)));
        assert!(f.check(b"k", 1, S + S / 5).allowed);
        assert!(!f.check(b"k", 1, S + S / 5).allowed);
    }

    #[test]
    fn keys_are_independent_and_cost_counts() {
        let mut f = table(5, 0, 10);
        assert!(f.check(b"a", 5, 0).allowed);
        assert!(!f.check(b"a", 1, 0).allowed);
        assert!(f.check(b"b", 1, 0).allowed);
        let never = f.check(b"c", 6, 0);
        assert!(!never.allowed);
        assert_eq!(never.retry_after, None);
    }

    #[test]
    fn full_table_denies_new_keys_until_entries_decay() {
        let mut f = table(1, 0, 2);
        assert!(f.check(b"a", 1, 0).allowed);
        assert!(f.check(b"b", 1, 0).allowed);
        let d = f.check(b"c", 1, 0);
        assert!(!d.allowed && d.table_full);
        // After a period, a and b have refilled: they are purged and c fits.
        assert!(f.check(b"c", 1, S).allowed);
        assert!(f.tracked() <= 2);
    }

    #[test]
    fn zero_cost_only_looks() {
        let mut f = table(2, 0, 10);
        let d = f.check(b"a", 0, 0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
        assert_eq!(f.tracked(), 0);
    }
}
