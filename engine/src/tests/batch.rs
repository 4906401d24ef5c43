//! Batched checks ([`Engine::check_many`]): the same answers as one check after another at
//! the same instant, within the bounds, and for keys no limit applies to.

use super::*;
use crate::results::UNLIMITED;

/// A batch answers exactly as the same checks one after another at the same instant: same
/// results in order, same state left behind (the batch only changes how memory is fetched).
#[test]
fn a_batch_answers_as_the_same_checks_in_order() {
    let setup = |e: &Engine<FakeClock>| {
        e.set_limit(Scope::Default, limit(&[window(3, 1000, 1)]));
        e.set_limit(
            Scope::Endpoint(pattern("/multi")),
            limit(&[window(2, 1000, 0), window(4, 60_000, 0)]),
        );
        e.set_limit(
            Scope::Endpoint(pattern("/fixed")),
            limit(&[window(2, 1000, 0)]).with_algorithm(Algorithm::Fixed),
        );
        e.set_limit(
            Scope::Endpoint(pattern("/sliding")),
            limit(&[window(2, 1000, 0)]).with_algorithm(Algorithm::Sliding),
        );
    };
    let (batched, clock_b) = engine();
    let (single, clock_s) = engine();
    setup(&batched);
    setup(&single);
    // 40 requests over few keys (so later ones see earlier ones' charges, within one chunk
    // and across chunks of 16), every algorithm, costs 0..3.
    let clients: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'c', i]).collect();
    let endpoints: [&[u8]; 4] = [b"/e", b"/multi", b"/fixed", b"/sliding"];
    let requests: Vec<CheckRequest<'_>> = (0..40usize)
        .map(|i| CheckRequest {
            client: &clients[i * 7 % 5],
            endpoint: endpoints[i * 3 % 4],
            cost: (i % 4) as u64,
        })
        .collect();
    for round in 0..3 {
        let mut got = Vec::new();
        batched.check_many(&requests, &mut got);
        let want: Vec<CheckResult> = requests
            .iter()
            .map(|r| single.check(r.client, r.endpoint, r.cost))
            .collect();
        assert_eq!(got, want, "round {round}");
        assert!(got.iter().any(|r| r.allowed) && got.iter().any(|r| !r.allowed));
        clock_b.advance(ms(400));
        clock_s.advance(ms(400));
    }
    for c in &clients {
        for ep in endpoints {
            assert_eq!(batched.peek(c, ep), single.peek(c, ep));
        }
    }
}

#[test]
fn a_batch_respects_the_key_bound_and_unlimited_keys() {
    let clock = FakeClock::new(T0);
    let e = Engine::new(
        clock,
        EngineConfig {
            shards: 1,
            max_keys: Some(2),
            max_memory: None,
            policy: EvictionPolicy::RefuseDeny,
        },
    );
    e.set_limit(Scope::Endpoint(pattern("/e")), limit(&[window(5, 1000, 0)]));
    let reqs = [
        CheckRequest {
            client: b"a",
            endpoint: b"/e",
            cost: 1,
        },
        CheckRequest {
            client: b"b",
            endpoint: b"/e",
            cost: 1,
        },
        CheckRequest {
            client: b"c",
            endpoint: b"/e",
            cost: 1,
        },
        CheckRequest {
            client: b"a",
            endpoint: b"/no-limit",
            cost: 1,
        },
    ];
    let mut out = Vec::new();
    e.check_many(&reqs, &mut out);
    assert_eq!(out.len(), 4);
    assert!(out[0].allowed && out[1].allowed);
    assert!(
        !out[2].allowed,
        "third key refused by the bound: {:?}",
        out[2]
    );
    assert_eq!(out[3], UNLIMITED);
    assert_eq!(e.stats().refused, 1);
}
