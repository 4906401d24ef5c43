//! Memory for the large slot tables, in transparent huge pages.
//!
//! Why: at ten million keys the tables hold a few hundred megabytes and every check lands on a
//! random slot, so besides the cache miss it takes a TLB miss whose page walk is itself a chain
//! of loads. Backed by 2 MiB pages the same tables need 512 times fewer TLB entries; measured
//! with glibc's own huge-page mode, a batched check at 10M keys was 13 % faster
//! (docs/PERFORMANCE.md, "The huge-page arena"). glibc cannot be asked for that from inside the process
//! (its switch is an environment variable read at start), and asking the kernel for huge pages
//! over memory malloc already handed out does not work: the per-shard tables (about 1 MB each
//! at 10M keys) sit in mappings of their own or in heap ranges that other allocations already
//! faulted in 4 KiB pages.
//!
//! So slot arrays of at least [`MIN_BYTES`] come from here instead: chunks of 64 MiB (or more,
//! for a larger array), 2 MiB-aligned, mapped with `mmap` and advised `MADV_HUGEPAGE` before
//! anything touches them, and shared out first-fit in cache-line granules. Freed blocks merge with
//! free neighbours; the whole 2 MiB pages inside a free block are given back to the system
//! (`MADV_DONTNEED`), and a chunk with nothing allocated in it is unmapped, so after a mass
//! expiry the memory goes back as it does through malloc. Allocation and freeing happen only
//! when a table is re-packed, under one process-wide mutex.
//!
//! The advice is a hint: with transparent huge pages set to `never` the arena still works, in
//! 4 KiB pages. Elsewhere than Linux, or if a mapping fails, tables use the global allocator.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Slot arrays at least this large come from the arena (a shard of about 1,300 GCRA keys; at
/// 256 shards, from about 350k keys in all). It was 256 KiB (from about 4M keys), but at 1M
/// keys, whose 256 tables of ~100 KiB span ~28 MB, checks also missed the TLB: with them in
/// huge pages a batched check at 1M keys was 11 % faster (docs/PERFORMANCE.md). Smaller arrays
/// stay with the global allocator: tables that small all fit in a few megabytes of cache and
/// TLB reach, and an array under 32 KiB would share its huge page with many others for nothing.
pub const MIN_BYTES: usize = 32 << 10;

/// Allocation unit inside a chunk, and the alignment of every block: one cache line. Blocks
/// need no page alignment (pages are only ever given back whole 2 MiB at a time, from inside
/// free blocks), so rounding costs at most 63 bytes per array.
pub const GRANULE: usize = 64;

const HUGE_PAGE: usize = 2 << 20;
const CHUNK: usize = 64 << 20;

/// One mapping: `[base, base + len)`, 2 MiB-aligned, with its free blocks (address → length).
#[derive(Debug)]
struct Chunk {
    base: usize,
    len: usize,
    free: BTreeMap<usize, usize>,
    used: usize,
}

#[derive(Debug)]
struct Arena {
    chunks: Vec<Chunk>,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena { chunks: Vec::new() });

/// Whether new large arrays come from the arena (the daemon's `--huge-pages`).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn the arena on or off for the arrays allocated from now on. Process-wide, like the
/// arena itself; arrays already in it stay there until their table is re-packed. Off, every
/// table comes from the global allocator, as before the arena existed: for hosts where
/// transparent huge pages are unwanted (see docs/OPERATIONS.md).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// See [`set_enabled`].
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn arena() -> std::sync::MutexGuard<'static, Arena> {
    // Nothing under this lock panics on a valid use (only a double free could, through the
    // `used` subtraction); a poisoned lock is used as is rather than refusing every table.
    ARENA.lock().unwrap_or_else(|e| e.into_inner())
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to).saturating_mul(to)
}

/// Bytes mapped and bytes handed out, for accounting and tests.
pub fn usage() -> (usize, usize) {
    let a = arena();
    let mapped = a.chunks.iter().map(|c| c.len).sum();
    let used = a.chunks.iter().map(|c| c.used).sum();
    (mapped, used)
}

/// A block of at least `bytes` (rounded up to [`GRANULE`]s), aligned to a granule, and its
/// size; `None` if no memory could be mapped (the caller falls back to the global allocator).
/// The block's contents are unspecified.
pub(crate) fn alloc(bytes: usize) -> Option<(NonNull<u8>, usize)> {
    if bytes == 0 {
        return None;
    }
    let size = round_up(bytes, GRANULE);
    let mut a = arena();
    for chunk in &mut a.chunks {
        if let Some(addr) = chunk.take(size) {
            return NonNull::new(addr as *mut u8).map(|p| (p, size));
        }
    }
    let len = round_up(size, HUGE_PAGE).max(CHUNK);
    let base = map_chunk(len)?;
    let mut chunk = Chunk {
        base,
        len,
        free: BTreeMap::from([(base, len)]),
        used: 0,
    };
    // The chunk holds at least `size` bytes, so this cannot fail; if it did, the mapping is
    // given back rather than leaked.
    let Some(addr) = chunk.take(size) else {
        unmap(base, len);
        return None;
    };
    a.chunks.push(chunk);
    NonNull::new(addr as *mut u8).map(|p| (p, size))
}

