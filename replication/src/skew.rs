//! The replica's estimate of how far the primary's clock is from its own, from the clock
//! reading in each heartbeat (`PING <ns>`).
//!
//! Rate state holds absolute deadlines from the primary's clock, so after a failover the
//! promoted replica judges them with its own clock: if it is behind by d, keys look d younger
//! (answers stricter by up to d); if ahead by d, they look d older (more permissive by up to d).
//! The replica cannot fix its clock, but it can say so: the offset is shown in INFO
//! (`rl_master_clock_offset_ms`) and a warning is logged when it passes the bound
//! (docs/DESIGN.md, "Replication: clocks").
//!
//! Estimate: a heartbeat's reading is older than its arrival by the one-way delay, which only
//! makes the primary look *behind*. The least-delayed of the recent samples is the best one,
//! so the estimate is the maximum of `primary - local` over the last [`WINDOW`] samples.

/// How many heartbeats the estimate looks at (about half a minute).
pub const WINDOW: usize = 32;

/// The clock-offset estimate.
#[derive(Debug, Clone, Default)]
pub struct ClockSkew {
    samples: std::collections::VecDeque<i64>,
}

impl ClockSkew {
    /// Record one heartbeat: the primary's reading and the local clock at its arrival (both
    /// ns since the Unix epoch). Returns the new estimate in ns (primary minus local).
    pub fn observe(&mut self, primary_ns: u64, local_ns: u64) -> i64 {
        let diff = (primary_ns as i128 - local_ns as i128).clamp(i64::MIN as i128, i64::MAX as i128)
            as i64;
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(diff);
        self.estimate().unwrap_or(diff)
    }

    /// Primary minus local, in ns; None before the first heartbeat.
    pub fn estimate(&self) -> Option<i64> {
        self.samples.iter().copied().max()
    }

    /// True when the estimate's magnitude exceeds `bound_ns`.
    pub fn exceeds(&self, bound_ns: u64) -> bool {
        self.estimate().is_some_and(|e| e.unsigned_abs() > bound_ns)
    }

    pub fn reset(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_delayed_sample_wins_and_old_ones_age_out() {
        let mut s = ClockSkew::default();
        assert_eq!(s.estimate(), None);
        // Primary 50 ms ahead; delays of 1..5 ms make it look less ahead.
        let base = 1_700_000_000_000_000_000u64;
        for (i, delay) in [5u64, 1, 3, 2].iter().enumerate() {
            let local = base + i as u64 * 1_000_000_000;
            let primary = local + 50_000_000 - delay * 1_000_000;
            s.observe(primary, local);
        }
        assert_eq!(s.estimate(), Some(49_000_000));
        assert!(s.exceeds(40_000_000));
        assert!(!s.exceeds(60_000_000));
        // The clocks get fixed: after WINDOW samples the old offset is forgotten.
        for i in 0..WINDOW as u64 {
            s.observe(base + i, base + i + 1_000);
        }
        assert_eq!(s.estimate(), Some(-1_000));
        // Behind is reported as negative.
        s.reset();
        s.observe(base, base + 2_000_000_000);
        assert!(s.exceeds(1_000_000_000));
    }
}
