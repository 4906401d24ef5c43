//! Memory per tracked GCRA key: insert N distinct keys and report, divided by N, the live heap
//! bytes (a counting global allocator: every allocation minus every free; plus what the
//! engine's huge-page arena has handed out, which bypasses the allocator), the engine's own
//! accounting (table and wheel capacity), and the process RSS growth (which adds what the
//! allocator keeps from freed growth steps).
//!
//! Run: `cargo bench --bench memory` (N defaults to 1,000,000; `RLD_MEM_KEYS` overrides).
//! Prints one line per measure; docs/PERFORMANCE.md records them.

use ratelimitd_engine::{Engine, EngineConfig, Limit, Scope, SystemClock, Window};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes the engine's slot-table arena has handed out (memory the counting allocator does not
/// see).
fn arena_used() -> i64 {
    i64::try_from(ratelimitd_engine::arena::usage().1).unwrap_or(i64::MAX)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and then this runs
    // as a quick smoke test on 10k keys.
    let default = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let n: u64 = std::env::var("RLD_MEM_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let e = Engine::new(SystemClock::new(), EngineConfig::default());
    let w = Window::new(1000, 3_600_000, 0).expect("valid");
    e.set_limit(Scope::Default, Limit::new(vec![w]).expect("valid"));
    let before_rss = ratelimitd::process::rss_bytes();
    let before = e.memory_bytes();
    let before_live = LIVE.load(Ordering::Relaxed) + arena_used();
    for i in 0..n {
        e.check(&i.to_le_bytes(), b"/api/search", 1);
    }
    let after_rss = ratelimitd::process::rss_bytes();
    let after = e.memory_bytes();
    let keys = e.key_count();
    let live = LIVE.load(Ordering::Relaxed) + arena_used() - before_live;
    println!("keys: {keys}");
    println!(
        "live heap: {live} bytes -> {:.1} B/key",
        live as f64 / keys as f64
    );
    println!(
        "engine accounting: {} bytes -> {:.1} B/key",
        after - before,
        (after - before) as f64 / keys as f64
    );
    println!(
        "RSS growth: {} bytes -> {:.1} B/key",
        after_rss.saturating_sub(before_rss),
        after_rss.saturating_sub(before_rss) as f64 / keys as f64
    );
    println!(
        "live heap in the huge-page arena (slot arrays of {} KiB and up): {} bytes",
        ratelimitd_engine::arena::MIN_BYTES >> 10,
        ratelimitd_engine::arena::usage().1
    );
}
