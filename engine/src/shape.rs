//! Shape ids: a small number naming the (algorithm, window) a piece of state was written under.
//!
//! Why: when a limit changes, stored state must be rescaled so the *fraction* already consumed
//! is kept (raising a limit must never cause denials — the bug redis-cell issue #54 reports).
//! Rescaling needs the old window's numbers, but a state word has no room for them. It has room
//! for 12 bits, so each distinct window is interned here once, when a limit is set, and state
//! carries the id. Reading state whose id differs from the current window's id means "written
//! under another limit": look the old window up here and rescale.
//!
//! Ids are recycled round-robin after 4095 distinct windows; state older than that many limit
//! changes may be rescaled from the wrong numbers, which only errs by one limit's worth. Id 0
//! means "unknown": such state is read as if written under the current limit.

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
    /// The id of (algo, window), allocating one if it is new.
    pub fn intern(&self, algo: Algorithm, w: &Window) -> u16 {
        let key = encode(algo, w);
        let mut ix = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&id) = ix.by_shape.get(&key) {
            return id;
        }
        ix.next = if ix.next as usize + 1 >= SHAPES {
            1
        } else {
            ix.next + 1
        };
        let id = ix.next;
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
        let id = s.intern(Algorithm::Gcra, &w);
        assert_ne!(id, 0);
        assert_eq!(s.intern(Algorithm::Gcra, &w), id);
        assert_ne!(s.intern(Algorithm::Fixed, &w), id);
        assert_eq!(s.get(id), Some((Algorithm::Gcra, w)));
        assert_eq!(s.get(0), None);
        let big = Window::new(u64::from(u32::MAX), 30 * 86_400_000, u64::from(u32::MAX)).unwrap();
        let id = s.intern(Algorithm::Sliding, &big);
        assert_eq!(s.get(id), Some((Algorithm::Sliding, big)));
    }

    #[test]
    fn ids_are_recycled_without_panicking() {
        let s = Shapes::default();
        for n in 1..(SHAPES as u64 + 10) {
            let w = Window::new(n, 1000, 0).unwrap();
            let id = s.intern(Algorithm::Gcra, &w);
            assert!(id >= 1 && (id as usize) < SHAPES);
            assert_eq!(s.get(id), Some((Algorithm::Gcra, w)));
        }
    }
}
