//! Property tests of the three algorithms against simple reference models, through the public
//! engine API with a fake clock:
//!
//! - nothing admits more than the allowance the algorithm promises, in any window it promises
//!   it for (GCRA: `capacity + elapsed / T` over any span; fixed and sliding: `capacity` per
//!   aligned window, and sliding also keeps its weighted estimate within `capacity`);
//! - `retry_after_ms` is honest: retrying exactly then, with nothing else consumed, succeeds;
//! - `retry_after_ms` is -1 only when the cost can never fit;
//! - nothing is denied that the model admits: fixed and sliding decide exactly as their
//!   integer models; GCRA admits whatever an exact-nanosecond model admits with 1 µs to spare
//!   per admission so far (the engine stores the TAT rounded up to the microsecond);
//! - with the limit changed mid-run (the same algorithm, any window), `retry_after_ms` stays
//!   honest: state rescaled to the new limit drains at the new limit's pace;
//! - with several windows (10/s and 1000/h), all of the above holds for each window, and a
//!   check is admitted exactly when every window's model admits it: a denied check charges
//!   no window (a partial charge would put the models and the engine out of step);
//! - raising a limit (more count or burst, same period and algorithm) never turns a check the
//!   old limit would admit into a denial, whatever state the key is in (redis-cell #54).

use proptest::prelude::*;
use ratelimitd_engine::{Algorithm, Engine, EngineConfig, FakeClock, Limit, Scope, Window};
use std::time::Duration;

const T0: u64 = 1_700_000_000_000_000_000;

#[derive(Debug, Clone)]
struct Case {
    algo: Algorithm,
    /// (count, period ms, burst) of each window of the limit.
    windows: Vec<(u64, u64, u64)>,
    /// (advance ms, cost, retry right after a denial?)
    steps: Vec<(u64, u64, bool)>,
    /// (before step i, count, period ms, burst): limit changes.
    changes: Vec<(usize, u64, u64, u64)>,
}

fn period() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(7), Just(100), Just(1000), Just(60_000)]
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Gcra),
        Just(Algorithm::Fixed),
        Just(Algorithm::Sliding)
    ]
}

/// One window, or two or three at once; counts small enough that every window is reached.
fn windows() -> impl Strategy<Value = Vec<(u64, u64, u64)>> {
    prop_oneof![
        2 => prop::collection::vec((1u64..20, period(), 0u64..5), 1..=1),
        1 => prop::collection::vec((1u64..20, period(), 0u64..5), 2..=3),
    ]
}

fn limit(algo: Algorithm, windows: &[(u64, u64, u64)]) -> Limit {
    let ws = windows
        .iter()
        .map(|&(count, period_ms, burst)| Window::new(count, period_ms, burst).unwrap())
        .collect();
    Limit::new(ws).unwrap().with_algorithm(algo)
}

fn case() -> impl Strategy<Value = Case> {
    (
        algorithm(),
        windows(),
        prop::collection::vec((0u64..400, 0u64..8, any::<bool>()), 1..120),
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec((0usize..120, 1u64..20, period(), 0u64..5), 1..4),
        ],
    )
        .prop_map(|(algo, windows, steps, changes)| Case {
            algo,
            windows,
            steps,
            changes,
        })
}

/// The algorithms' reference models of one window, fed the engine's admissions. They judge one
/// limit; once it changes, only the retry check of [`run`] applies.
struct Model {
    algo: Algorithm,
    cap: u64,
    /// Period in ns.
    p: u64,
    /// GCRA: emission interval and TAT (exact, in ns).
    t: u64,
    tat: u64,
    admissions: u64,
    /// Fixed and sliding: admitted cost per aligned window.
    counts: std::collections::BTreeMap<u64, u64>,
}

impl Model {
    fn new(algo: Algorithm, (count, period_ms, burst): (u64, u64, u64)) -> Model {
        let p = period_ms * 1_000_000;
        Model {
            algo,
            cap: count + burst,
            p,
            t: (p / count).max(1),
            tat: 0,
            admissions: 0,
            counts: Default::default(),
        }
    }

