//! A hierarchical timing wheel that says which entries may have decayed back to "full".
//!
//! Each shard keeps one. An entry is scheduled once, for the moment its state would be full
//! again (its deadline), as a 4-byte reference (table id and slot index, see [`WheelRef`]).
//! Hits that push the deadline later do **not** touch the wheel: when the entry's slot comes
//! due, the owner re-reads the entry's real deadline and either drops the entry or schedules
//! it again. So a hot key costs one wheel operation per decay period, not one per hit.
//!
//! Five levels of 64 slots with a 2^22 ns (about 4.2 ms) tick cover 64^5 ticks, about 52 days,
//! more than the longest window (30 days). Deadlines further out are parked in the last slot
//! and re-checked when it comes due.
//!
//! Work is bounded: [`Wheel::collect_due`] moves due slots into a pending list a bounded number
//! of ticks at a time, and the owner drains the pending list a bounded number of entries per
//! call, so a million keys expiring in the same second are spread over many short steps.

/// Nanoseconds per tick, as a shift: 2^22 ns = 4.194304 ms.
const TICK_SHIFT: u32 = 22;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 5;
/// Ticks [`Wheel::collect_due`] advances at most per call, so a long idle gap is caught up in
/// bounded steps (each empty tick costs a few nanoseconds).
const MAX_TICKS_PER_CALL: u64 = 4096;

/// A reference to a stored entry: table id in the top 2 bits, slot index in the low 30.
pub(crate) type WheelRef = u32;

pub(crate) fn wheel_ref(table: u32, idx: usize) -> WheelRef {
    (table << 30) | (idx as u32 & ((1 << 30) - 1))
}

pub(crate) fn ref_table(r: WheelRef) -> u32 {
    r >> 30
}

pub(crate) fn ref_index(r: WheelRef) -> usize {
    (r & ((1 << 30) - 1)) as usize
}

#[inline]
fn tick_of(ns: u64) -> u64 {
    ns >> TICK_SHIFT
}

#[derive(Debug)]
pub(crate) struct Wheel {
    /// The next tick to collect.
    current: u64,
    slots: Vec<Vec<WheelRef>>,
    /// Entries whose slot came due and that the owner has yet to look at.
    pending: Vec<WheelRef>,
    /// Number of references held (slots and pending).
    len: usize,
}

impl Wheel {
    pub fn new(now_ns: u64) -> Wheel {
        Wheel {
            current: tick_of(now_ns),
            slots: (0..SLOTS * LEVELS).map(|_| Vec::new()).collect(),
            pending: Vec::new(),
            len: 0,
        }
    }

    /// Every reference held, scheduled or pending (tests check that each live entry has one).
    #[cfg(test)]
    pub fn all_refs(&self) -> Vec<WheelRef> {
        self.slots
            .iter()
            .flatten()
            .chain(self.pending.iter())
            .copied()
            .collect()
    }

    /// References held, pending ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the slot vectors and the pending list.
    pub fn bytes(&self) -> usize {
        let refs: usize =
            self.slots.iter().map(Vec::capacity).sum::<usize>() + self.pending.capacity();
        refs * std::mem::size_of::<WheelRef>()
            + self.slots.len() * std::mem::size_of::<Vec<WheelRef>>()
    }

    /// Schedule `r` for `deadline_ns`. A deadline at or before the current tick lands in the
    /// slot collected next.
    pub fn schedule(&mut self, r: WheelRef, deadline_ns: u64) {
        let max_tick = self.current + (1u64 << (SLOT_BITS * LEVELS as u32)) - 1;
        let d = tick_of(deadline_ns).clamp(self.current, max_tick);
        let diff = d - self.current;
        let mut level = 0;
        while level + 1 < LEVELS && diff >> (SLOT_BITS * (level as u32 + 1)) != 0 {
            level += 1;
        }
        let slot = ((d >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1);
        self.slots[level * SLOTS + slot].push(r);
        self.len += 1;
    }

    /// Advance to `now_ns` (at most [`MAX_TICKS_PER_CALL`] ticks), moving the references of
    /// every slot that came due into the pending list. Higher-level slots are cascaded into the
    /// pending list too: the owner re-schedules them by their real deadline.
    pub fn collect_due(&mut self, now_ns: u64) {
        let target = tick_of(now_ns);
        let mut steps = 0;
        while self.current <= target && steps < MAX_TICKS_PER_CALL {
            let t = self.current;
            for level in (1..LEVELS).rev() {
                let shift = SLOT_BITS * level as u32;
                if t & ((1u64 << shift) - 1) == 0 {
                    let slot = ((t >> shift) as usize) & (SLOTS - 1);
                    self.drain_slot(level * SLOTS + slot);
                }
            }
            self.drain_slot((t as usize) & (SLOTS - 1));
            self.current = t + 1;
            steps += 1;
        }
    }

    fn drain_slot(&mut self, i: usize) {
        let v = &mut self.slots[i];
        if v.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            // Hand the slot's vector over whole instead of copying it.
            std::mem::swap(&mut self.pending, v);
        } else {
            self.pending.append(v);
        }
        // A drained slot gives its memory back: after a mass expiry the wheel shrinks too.
        if v.capacity() > 64 {
            *v = Vec::new();
        }
    }

