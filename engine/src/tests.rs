//! Engine-level tests, one file per topic, and the helpers they share. Every test drives a
//! [`FakeClock`]; none sleeps.
//!
//! - `checks`: RL.CHECK and RL.PEEK under one GCRA window, RL.RESET, GCRA invariants;
//! - `batch`: batched checks;
//! - `multi_window`: limits of several windows;
//! - `algorithms`: fixed and sliding windows;
//! - `limits`: limits, tiers and precedence, RL.EXPLAIN, shape ids;
//! - `rescaling`: state read under a changed limit;
//! - `throttle`: CL.THROTTLE;
//! - `kv`: key-value items;
//! - `expiry`: decay, purging and the timing wheels;
//! - `bounds`: the key and byte bounds and eviction;
//! - `snapshot`: saving and restoring;
//! - `replication`: the change feed;
//! - `memory`: memory per key.

mod algorithms;
mod batch;
mod bounds;
mod checks;
mod expiry;
mod kv;
mod limits;
mod memory;
mod multi_window;
mod replication;
mod rescaling;
mod snapshot;
mod throttle;

use std::time::Duration;

use super::*;

const T0: Nanos = 1_700_000_000_000_000_000;

fn engine() -> (Engine<FakeClock>, FakeClock) {
    engine_with_shards(256)
}

fn engine_with_shards(shards: usize) -> (Engine<FakeClock>, FakeClock) {
    let clock = FakeClock::new(T0);
    let config = EngineConfig {
        shards,
        ..EngineConfig::default()
    };
    (Engine::new(clock.clone(), config), clock)
}

/// An unbounded engine of one shard, on a fake clock.
fn one_shard() -> (Engine<FakeClock>, FakeClock) {
    let clock = FakeClock::new(T0);
    let config = EngineConfig {
        shards: 1,
        ..EngineConfig::default()
    };
    (Engine::new(clock.clone(), config), clock)
}

fn bounded(max_keys: u64, policy: EvictionPolicy) -> (Engine<FakeClock>, FakeClock) {
    let clock = FakeClock::new(T0);
    let config = EngineConfig {
        shards: 1,
        max_keys: Some(max_keys),
        max_memory: None,
        policy,
    };
    (Engine::new(clock.clone(), config), clock)
}

fn window(count: u64, period_ms: u64, burst: u64) -> Window {
    Window::new(count, period_ms, burst).expect("valid window")
}

fn limit(windows: &[Window]) -> Limit {
    Limit::new(windows.to_vec()).expect("valid limit")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pattern(s: &str) -> EndpointPattern {
    EndpointPattern::new(s.as_bytes()).expect("valid pattern")
}

fn put(value: &[u8], expires_at: Option<Nanos>) -> KvWrite {
    KvWrite::Put(Item {
        value: value.to_vec(),
        flags: 0,
        cas: 0,
        expires_at,
    })
}

fn throttle_args(max_burst: i64, count: i64, period_s: i64, quantity: i64) -> ThrottleArgs {
    ThrottleArgs {
        max_burst,
        count,
        period_s,
        quantity,
    }
}
