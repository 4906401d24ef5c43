//! How long one background expiry step takes while a million keys decay at once: the longest
//! any request can wait behind expiry work (the daemon runs one step per millisecond, on a
//! worker thread, between requests; see src/server.rs).
//!
//! Run: `cargo bench --bench expiry_step` (`RLD_EXPIRY_KEYS` overrides the 1,000,000 keys).
//! N keys are checked once under a 1/3s limit on a fake clock; the clock then jumps past their
//! decay and `Engine::expire_step(2048)` (the daemon's budget) is called until no key is left,
//! the clock moving 1 ms per step as in the daemon. Prints the number of steps and the
//! distribution of their wall-clock durations. The figures are for docs/PERFORMANCE.md; no test
//! depends on them.

use ratelimitd_engine::{Engine, EngineConfig, FakeClock, Limit, Scope, Window};
use std::time::{Duration, Instant};

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: keep that run small.
    let default = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        20_000
    };
    let n: u64 = std::env::var("RLD_EXPIRY_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let t0 = 1_700_000_000_000_000_000u64;
    let clock = FakeClock::new(t0);
    let e = Engine::new(clock.clone(), EngineConfig::default());
    let w = Window::new(1, 3_000, 0).expect("valid");
    e.set_limit(Scope::Default, Limit::new(vec![w]).expect("valid"));
    for i in 0..n {
        e.check(&i.to_le_bytes(), b"/api/search", 1);
    }
    assert_eq!(e.key_count(), n, "every key is live before the expiry");
    clock.advance(Duration::from_secs(4));
    let mut durations = Vec::new();
    let mut dropped = 0;
    while e.key_count() > 0 && durations.len() < 1_000_000 {
        let start = Instant::now();
        dropped += e.expire_step(2048);
        durations.push(start.elapsed());
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(e.key_count(), 0, "every key expired");
    durations.sort();
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q) as usize];
    println!("keys: {n}, dropped: {dropped}, steps: {}", durations.len());
    println!(
        "step duration: p50 {:?}, p99 {:?}, max {:?}, total {:?}",
        at(0.5),
        at(0.99),
        durations.last().copied().unwrap_or_default(),
        durations.iter().sum::<Duration>()
    );
}