    /// Whether the engine must admit `cost` at `now`.
    fn must_admit(&self, now: u64, cost: u64) -> bool {
        let cap = u128::from(self.cap);
        let cost = u128::from(cost);
        match self.algo {
            Algorithm::Gcra => {
                let ahead = u128::from(self.tat.max(now) - now) + cost * u128::from(self.t);
                ahead + 1_000 * u128::from(self.admissions) <= u128::from(self.t) * cap
            }
            Algorithm::Fixed => u128::from(self.count(now / self.p)) + cost <= cap,
            Algorithm::Sliding => self.sliding_admits(now, cost),
        }
    }

    fn sliding_admits(&self, now: u64, cost: u128) -> bool {
        let idx = now / self.p;
        let p = u128::from(self.p);
        let e = u128::from(now - idx * self.p);
        let prev = u128::from(idx.checked_sub(1).map_or(0, |i| self.count(i)));
        let cur = u128::from(self.count(idx));
        prev * (p - e) + (cur + cost) * p <= u128::from(self.cap) * p
    }

    /// Fixed and sliding decide exactly as the model; GCRA only has to admit what it admits.
    fn exact(&self) -> bool {
        self.algo != Algorithm::Gcra
    }

    fn count(&self, idx: u64) -> u64 {
        self.counts.get(&idx).copied().unwrap_or(0)
    }

    fn admit(&mut self, now: u64, cost: u64) {
        self.tat = self.tat.max(now) + cost * self.t;
        self.admissions += 1;
        *self.counts.entry(now / self.p).or_default() += cost;
    }
}

/// A fresh engine with 4 shards on a fake clock at [`T0`].
fn engine() -> (Engine<FakeClock>, FakeClock) {
    let clock = FakeClock::new(T0);
    let e = Engine::new(
        clock.clone(),
        EngineConfig {
            shards: 4,
            ..EngineConfig::default()
        },
    );
    (e, clock)
}

/// Run a case; returns the admitted (time ns, cost) list.
fn run(c: &Case) -> Vec<(u64, u64)> {
    let (e, clock) = engine();
    e.set_limit(Scope::Default, limit(c.algo, &c.windows));
    // The smallest capacity: a cost above it can never fit every window.
    let mut cap = c.windows.iter().map(|w| w.0 + w.2).min().unwrap();
    let mut models = Some(
        c.windows
            .iter()
            .map(|&w| Model::new(c.algo, w))
            .collect::<Vec<_>>(),
    );
    let mut admitted = Vec::new();
    for (i, &(adv, cost, retry)) in c.steps.iter().enumerate() {
        for &(_, count, period_ms, burst) in c.changes.iter().filter(|ch| ch.0 == i) {
            e.set_limit(Scope::Default, limit(c.algo, &[(count, period_ms, burst)]));
            cap = count + burst;
            models = None;
        }
        clock.advance(Duration::from_millis(adv));
        let now = e.now();
        let r = e.check(b"k", b"/e", cost);
        if let Some(ms) = &mut models {
            if ms.iter().all(|m| m.must_admit(now, cost)) {
                assert!(
                    r.allowed,
                    "every window's model admits {cost} at {now}: {r:?}"
                );
            } else if ms.iter().all(Model::exact) {
                assert!(!r.allowed, "a window's model denies {cost} at {now}: {r:?}");
            }
            if r.allowed && cost > 0 {
                ms.iter_mut().for_each(|m| m.admit(now, cost));
            }
        }
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
            if let Some(ms) = &mut models {
                ms.iter_mut().for_each(|m| m.admit(e.now(), cost));
            }
            admitted.push((e.now(), cost));
        }
    }
    admitted
}