/// Give back a block from [`alloc`].
///
/// # Safety
/// `ptr` and `size` are exactly what one earlier `alloc` returned, the block is not freed
/// twice, and nothing uses it afterwards.
pub(crate) unsafe fn free(ptr: NonNull<u8>, size: usize) {
    let addr = ptr.as_ptr() as usize;
    let mut a = arena();
    let Some(i) = a
        .chunks
        .iter()
        .position(|c| c.base <= addr && addr < c.base + c.len)
    else {
        debug_assert!(false, "freed block {addr:#x} is in no chunk");
        return;
    };
    let chunk = &mut a.chunks[i];
    let (start, len) = chunk.give_back(addr, size);
    if chunk.used == 0 {
        let chunk = a.chunks.swap_remove(i);
        unmap(chunk.base, chunk.len);
    } else {
        release_whole_pages(start, len);
    }
}

impl Chunk {
    /// First fit: the lowest free block that holds `size` bytes gives its first `size` bytes.
    fn take(&mut self, size: usize) -> Option<usize> {
        let (&addr, &len) = self.free.iter().find(|(_, &len)| len >= size)?;
        self.free.remove(&addr);
        if len > size {
            self.free.insert(addr + size, len - size);
        }
        self.used += size;
        Some(addr)
    }

    /// Return a block to the free list, merged with free neighbours; the merged block.
    fn give_back(&mut self, addr: usize, size: usize) -> (usize, usize) {
        let (mut start, mut len) = (addr, size);
        if let Some((&prev, &prev_len)) = self.free.range(..addr).next_back() {
            if prev + prev_len == addr {
                self.free.remove(&prev);
                start = prev;
                len += prev_len;
            }
        }
        if let Some(next_len) = self.free.remove(&(addr + size)) {
            len += next_len;
        }
        self.free.insert(start, len);
        self.used -= size;
        (start, len)
    }
}

