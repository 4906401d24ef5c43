//! How long single checks take while a flood of new keys keeps the store at its memory bound
//! and evicting: the in-process view of `benches/flood.sh`, without the network or the
//! scheduler between the engine and the clock.
//!
//! Run: `cargo bench --bench evict_flood` (`RLD_FLOOD_KEYS` overrides the 10,000,000 keys;
//! `RLD_FLOOD_ARENA=off` takes the tables out of the huge-page arena). The engine has the
//! daemon's 256 shards, a 64 MiB bound with evict-nearest, and a 100/1h limit, so nothing decays
//! during the run. Every key `flood:<i>` is checked once with `Engine::check`, and every
//! millisecond of wall-clock time an `Engine::expire_step(2048)` runs, as the daemon's
//! background step does. Prints how many checks fell in each decade of wall-clock time and the
//! longest ones. The figures are for docs/PERFORMANCE.md; no test depends on them.

use ratelimitd_engine::{
    arena, Engine, EngineConfig, EvictionPolicy, Limit, Scope, SystemClock, Window,
};
use std::time::{Duration, Instant};

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: keep that run small.
    let default = if std::env::args().any(|a| a == "--bench") {
        10_000_000
    } else {
        20_000
    };
    let n: u64 = std::env::var("RLD_FLOOD_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    if std::env::var("RLD_FLOOD_ARENA").is_ok_and(|v| v == "off") {
        arena::set_enabled(false);
    }
    let e = Engine::new(
        SystemClock::new(),
        EngineConfig {
            max_memory: Some(64 << 20),
            policy: EvictionPolicy::EvictNearest,
            ..EngineConfig::default()
        },
    );
    let w = Window::new(100, 3_600_000, 0).expect("valid");
    e.set_limit(Scope::Default, Limit::new(vec![w]).expect("valid"));
    // Checks under 1 us, 10 us, 100 us, 1 ms, 10 ms, and longer.
    let mut decades = [0u64; 6];
    let mut longest: Vec<(Duration, u64)> = Vec::new();
    let started = Instant::now();
    let mut next_step = Duration::from_millis(1);
    let mut key = Vec::with_capacity(32);
    for i in 0..n {
        key.clear();
        key.extend_from_slice(format!("flood:{i}").as_bytes());
        let t0 = Instant::now();
        e.check(&key, b"/e", 1);
        let took = t0.elapsed();
        let decade = match took.as_nanos() {
            0..=999 => 0,
            1_000..=9_999 => 1,
            10_000..=99_999 => 2,
            100_000..=999_999 => 3,
            1_000_000..=9_999_999 => 4,
            _ => 5,
        };
        decades[decade] += 1;
        if took >= Duration::from_millis(1) {
            longest.push((took, i));
        }
        if i % 256 == 0 && started.elapsed() >= next_step {
            e.expire_step(2048);
            next_step = started.elapsed() + Duration::from_millis(1);
        }
    }
    let total = started.elapsed();
    println!(
        "{n} new keys at a 64 MiB bound, arena {}: {:.2} s, {:.2} us per check on average; {} keys held",
        if arena::enabled() { "on" } else { "off" },
        total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / n as f64,
        e.key_count()
    );
    println!(
        "checks under 1 us: {}, 1-10 us: {}, 10-100 us: {}, 0.1-1 ms: {}, 1-10 ms: {}, 10 ms and over: {}",
        decades[0], decades[1], decades[2], decades[3], decades[4], decades[5]
    );
    longest.sort_unstable_by(|a, b| b.cmp(a));
    let shown: Vec<String> = longest
        .iter()
        .take(5)
        .map(|(d, _)| format!("{:.2} ms", d.as_secs_f64() * 1e3))
        .collect();
    println!("longest: {}", shown.join(", "));
}