/// Nothing admitted beyond what `algo` promises for the window (count, period ms, burst).
fn within_promise(
    algo: Algorithm,
    (count, period_ms, burst): (u64, u64, u64),
    admitted: &[(u64, u64)],
) -> Result<(), TestCaseError> {
    let cap = count + burst;
    let p = period_ms * 1_000_000;
    match algo {
        Algorithm::Gcra => {
            // Emission interval as the engine computes it (truncated to whole ns).
            let t = (p / count).max(1);
            for i in 0..admitted.len() {
                let mut sum = 0;
                for j in i..admitted.len() {
                    sum += admitted[j].1;
                    let span = admitted[j].0 - admitted[i].0;
                    prop_assert!(
                        sum <= cap + span / t,
                        "{sum} admitted in {span} ns > {cap} + {span}/{t}"
                    );
                }
            }
        }
        Algorithm::Fixed | Algorithm::Sliding => {
            let mut per_window: std::collections::BTreeMap<u64, u64> = Default::default();
            for &(t, cost) in admitted {
                *per_window.entry(t / p).or_default() += cost;
            }
            for (w, n) in &per_window {
                prop_assert!(*n <= cap, "window {w}: {n} > {cap}");
            }
            if algo == Algorithm::Sliding {
                // The weighted estimate at each admission, including it, stays within cap.
                for &(t, _) in admitted {
                    let idx = t / p;
                    let e = (t - idx * p) as u128;
                    let cur: u64 = admitted
                        .iter()
                        .filter(|a| a.0 / p == idx && a.0 <= t)
                        .map(|a| a.1)
                        .sum();
                    let prev: u64 = per_window.get(&(idx.wrapping_sub(1))).copied().unwrap_or(0);
                    let weighted =
                        u128::from(prev) * (u128::from(p) - e) + u128::from(cur) * u128::from(p);
                    prop_assert!(weighted <= u128::from(cap) * u128::from(p));
                }
            }
        }
    }
    Ok(())
}

/// A limit, the steps taken under it, and the raised limit the key then meets: (more count,
/// more burst) for every window, same periods and algorithm, before step `at`.
#[derive(Debug, Clone)]
struct Raise {
    algo: Algorithm,
    windows: Vec<(u64, u64, u64)>,
    /// (more count, more burst) per window.
    more: Vec<(u64, u64)>,
    /// (advance ms, cost)
    steps: Vec<(u64, u64)>,
    at: usize,
}

fn raise() -> impl Strategy<Value = Raise> {
    (
        algorithm(),
        windows(),
        prop::collection::vec((0u64..30, 0u64..5), 3),
        prop::collection::vec((0u64..400, 0u64..8), 1..80),
        0usize..80,
    )
        .prop_map(|(algo, windows, more, steps, at)| Raise {
            algo,
            more: more[..windows.len()].to_vec(),
            windows,
            at: at % steps.len(),
            steps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn never_more_than_promised_and_retry_is_honest(c in case()) {
        let admitted = run(&c);
        if !c.changes.is_empty() {
            // The allowance checked below is that of one limit; `run` checked the retries.
            return Ok(());
        }
        for &w in &c.windows {
            within_promise(c.algo, w, &admitted)?;
        }
    }

    #[test]
    fn raising_a_limit_never_turns_an_admission_into_a_denial(r in raise()) {
        let (e, clock) = engine();
        e.set_limit(Scope::Default, limit(r.algo, &r.windows));
        for &(adv, cost) in &r.steps[..r.at] {
            clock.advance(Duration::from_millis(adv));
            e.check(b"k", b"/e", cost);
        }
        clock.advance(Duration::from_millis(r.steps[r.at].0));
        let before = e.peek(b"k", b"/e");
        let raised: Vec<(u64, u64, u64)> = r
            .windows
            .iter()
            .zip(&r.more)
            .map(|(&(count, period_ms, burst), &(c, b))| (count + c, period_ms, burst + b))
            .collect();
        e.set_limit(Scope::Default, limit(r.algo, &raised));
        let after = e.check(b"k", b"/e", 1);
        if before.allowed {
            prop_assert!(after.allowed, "allowed under {:?}: {before:?}; raised to {raised:?}: {after:?}", r.windows);
            prop_assert!(after.remaining + 1 >= before.remaining, "{before:?} then {after:?}");
        }
    }
}
