//! Time sources for the engine.
//!
//! Every decision the engine makes is a function of "now", so time is injected through the
//! [`Clock`] trait: production uses [`SystemClock`] (monotonic, but reading like Unix time) and
//! tests use [`FakeClock`], which only moves when told to — that is why no test ever sleeps.
//! [`AnyClock`] is either one, chosen at run time, for a program that is not generic over
//! its clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Nanos;

/// Source of time. `now()` never goes backwards.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Nanos;
}

/// Monotonic clock anchored to the wall clock once, at construction: readings are
/// `wall_at_start + monotonic_elapsed`, so they look like Unix time but never jump when NTP
/// steps the system clock.
///
/// The monotonic part comes from `quanta` (the clock governor uses): it reads the CPU's
/// invariant TSC, calibrated against the OS clock, in a few nanoseconds, where
/// `clock_gettime` costs about 25 ns on this class of VM — a quarter of a whole check. Where
/// the TSC is not usable, quanta falls back to the OS monotonic clock by itself.
#[derive(Debug)]
pub struct SystemClock {
    /// Wall-clock nanoseconds since the epoch at construction. A clock set before 1970 reads
    /// as 0, which only shifts the origin: the engine needs a monotonic count, not a date.
    anchor_wall: Nanos,
    clock: quanta::Clock,
    /// Monotonic instant taken at the same moment as `anchor_wall`.
    anchor: quanta::Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        let clock = quanta::Clock::new();
        let anchor = clock.now();
        let anchor_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(duration_to_nanos)
            .unwrap_or(0);
        SystemClock {
            anchor_wall,
            clock,
            anchor,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        let elapsed = self.clock.now().saturating_duration_since(self.anchor);
        self.anchor_wall.saturating_add(duration_to_nanos(elapsed))
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    /// Shared so that a test can keep a handle and move the time the engine sees.
    now: Arc<AtomicU64>,
}

impl FakeClock {
    pub fn new(start: Nanos) -> FakeClock {
        FakeClock {
            now: Arc::new(AtomicU64::new(start)),
        }
    }

    /// Move time forward (saturating at `u64::MAX` rather than wrapping back to the past).
    pub fn advance(&self, by: std::time::Duration) {
        let by = duration_to_nanos(by);
        // fetch_update never fails here: the closure always returns Some.
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// Jump to an absolute time. Tests may move backwards with this; the engine tolerates it
    /// (state then simply looks younger), but real clocks never do.
    pub fn set(&self, to: Nanos) {
        self.now.store(to, Ordering::Release);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::Acquire)
    }
}

/// The clock a process chooses at run time: the daemon is not generic over its clock, so that
/// a test can run the whole server in-process on a [`FakeClock`]. One predictable branch per
/// reading.
#[derive(Debug)]
pub enum AnyClock {
    System(SystemClock),
    Fake(FakeClock),
}

impl Clock for AnyClock {
    #[inline]
    fn now(&self) -> Nanos {
        match self {
            AnyClock::System(c) => c.now(),
            AnyClock::Fake(c) => c.now(),
        }
    }
}

impl From<SystemClock> for AnyClock {
    fn from(c: SystemClock) -> AnyClock {
        AnyClock::System(c)
    }
}

impl From<FakeClock> for AnyClock {
    fn from(c: FakeClock) -> AnyClock {
        AnyClock::Fake(c)
    }
}

/// Nanoseconds in a duration, saturating: u64 nanoseconds cover ~584 years, so saturation
/// only matters for absurd inputs, where clamping is the safe reading.
fn duration_to_nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told_and_clones_share() {
        let c = FakeClock::new(5);
        let c2 = c.clone();
        assert_eq!(c.now(), 5);
        c.advance(Duration::from_millis(2));
        assert_eq!(c2.now(), 2_000_005);
        c2.set(7);
        assert_eq!(c.now(), 7);
        c.set(u64::MAX - 1);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now(), u64::MAX);
    }

    #[test]
    fn any_clock_reads_the_clock_it_holds() {
        // A fake one moves when its handle is moved, as the test driving a daemon does.
        let fake = FakeClock::new(5);
        let any = AnyClock::from(fake.clone());
        assert!(matches!(any, AnyClock::Fake(_)));
        assert_eq!(any.now(), 5);
        fake.advance(Duration::from_millis(1));
        assert_eq!(any.now(), 1_000_005);
        // The system one reads like Unix time and never goes back.
        let any = AnyClock::from(SystemClock::new());
        assert!(matches!(any, AnyClock::System(_)));
        let (a, b) = (any.now(), any.now());
        assert!(a > 1_577_836_800_000_000_000 && b >= a);
    }

    #[test]
    fn system_clock_looks_like_unix_time_and_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        // After 2020-01-01 in nanoseconds.
        assert!(a > 1_577_836_800_000_000_000);
    }
}
