//! Instructions per batched check, for `benches/icount.sh` to count under callgrind.
//!
//! Why a second engine bench: on the development VM the speed of one and the same binary
//! drifts by 15–30 % from minute to minute, so two builds that differ by a few percent can
//! only be told apart in long interleaved runs (`benches/engine-ab.sh`). The number of
//! instructions a check executes does not drift: callgrind counts them exactly, run after run,
//! whatever else the machine does. It is not time (a cache miss costs one instruction here),
//! so it judges changes to the work a check does, not to how it waits on memory.
//!
//! Same workload as `rl_check/batch16` in `benches/engine.rs`: KEYS (default 1000) distinct
//! keys under one GCRA limit nothing exhausts, checked 16 per `check_many` call at pseudo-random
//! keys. `icount::run` is the function callgrind is told to count (`--toggle-collect`).

use ratelimitd_engine::{
    CheckRequest, CheckResult, Engine, EngineConfig, Limit, Scope, SystemClock, Window,
};

/// xorshift64, as in `benches/engine.rs`.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn pick(x: &mut u64, keys: u64) -> u64 {
    ((u128::from(next(x)) * u128::from(keys)) >> 64) as u64
}

/// `batches` calls of `check_many` over 16 keys each; returns how many were allowed (all of
/// them: the limit is never exhausted).
#[inline(never)]
fn run(e: &Engine<SystemClock>, keys: u64, batches: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out: Vec<CheckResult> = Vec::with_capacity(16);
    let mut allowed = 0;
    for _ in 0..batches {
        let ids: [[u8; 8]; 16] = std::array::from_fn(|_| pick(&mut x, keys).to_le_bytes());
        let reqs: [CheckRequest<'_>; 16] = std::array::from_fn(|i| CheckRequest {
            client: &ids[i],
            endpoint: b"/api/search",
            cost: 1,
        });
        out.clear();
        e.check_many(&reqs, &mut out);
        allowed += out.iter().filter(|r| r.allowed).count() as u64;
    }
    allowed
}

fn main() {
    let keys: u64 = std::env::var("RLD_ICOUNT_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    // `cargo test --all-targets` runs this once without `--bench`: keep that run tiny.
    let batches = if std::env::args().any(|a| a == "--bench") {
        20_000
    } else {
        10
    };
    let e = Engine::new(SystemClock::new(), EngineConfig::default());
    let w = Window::new(1_000_000_000, 3_600_000, 0).expect("valid");
    e.set_limit(Scope::Default, Limit::new(vec![w]).expect("valid"));
    for i in 0..keys {
        e.check(&i.to_le_bytes(), b"/api/search", 1);
    }
    let allowed = run(&e, keys, batches);
    assert_eq!(allowed, batches * 16, "every check is allowed");
    println!("checks {}", batches * 16);
}