    /// Take one pending reference (the caller decides: drop the entry, or schedule it again).
    pub fn pop_pending(&mut self) -> Option<WheelRef> {
        let r = self.pending.pop();
        if r.is_some() {
            self.len -= 1;
        }
        if self.pending.is_empty() && self.pending.capacity() > 1024 {
            self.pending = Vec::new();
        }
        r
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Take the reference nearest to coming due: pending first, then the earliest non-empty
    /// slot. Used to evict the keys whose loss changes the fewest answers. With it comes the
    /// end of the time its slot stands for (ns): every deadline scheduled there was before it,
    /// so a real deadline after it means the entry's deadline has moved since.
    pub fn pop_nearest(&mut self) -> Option<(WheelRef, u64)> {
        if let Some(r) = self.pop_pending() {
            return Some((r, self.current << TICK_SHIFT));
        }
        for level in 0..LEVELS {
            let shift = SLOT_BITS * level as u32;
            let start = self.current >> shift;
            // Level 0's current slot is the next to come due. A higher level's current slot was
            // cascaded already — so what it holds belongs to its next rotation: scan it last —
            // unless `current` starts its block: then the cascade is still to come, and the
            // slot holds the nearest entries of the level.
            let cascaded = level > 0 && self.current & ((1u64 << shift) - 1) != 0;
            let first = u64::from(cascaded);
            for k in first..first + SLOTS as u64 {
                let i = level * SLOTS + ((start + k) as usize & (SLOTS - 1));
                if let Some(r) = self.slots[i].pop() {
                    self.len -= 1;
                    let end_tick = (start + k + 1) << shift;
                    return Some((r, end_tick.saturating_mul(1 << TICK_SHIFT)));
                }
            }
        }
        None
    }

    /// Forget every reference (the owner re-packed its tables and schedules every entry again
    /// right after). Slot vectors keep their storage up to the size a drained slot keeps (see
    /// `drain_slot`): the re-scheduling refills them at once, and growing 320 vectors from
    /// nothing one push at a time was most of the allocator's share of a busy worker.
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            if s.capacity() > 64 {
                *s = Vec::new();
            } else {
                s.clear();
            }
        }
        self.pending = Vec::new();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 1 << TICK_SHIFT;

    fn drain(w: &mut Wheel) -> Vec<WheelRef> {
        let mut out = Vec::new();
        while let Some(r) = w.pop_pending() {
            out.push(r);
        }
        out.sort();
        out
    }

    #[test]
    fn entries_come_due_at_their_tick_and_not_before() {
        let start = 1_000 * TICK;
        let mut w = Wheel::new(start);
        w.schedule(1, start + 10 * TICK);
        w.schedule(2, start + 100 * TICK);
        w.schedule(3, start + 5_000 * TICK);
        w.schedule(4, start + 300_000 * TICK);
        w.schedule(5, start); // already due
        assert_eq!(w.len(), 5);
        w.collect_due(start + 9 * TICK);
        assert_eq!(drain(&mut w), vec![5]);
        w.collect_due(start + 10 * TICK);
        assert_eq!(drain(&mut w), vec![1]);
        // Level-1 entries are cascaded into pending at their 64-tick boundary, which is never
        // later than their deadline; the owner re-checks and re-schedules.
        let mut seen = Vec::new();
        let mut t = start + 10 * TICK;
        while t < start + 400_000 * TICK {
            t += 50 * TICK;
            w.collect_due(t);
            while let Some(r) = w.pop_pending() {
                let deadline = match r {
                    2 => start + 100 * TICK,
                    3 => start + 5_000 * TICK,
                    4 => start + 300_000 * TICK,
                    _ => unreachable!(),
                };
                if deadline <= t {
                    seen.push((r, t));
                } else {
                    w.schedule(r, deadline);
                }
            }
        }
        assert_eq!(seen.len(), 3);
        for (r, when) in seen {
            let deadline = match r {
                2 => start + 100 * TICK,
                3 => start + 5_000 * TICK,
                _ => start + 300_000 * TICK,
            };
            assert!(
                when >= deadline && when < deadline + 51 * TICK,
                "{r} at {when}"
            );
        }
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn far_deadlines_are_parked_and_collection_is_bounded() {
        let mut w = Wheel::new(0);
        let sixty_days = 60 * 86_400 * 1_000_000_000u64;
        w.schedule(9, sixty_days);
        assert_eq!(w.len(), 1);
        // A huge jump is caught up MAX_TICKS_PER_CALL ticks at a time.
        w.collect_due(sixty_days);
        assert_eq!(w.current, MAX_TICKS_PER_CALL);
    }

    #[test]
    fn pop_nearest_takes_the_earliest_first() {
        let mut w = Wheel::new(0);
        w.schedule(30, 3_000 * TICK);
        w.schedule(10, 5 * TICK);
        w.schedule(20, 70 * TICK);
        // With each, the end of its slot's time: tick 5 alone on level 0; ticks 64..127 and
        // 2944..3007 on level 1.
        assert_eq!(w.pop_nearest(), Some((10, 6 * TICK)));
        assert_eq!(w.pop_nearest(), Some((20, 128 * TICK)));
        assert_eq!(w.pop_nearest(), Some((30, 3008 * TICK)));
        assert_eq!(w.pop_nearest(), None);
    }

    #[test]
    fn pop_nearest_at_a_block_boundary_takes_the_uncascaded_slot_first() {
        // Scheduled at tick 0 for tick 170: level 1, slot 2 (ticks 128..191). At current = 128
        // that slot is the level's current one but not cascaded yet (tick 128 is collected
        // next), so it is the nearest and stands for ticks up to 191, not its next rotation.
        let mut w = Wheel::new(0);
        w.schedule(7, 170 * TICK);
        w.schedule(8, 900 * TICK);
        w.collect_due(127 * TICK);
        assert_eq!(w.current, 128);
        assert_eq!(w.pop_nearest(), Some((7, 192 * TICK)));
        assert_eq!(w.pop_nearest(), Some((8, 960 * TICK)));
    }

    #[test]
    fn refs_pack_table_and_index() {
        let r = wheel_ref(2, 123_456);
        assert_eq!((ref_table(r), ref_index(r)), (2, 123_456));
    }
}
