//! Property tests of the three algorithms against simple reference models, through the public
//! engine API with a fake clock:
//!
//! - nothing admits more than the allowance the algorithm promises, in any window it promises
//!   it for (GCRA: `capacity + elapsed / T` over any span; fixed and sliding: `capacity` per
//!   aligned window, and sliding also keeps its weighted estimate within `capacity`);
//! - `retry_after_ms` is honest: retrying exactly then, with nothing else consumed, succeeds;
//! - `retry_after_ms` is -1 only when the cost can never fit.

use proptest::prelude::*;
use ratelimitd_engine::{Algorithm, Engine, EngineConfig, FakeClock, Limit, Scope, Window};
use std::time::Duration;

const T0: u64 = 1_700_000_000_000_000_000;

#[derive(Debug, Clone)]
struct Case {
    algo: Algorithm,
    count: u64,
    period_ms: u64,
    burst: u64,
    /// (advance ms, cost, retry right after a denial?)
    steps: Vec<(u64, u64, bool)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just(Algorithm::Gcra),
            Just(Algorithm::Fixed),
            Just(Algorithm::Sliding)
        ],
        1u64..20,
        prop_oneof![Just(1u64), Just(7), Just(100), Just(1000), Just(60_000)],
        0u64..5,
        prop::collection::vec((0u64..400, 0u64..8, any::<bool>()), 1..120),
    )
        .prop_map(|(algo, count, period_ms, burst, steps)| Case {
            algo,
            count,
            period_ms,
            burst,
            steps,
        })
}

/// Run a case; returns the admitted (time ns, cost) list.
fn run(c: &Case) -> Vec<(u64, u64)> {
    let clock = FakeClock::new(T0);
    let e = Engine::new(
        clock.clone(),
        EngineConfig {
            shards: 4,
            ..EngineConfig::default()
        },
    );
    let w = Window::new(c.count, c.period_ms, c.burst).unwrap();
    e.set_limit(
        Scope::Default,
        Limit::new(vec![w]).unwrap().with_algorithm(c.algo),
    );
    let cap = c.count + c.burst;
    let mut admitted = Vec::new();
    for &(adv, cost, retry) in &c.steps {
        clock.advance(Duration::from_millis(adv));
        let r = e.check(b"k", b"/e", cost);
        if r.allowed {
            if cost > 0 {
                admitted.push((e.now(), cost));
            }
            continue;
        }
        if r.retry_after_ms < 0 {
            assert!(
                cost > cap,
                "retry -1 only when the cost can never fit: {r:?} cost {cost}"
            );
            continue;
        }
        assert!(cost <= cap);
        if retry {
            clock.advance(Duration::from_millis(r.retry_after_ms as u64));
            let again = e.check(b"k", b"/e", cost);
            assert!(
                again.allowed,
                "retry after {} ms must succeed: {again:?}",
                r.retry_after_ms
            );
            admitted.push((e.now(), cost));
        }
    }
    admitted
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn never_more_than_promised_and_retry_is_honest(c in case()) {
        let admitted = run(&c);
        let cap = c.count + c.burst;
        let p = c.period_ms * 1_000_000;
        match c.algo {
            Algorithm::Gcra => {
                // Emission interval as the engine computes it (truncated to whole ns).
                let t = (p / c.count).max(1);
                for i in 0..admitted.len() {
                    let mut sum = 0;
                    for j in i..admitted.len() {
                        sum += admitted[j].1;
                        let span = admitted[j].0 - admitted[i].0;
                        prop_assert!(sum <= cap + span / t,
                            "{sum} admitted in {span} ns > {cap} + {span}/{t}");
                    }
                }
            }
            Algorithm::Fixed | Algorithm::Sliding => {
                let mut per_window: std::collections::BTreeMap<u64, u64> = Default::default();
                for &(t, cost) in &admitted {
                    *per_window.entry(t / p).or_default() += cost;
                }
                for (w, n) in &per_window {
                    prop_assert!(*n <= cap, "window {w}: {n} > {cap}");
                }
                if c.algo == Algorithm::Sliding {
                    // The weighted estimate at each admission, including it, stays within cap.
                    for &(t, _) in &admitted {
                        let idx = t / p;
                        let e = (t - idx * p) as u128;
                        let cur: u64 = admitted.iter().filter(|a| a.0 / p == idx && a.0 <= t).map(|a| a.1).sum();
                        let prev: u64 = per_window.get(&(idx.wrapping_sub(1))).copied().unwrap_or(0);
                        let weighted = u128::from(prev) * (u128::from(p) - e) + u128::from(cur) * u128::from(p);
                        prop_assert!(weighted <= u128::from(cap) * u128::from(p));
                    }
                }
            }
        }
    }
}