#[cfg(target_os = "linux")]
fn map_chunk(len: usize) -> Option<usize> {
    let span = len.checked_add(HUGE_PAGE)?;
    // SAFETY: a fresh private anonymous mapping chosen by the kernel: it aliases nothing.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let raw = raw as usize;
    let base = round_up(raw, HUGE_PAGE);
    // Trim the unaligned head and the tail, so the chunk starts and ends on 2 MiB boundaries.
    unmap(raw, base - raw);
    unmap(base + len, raw + span - (base + len));
    // SAFETY: [base, base + len) is the mapping just made; MADV_HUGEPAGE only sets a flag on
    // it (its pages are not touched yet, so they will be faulted in as huge pages).
    unsafe {
        libc::madvise(base as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    Some(base)
}

#[cfg(not(target_os = "linux"))]
fn map_chunk(_len: usize) -> Option<usize> {
    None
}

fn unmap(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    if len > 0 {
        // SAFETY: only called on ranges of this module's own mappings that hold no live block
        // (the trimmed ends of a new chunk, or a chunk with nothing allocated in it).
        unsafe {
            libc::munmap(addr as *mut libc::c_void, len);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

/// Let the system take back the whole 2 MiB pages inside the free block `[start, start+len)`
/// (only whole pages, so no huge page in use is split). They read as zeros if reused.
fn release_whole_pages(start: usize, len: usize) {
    let from = round_up(start, HUGE_PAGE);
    let to = (start + len) / HUGE_PAGE * HUGE_PAGE;
    #[cfg(target_os = "linux")]
    if to > from {
        // SAFETY: [from, to) lies inside a free block of one of our chunks: no live data.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (from, to);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk's free list, taken and given back at random against a model of which granules
    /// are in use: blocks never overlap, stay inside the chunk, and everything merges back.
    #[test]
    fn first_fit_with_merging_matches_a_model() {
        let base = 1 << 40;
        let len = 64 * GRANULE;
        let mut chunk = Chunk {
            base,
            len,
            free: BTreeMap::from([(base, len)]),
            used: 0,
        };
        let mut owned: Vec<(usize, usize)> = Vec::new();
        let mut in_use = [false; 64];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !x.is_multiple_of(3) || owned.is_empty() {
                let size = (1 + (x >> 8) as usize % 6) * GRANULE;
                let need = size / GRANULE;
                // First fit: the lowest run of enough free granules.
                let lowest = (0..=in_use.len().saturating_sub(need))
                    .find(|&g| in_use[g..g + need].iter().all(|u| !u));
                if let Some(addr) = chunk.take(size) {
                    assert_eq!(Some((addr - base) / GRANULE), lowest, "not the first fit");
                    assert!(addr >= base && addr + size <= base + len);
                    let granules = (addr - base) / GRANULE..(addr - base + size) / GRANULE;
                    for used in &mut in_use[granules] {
                        assert!(!*used, "a granule handed out twice");
                        *used = true;
                    }
                    owned.push((addr, size));
                } else {
                    assert_eq!(lowest, None, "a fit of {need} granules was missed");
                }
            } else {
                let (addr, size) = owned.swap_remove((x >> 16) as usize % owned.len());
                chunk.give_back(addr, size);
                let granules = (addr - base) / GRANULE..(addr - base + size) / GRANULE;
                in_use[granules].fill(false);
            }
            let used: usize = owned.iter().map(|b| b.1).sum();
            assert_eq!(chunk.used, used);
            // Free blocks are maximal: no two of them touch.
            let blocks: Vec<_> = chunk.free.iter().map(|(&a, &l)| (a, l)).collect();
            for w in blocks.windows(2) {
                assert!(w[0].0 + w[0].1 < w[1].0, "unmerged neighbours {w:?}");
            }
        }
        for (addr, size) in owned.drain(..) {
            chunk.give_back(addr, size);
        }
        assert_eq!(chunk.free.len(), 1);
        assert_eq!(chunk.used, 0);
    }

    /// Shards re-pack their tables on several threads at once: blocks handed out concurrently
    /// never overlap (each thread fills its blocks with its own byte and finds it intact).
    #[cfg(target_os = "linux")]
    #[test]
    fn concurrent_blocks_never_overlap() {
        let threads: Vec<_> = (1..=4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut held: Vec<(NonNull<u8>, usize)> = Vec::new();
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(t);
                    for _ in 0..300 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if held.len() < 6 && x.is_multiple_of(2) {
                            let bytes = MIN_BYTES + (x >> 20) as usize % (3 * MIN_BYTES);
                            let (p, size) = alloc(bytes).expect("mapped");
                            // SAFETY: a fresh block of `size` bytes, ours alone.
                            unsafe { std::ptr::write_bytes(p.as_ptr(), t, size) };
                            held.push((p, size));
                        } else if let Some((p, size)) = held.pop() {
                            // SAFETY: the block is ours, of `size` bytes, freed once.
                            unsafe {
                                let s = std::slice::from_raw_parts(p.as_ptr(), size);
                                assert!(s.iter().all(|&b| b == t), "block overwritten");
                                free(p, size);
                            }
                        }
                    }
                    for (p, size) in held {
                        // SAFETY: as above.
                        unsafe { free(p, size) };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread panicked");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn blocks_are_usable_aligned_and_chunks_go_back_when_empty() {
        let (a, sa) = alloc(MIN_BYTES + 1).expect("mapped");
        let (b, sb) = alloc(3 * MIN_BYTES).expect("mapped");
        assert_eq!(sa, MIN_BYTES + GRANULE);
        assert_eq!(b.as_ptr() as usize % GRANULE, 0);
        assert_eq!(sb, 3 * MIN_BYTES);
        assert_eq!(a.as_ptr() as usize % GRANULE, 0);
        // SAFETY: both blocks are ours, of the sizes returned, and disjoint.
        unsafe {
            std::ptr::write_bytes(a.as_ptr(), 0xAB, sa);
            std::ptr::write_bytes(b.as_ptr(), 0xCD, sb);
            assert_eq!(*a.as_ptr().add(sa - 1), 0xAB);
            assert_eq!(*b.as_ptr(), 0xCD);
            free(a, sa);
            free(b, sb);
        }
        // A block larger than a chunk gets a chunk of its own, which goes back to the system
        // when the block is freed. The block fills its chunk exactly, so no block of the tests
        // running concurrently can land in the same chunk; they map chunks of their own,
        // possibly at the same address once this one is gone, but never of this length.
        let big = CHUNK + HUGE_PAGE;
        let (p, size) = alloc(big).expect("mapped");
        let own = |a: &Arena| {
            a.chunks
                .iter()
                .any(|c| c.len == round_up(big, HUGE_PAGE) && c.base == p.as_ptr() as usize)
        };
        assert!(own(&arena()), "the big block has its own chunk");
        // SAFETY: the block is ours, of `size` bytes, freed once.
        unsafe { free(p, size) };
        assert!(!own(&arena()), "its chunk was unmapped");
    }
}
