//! A fixed-length array of slots whose memory comes from the huge-page arena when it is large
//! (see `arena.rs`) and from the global allocator otherwise.
//!
//! Not a `Vec`: a `Vec` can only hold memory of the global allocator. Like the `Vec` it
//! replaces, it is three words, so a table's header still fits where the shard layout expects
//! it (`store::hints::Padded`).

use crate::arena;
use std::ptr::NonNull;

/// Marks `alloc` as an arena block (its size in bytes in the other bits) rather than a `Vec`'s
/// capacity in elements.
const ARENA_BLOCK: usize = 1 << (usize::BITS - 1);

pub(crate) struct Slots<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    alloc: usize,
}

// SAFETY: a `Slots` owns its elements exclusively, like a `Vec<T>`; the arena it may return
// memory to is behind a mutex.
unsafe impl<T: Copy + Send> Send for Slots<T> {}
// SAFETY: shared access only reads the elements, like `&Vec<T>`.
unsafe impl<T: Copy + Sync> Sync for Slots<T> {}

impl<T: Copy> Slots<T> {
    /// No slots, no memory.
    pub fn new() -> Slots<T> {
        Slots {
            ptr: NonNull::dangling(),
            len: 0,
            alloc: 0,
        }
    }

    /// `len` slots holding `value`.
    pub fn filled(len: usize, value: T) -> Slots<T> {
        // A Vec of a zero-sized type reports a capacity of usize::MAX, whose top bit is the
        // arena tag: slots are never zero-sized, and this keeps it so.
        const { assert!(std::mem::size_of::<T>() != 0) };
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        if (arena::MIN_BYTES..ARENA_BLOCK).contains(&bytes)
            && std::mem::align_of::<T>() <= arena::GRANULE
            && arena::enabled()
        {
            if let Some((block, size)) = arena::alloc(bytes) {
                let ptr = block.cast::<T>();
                for i in 0..len {
                    // SAFETY: the block holds `size >= len * size_of::<T>()` bytes, granule
                    // aligned (so aligned for T), and is ours alone.
                    unsafe { ptr.as_ptr().add(i).write(value) };
                }
                return Slots {
                    ptr,
                    len,
                    alloc: ARENA_BLOCK | size,
                };
            }
        }
        let mut v = std::mem::ManuallyDrop::new(vec![value; len]);
        Slots {
            // A Vec's pointer is never null (dangling when it has no capacity).
            ptr: NonNull::new(v.as_mut_ptr()).unwrap_or(NonNull::dangling()),
            len: v.len(),
            alloc: v.capacity(),
        }
    }

    /// Bytes of memory held.
    pub fn bytes(&self) -> usize {
        if self.alloc & ARENA_BLOCK != 0 {
            self.alloc & !ARENA_BLOCK
        } else {
            self.alloc * std::mem::size_of::<T>()
        }
    }
}

impl<T: Copy> Drop for Slots<T> {
    fn drop(&mut self) {
        if self.alloc & ARENA_BLOCK != 0 {
            // SAFETY: the block and its size are what `arena::alloc` returned in `filled`,
            // freed once, here.
            unsafe { arena::free(self.ptr.cast(), self.alloc & !ARENA_BLOCK) };
        } else {
            // SAFETY: pointer, length and capacity are those of the Vec taken apart in
            // `filled` (or of an empty one), given back once.
            drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), self.len, self.alloc) });
        }
    }
}

impl<T: Copy> std::ops::Deref for Slots<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements at `ptr`, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for Slots<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("len", &self.len)
            .field("bytes", &self.bytes())
            .field("arena", &(self.alloc & ARENA_BLOCK != 0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_arrays_read_back_and_account_their_memory() {
        for len in [
            0usize,
            1,
            1000,
            arena::MIN_BYTES / 16,
            3 * arena::MIN_BYTES / 16 + 5,
        ] {
            let mut s = Slots::filled(len, (0u64, 7u64));
            assert_eq!(s.len(), len);
            assert!(s.iter().all(|&x| x == (0, 7)));
            if let Some(last) = s.last_mut() {
                *last = (1, 2);
            }
            if len > 0 {
                assert_eq!(s[len - 1], (1, 2));
            }
            assert!(s.bytes() >= len * 16);
            if len * 16 >= arena::MIN_BYTES && cfg!(target_os = "linux") {
                assert_eq!(s.bytes() % arena::GRANULE, 0, "{s:?}");
            } else {
                assert_eq!(s.bytes(), len * 16, "{s:?}");
            }
        }
        let empty: Slots<u64> = Slots::new();
        assert!(empty.is_empty());
        assert_eq!(empty.bytes(), 0);
    }
}
