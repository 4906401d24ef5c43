//! Shape ids: a small number naming the (algorithm, window) a piece of state was written under.
//!
//! Why: when a limit changes, stored state must be rescaled so the *fraction* already consumed
//! is kept (raising a limit must never cause denials — the bug redis-cell issue #54 reports).
//! Rescaling needs the old window's numbers, but a state word has no room for them. It has room
//! for 12 bits, so each distinct window is interned here once, when a limit is set, and state
//! carries the id. Reading state whose id differs from the current window's id means "written
//! under another limit": look the old window up here and rescale.
//!
//! Ids are recycled round-robin after 4095 distinct windows, skipping every id a limit in
//! force still names: an id shared by two live windows would make state of one read as the
//! other's without rescaling (a key that moved from 1/day to 1000/s would stay denied for up
//! to a day). If all 4095 are in force, a new window gets id 0. Id 0 means "unknown": such
//! state is read as if written under the current limit (no rescaling, never aliasing). What
//! recycling can still do: state written under a window no limit names any more, read after
//! 4095 newer distinct windows, is rescaled from the recycled id's numbers.

use crate::limit::{Algorithm, Window};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

pub(crate) const SHAPE_BITS: u32 = 12;
const SHAPES: usize = 1 << SHAPE_BITS;

/// A window as two words: (count << 32 | burst) and (period_ms << 2 | algorithm).
pub(crate) fn encode(algo: Algorithm, w: &Window) -> (u64, u64) {
    (
        (w.count() << 32) | w.burst(),
        (w.period_ms() << 2) | algo as u64,
    )
}

pub(crate) fn decode(a: u64, b: u64) -> Option<(Algorithm, Window)> {
    let algo = Algorithm::from_index(b & 3)?;
    let w = Window::new(a >> 32, b >> 2, a & 0xFFFF_FFFF).ok()?;
    Some((algo, w))
}

pub(crate) struct Shapes {
    /// Two words per id, readable without a lock (a racing recycle can only yield another
    /// valid window, see the module docs).
    words: Box<[(AtomicU64, AtomicU64)]>,
    index: Mutex<Interner>,
}

#[derive(Default)]
struct Interner {
    by_shape: HashMap<(u64, u64), u16>,
    next: u16,
    /// Whether every id has been handed out once, so that a new one means recycling.
    wrapped: bool,
}

impl Default for Shapes {
    fn default() -> Self {
        Shapes {
            words: (0..SHAPES)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            index: Mutex::new(Interner::default()),
        }
    }
}

impl Shapes {
    /// The id of (algo, window) if it already has one; never allocates or recycles.
    pub fn find(&self, algo: Algorithm, w: &Window) -> Option<u16> {
        let ix = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        ix.by_shape.get(&encode(algo, w)).copied()
    }

    /// The id of (algo, window), allocating one if it is new. `in_force` lists the ids the
    /// limits in force use; it is called only once ids are being recycled, so its cost (a walk
    /// over every limit) is paid only after 4095 distinct windows, and then only per new one.
    pub fn intern(&self, algo: Algorithm, w: &Window, in_force: impl FnOnce() -> Vec<u16>) -> u16 {
        let key = encode(algo, w);
        let mut ix = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&id) = ix.by_shape.get(&key) {
            return id;
        }
        let pinned = if ix.wrapped || ix.next as usize + 1 >= SHAPES {
            let mut used = vec![false; SHAPES];
            for id in in_force() {
                if let Some(u) = used.get_mut(id as usize) {
                    *u = true;
                }
            }
            used
        } else {
            Vec::new()
        };
        let mut id = 0;
        for _ in 1..SHAPES {
            ix.next = if ix.next as usize + 1 >= SHAPES {
                ix.wrapped = true;
                1
            } else {
                ix.next + 1
            };
            if !pinned.get(ix.next as usize).copied().unwrap_or(false) {
                id = ix.next;
                break;
            }
        }
        if id == 0 {
            // Every id is named by a limit in force: this window goes without one.
            return 0;
        }
        let old = (
            self.words[id as usize].0.load(Ordering::Relaxed),
            self.words[id as usize].1.load(Ordering::Relaxed),
        );
        ix.by_shape.remove(&old);
        ix.by_shape.insert(key, id);
        self.words[id as usize].0.store(key.0, Ordering::Release);
        self.words[id as usize].1.store(key.1, Ordering::Release);
        id
    }

    /// The (algorithm, window) an id names, if known.
    pub fn get(&self, id: u16) -> Option<(Algorithm, Window)> {
        if id == 0 {
            return None;
        }
        let (a, b) = self.words.get(id as usize)?;
        decode(a.load(Ordering::Acquire), b.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_reversible() {
        let s = Shapes::default();
        let w = Window::new(5, 1000, 2).unwrap();
        let id = s.intern(Algorithm::Gcra, &w, Vec::new);
        assert_ne!(id, 0);
        assert_eq!(s.intern(Algorithm::Gcra, &w, Vec::new), id);
        assert_ne!(s.intern(Algorithm::Fixed, &w, Vec::new), id);
        assert_eq!(s.get(id), Some((Algorithm::Gcra, w)));
        assert_eq!(s.get(0), None);
        let big = Window::new(u64::from(u32::MAX), 30 * 86_400_000, u64::from(u32::MAX)).unwrap();
        let id = s.intern(Algorithm::Sliding, &big, Vec::new);
        assert_eq!(s.get(id), Some((Algorithm::Sliding, big)));
    }

    #[test]
    fn ids_in_force_are_never_recycled() {
        let s = Shapes::default();
        let w = |n: u64| Window::new(n, 1000, 0).unwrap();
        let first = s.intern(Algorithm::Gcra, &w(1), Vec::new);
        let second = s.intern(Algorithm::Gcra, &w(2), Vec::new);
        for n in 3..SHAPES as u64 {
            s.intern(Algorithm::Gcra, &w(n), Vec::new);
        }
        // Every id handed out once; `first` is in force, `second` is not.
        let next = s.intern(Algorithm::Gcra, &w(10_000), || vec![first]);
        assert_ne!(next, first);
        assert_eq!(next, second, "the oldest id not in force is recycled");
        assert_eq!(s.get(first), Some((Algorithm::Gcra, w(1))));
        // With every id in force, a new window goes without one.
        let all: Vec<u16> = (1..SHAPES as u16).collect();
        assert_eq!(s.intern(Algorithm::Gcra, &w(10_001), || all.clone()), 0);
        assert_eq!(
            s.get(first),
            Some((Algorithm::Gcra, w(1))),
            "nothing was recycled"
        );
    }

    #[test]
    fn ids_are_recycled_without_panicking() {
        let s = Shapes::default();
        for n in 1..(SHAPES as u64 + 10) {
            let w = Window::new(n, 1000, 0).unwrap();
            let id = s.intern(Algorithm::Gcra, &w, Vec::new);
            assert!(id >= 1 && (id as usize) < SHAPES);
            assert_eq!(s.get(id), Some((Algorithm::Gcra, w)));
        }
    }
}
