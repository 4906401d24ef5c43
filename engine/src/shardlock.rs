//! The lock of one shard: a test-and-set lock whose release is a plain store.
//!
//! Why not `std::sync::Mutex`: its unlock is an atomic swap (it must learn whether a waiter
//! sleeps on the futex), and on x86 every locked instruction waits for the store buffer to
//! drain. A check takes and releases one shard lock, so that swap was the single most
//! expensive instruction of a check: on the development VM ~25–30 ns of a 130 ns batched
//! check (`benches/engine.rs`, see docs/PERFORMANCE.md). Here release is a `Release` store,
//! which x86 executes like any other store.
//!
//! The price is that release cannot wake a sleeper, so a waiter never sleeps on the lock
//! itself: it spins briefly, then yields, then polls with short sleeps. That suits how shard
//! locks are held — one check's read-modify-write (tens of nanoseconds) almost always, a
//! bounded expiry step or a table re-pack (up to about a millisecond at 10M keys) rarely —
//! and how rarely they are contended (256 shards). A waiter behind a long hold loses at most
//! one poll interval after the release; nothing can be missed for longer, because the waiter
//! re-reads the lock word itself instead of waiting for a wake-up.
//!
//! There is no poisoning: every update under a shard lock is a single slot write, so a panic
//! elsewhere cannot leave a shard half-changed (the guard's `Drop` releases it while
//! unwinding), which is also why the std mutex's poison flag was always ignored here.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Busy-wait rounds before a waiter starts yielding its core.
const SPINS: u32 = 64;
/// Yields before a waiter starts sleeping between polls.
const YIELDS: u32 = 16;
/// Sleep between polls once a hold has lasted long enough to be a re-pack or expiry step.
const POLL: Duration = Duration::from_micros(20);

/// A lock around `T`. `repr(C)` keeps the lock word at the front, so a shard's lock and the
/// first fields of its value share a cache line (see `store::hints::Padded`).
#[repr(C)]
pub(crate) struct ShardLock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and at most one guard exists at a time
// (the `held` flag is taken with an acquiring compare-exchange and released with a releasing
// store), so sharing the lock between threads shares `T` only as a `Mutex` would.
unsafe impl<T: Send> Sync for ShardLock<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for ShardLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLock")
            .field("held", &self.held.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Exclusive access to a [`ShardLock`]'s value; releases the lock when dropped. Like
/// `MutexGuard` it stays on the thread that took it (so it cannot be held across an `.await`
/// of a task that may move).
pub(crate) struct ShardGuard<'a, T> {
    lock: &'a ShardLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard between threads shares only `&T`, which needs `T: Sync`.
unsafe impl<T: Sync> Sync for ShardGuard<'_, T> {}

impl<T> ShardLock<T> {
    pub fn new(value: T) -> ShardLock<T> {
        ShardLock {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub fn lock(&self) -> ShardGuard<'_, T> {
        if self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        ShardGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Whether some guard holds the lock now (for tests of who holds what when).
    #[cfg(test)]
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    #[cold]
    fn lock_contended(&self) {
        let mut round: u32 = 0;
        loop {
            // Wait for the word to read free before trying again: only the attempt is a
            // locked instruction, so waiters do not keep stealing the line from the holder.
            while self.held.load(Ordering::Relaxed) {
                if round < SPINS {
                    std::hint::spin_loop();
                } else if round < SPINS + YIELDS {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(POLL);
                }
                round = round.saturating_add(1);
            }
            if self
                .held
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T> Drop for ShardGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.held.store(false, Ordering::Release);
    }
}

impl<T> Deref for ShardGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see the `Sync` impl), so no `&mut T` exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for ShardGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_never_hold_it_together() {
        // A non-atomic read-modify-write under the lock: any overlap would lose increments.
        let lock = Arc::new(ShardLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let mut g = lock.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(*lock.lock(), 200_000);
    }

    #[test]
    fn a_waiter_behind_a_long_hold_gets_the_lock_after_release() {
        let lock = Arc::new(ShardLock::new(Vec::<u32>::new()));
        let mut guard = lock.lock();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let mut g = lock.lock();
                let seen = g.clone();
                g.push(2);
                seen
            })
        };
        // Long enough for the waiter to go through spinning and yielding into polling. (What
        // is asserted does not depend on it: the waiter must see the holder's last write.)
        std::thread::sleep(Duration::from_millis(30));
        guard.push(1);
        drop(guard);
        let seen = waiter.join().expect("waiter");
        assert_eq!(
            seen,
            vec![1],
            "the waiter got the lock only after the release"
        );
        assert_eq!(*lock.lock(), vec![1, 2]);
    }

    #[test]
    fn a_panic_under_the_lock_releases_it() {
        let lock = Arc::new(ShardLock::new(1u32));
        let l2 = lock.clone();
        let r = std::thread::spawn(move || {
            let mut g = l2.lock();
            *g = 7;
            panic!("while holding the shard lock");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(*lock.lock(), 7);
    }
}
