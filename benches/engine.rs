//! Engine check cost: ns per RL.CHECK at 1k, 1M and 10M live keys, on one thread and on two;
//! and ns per CL.THROTTLE, batched as the daemon runs a pipeline of them.
//!
//! Run: `cargo bench --bench engine` (set `RLD_BENCH_KEYS=1000,1000000` to skip 10M).
//! Each key is a distinct (client, endpoint) pair under one GCRA limit (10^9 per hour) that
//! no key can exhaust during a run and that nothing decays from, so every check at every size
//! takes the same path: allowed, state written. (With a small limit the 1k-key run, whose keys
//! are each checked tens of thousands of times, measured denials while the 1M-key run measured
//! admissions.) Every iteration checks a pseudo-random key, so the table lookups miss the CPU
//! caches as they would in production at that size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ratelimitd_engine::{
    CheckRequest, CheckResult, Engine, EngineConfig, Limit, Scope, SystemClock, ThrottleArgs,
    Window,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn sizes() -> Vec<usize> {
    // `cargo test --all-targets` runs benches once as a smoke test, without `--bench`: keep
    // that run small (and in the debug profile it would take minutes at 10M keys).
    if !std::env::args().any(|a| a == "--bench") {
        return vec![1_000];
    }
    std::env::var("RLD_BENCH_KEYS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 1_000_000, 10_000_000])
}

/// Client ids as 8 bytes of the index (short and cheap to build in the loop).
fn client(i: u64) -> [u8; 8] {
    i.to_le_bytes()
}

fn populated(keys: u64) -> Arc<Engine<SystemClock>> {
    let e = Engine::new(SystemClock::new(), EngineConfig::default());
    let w = Window::new(1_000_000_000, 3_600_000, 0).expect("valid");
    e.set_limit(Scope::Default, Limit::new(vec![w]).expect("valid"));
    for i in 0..keys {
        e.check(&client(i), b"/api/search", 1);
    }
    Arc::new(e)
}

/// xorshift64: a cheap, deterministic stream of key indices.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A pseudo-random key index below `keys` (multiply-shift: a `%` is a division, and the
/// harness's own cost is part of every figure).
fn pick(x: &mut u64, keys: u64) -> u64 {
    ((u128::from(next(x)) * u128::from(keys)) >> 64) as u64
}

/// One `check_many` call over 16 pseudo-random keys of `keys`.
fn check_batch(e: &Engine<SystemClock>, x: &mut u64, keys: u64, out: &mut Vec<CheckResult>) {
    let ids: [[u8; 8]; 16] = std::array::from_fn(|_| client(pick(x, keys)));
    let reqs: [CheckRequest<'_>; 16] = std::array::from_fn(|i| CheckRequest {
        client: &ids[i],
        endpoint: b"/api/search",
        cost: 1,
    });
    out.clear();
    e.check_many(&reqs, out);
    criterion::black_box(&*out);
}

fn checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("rl_check");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for keys in sizes() {
        let e = populated(keys as u64);
        group.bench_with_input(BenchmarkId::new("1_thread", keys), &keys, |b, &keys| {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            b.iter(|| {
                let i = pick(&mut x, keys as u64);
                e.check(&client(i), b"/api/search", 1)
            })
        });
        group.bench_with_input(BenchmarkId::new("batch16", keys), &keys, |b, &keys| {
            // 16 checks per `check_many` call, as the daemon gets them from a 16-deep pipeline;
            // the figure is still ns per check.
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut out: Vec<CheckResult> = Vec::with_capacity(16);
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters.div_ceil(16) {
                    check_batch(&e, &mut x, keys as u64, &mut out);
                }
                start.elapsed() * iters as u32 / (iters.div_ceil(16) * 16) as u32
            })
        });
        group.bench_with_input(
            BenchmarkId::new("2_threads_batch16", keys),
            &keys,
            |b, &keys| {
                // Both at once: two threads, each deciding batches of 16 (aggregate ns/check).
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    let handles: Vec<_> = (0..2u64)
                        .map(|t| {
                            let e = e.clone();
                            std::thread::spawn(move || {
                                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                                let mut out: Vec<CheckResult> = Vec::with_capacity(16);
                                for _ in 0..(iters / 2).div_ceil(16) {
                                    check_batch(&e, &mut x, keys as u64, &mut out);
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        let _ = h.join();
                    }
                    start.elapsed()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("2_threads", keys), &keys, |b, &keys| {
            // Two threads share the iterations; time is wall-clock, so the figure is ns per
            // check of aggregate throughput.
            b.iter_custom(|iters| {
                let start = Instant::now();
                let handles: Vec<_> = (0..2u64)
                    .map(|t| {
                        let e = e.clone();
                        std::thread::spawn(move || {
                            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                            for _ in 0..iters / 2 {
                                let i = pick(&mut x, keys as u64);
                                criterion::black_box(e.check(&client(i), b"/api/search", 1));
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    let _ = h.join();
                }
                start.elapsed()
            })
        });
        drop(e);
    }
    group.finish();
}

/// CL.THROTTLE arguments no key exhausts during a run (10^9 per hour), for the same reason
/// as the RL.CHECK limit above: every throttle takes the same path, allowed and stored.
const THROTTLE: ThrottleArgs = ThrottleArgs {
    max_burst: 1_000_000_000,
    count: 1_000_000_000,
    period_s: 3600,
    quantity: 1,
};

fn throttles(c: &mut Criterion) {
    let mut group = c.benchmark_group("cl_throttle");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for keys in sizes() {
        let e = Engine::new(SystemClock::new(), EngineConfig::default());
        for i in 0..keys as u64 {
            e.throttle_at(&client(i), THROTTLE, e.now()).expect("valid");
        }
        group.bench_with_input(BenchmarkId::new("batch16", keys), &keys, |b, &keys| {
            // As the daemon runs a 16-deep pipeline of CL.THROTTLEs: every key prefetched,
            // then each throttled in turn with the fingerprint its prefetch worked out. The
            // figure is ns per throttle.
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters.div_ceil(16) {
                    let ids: [[u8; 8]; 16] =
                        std::array::from_fn(|_| client(pick(&mut x, keys as u64)));
                    let hints: [_; 16] = std::array::from_fn(|i| e.prefetch_throttle(&ids[i]));
                    let now = e.now();
                    for (id, hint) in ids.iter().zip(hints) {
                        let r = e.throttle_prefetched_at(hint, id, THROTTLE, now);
                        criterion::black_box(r.expect("valid"));
                    }
                }
                start.elapsed() * iters as u32 / (iters.div_ceil(16) * 16) as u32
            })
        });
    }
    group.finish();
}

criterion_group!(benches, checks, throttles);
criterion_main!(benches);
