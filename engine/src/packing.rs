//! The packed state word: a time and a shape id in one `u64`.
//!
//! A GCRA entry's state is its TAT, and a fixed or sliding entry's first word is its
//! deadline; both are stored as microseconds shifted left by [`SHAPE_BITS`], with the id of
//! the window they were written under (see `shape.rs`) in the low bits. That is what keeps a
//! GCRA entry at 16 bytes with room to rescale its state when its limit changes.
//!
//! Separate because three parties read and write the format: the checks, the store (whose
//! timing wheel reads a deadline from a word) and the snapshot.

use crate::shape::SHAPE_BITS;
use crate::Nanos;

const SHAPE_MASK: u64 = (1 << SHAPE_BITS) - 1;
/// Largest microsecond time a packed word holds (2^52 us: the year 2112).
const MAX_US: u128 = (1 << (64 - SHAPE_BITS)) - 1;

/// Pack a time (ns) and a shape id. The time is rounded *up* to the microsecond: state errs
/// on the strict side by under 1 us, never on the permissive side.
///
/// Inline, with the u128 path out of line: every charged check packs its new TAT, and as an
/// out-of-line call it was ~3 % of a check (`perf report` of `benches/engine.rs`).
#[inline]
pub(crate) fn pack(ns: u128, shape: u16) -> u64 {
    // Every real time fits u64 nanoseconds (until 2554), and a u128 division is a library
    // call that showed up as ~8 % of a check; the u128 path only serves degenerate windows.
    let us = match u64::try_from(ns) {
        Ok(ns) => u128::from(ns.div_ceil(1000)),
        Err(_) => us_wide(ns),
    };
    ((us.min(MAX_US) as u64) << SHAPE_BITS) | (u64::from(shape) & SHAPE_MASK)
}

#[cold]
fn us_wide(ns: u128) -> u128 {
    ns.div_ceil(1000)
}

/// Unpack a word made by [`pack`]: (time in ns, shape id).
pub(crate) fn unpack(w: u64) -> (Nanos, u16) {
    (
        (w >> SHAPE_BITS).saturating_mul(1000),
        (w & SHAPE_MASK) as u16,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_rounds_up_to_the_microsecond() {
        assert_eq!(unpack(pack(1_500, 7)), (2_000, 7));
        assert_eq!(unpack(pack(2_000, 4095)), (2_000, 4095));
        assert_eq!(unpack(pack(u128::MAX, 1)).1, 1);
    }
}
