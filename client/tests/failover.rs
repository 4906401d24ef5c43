//! The client against a REAL primary and replica (`--replicaof`), not a standalone daemon
//! standing in for one: a limit set through the client reaches the replica by replication;
//! while the primary is up it answers every check; after `kill -9` of the primary the
//! unpromoted replica answers READONLY, which the client must not take as an answer — it decides
//! from the bounded local allowance instead; after `REPLICAOF NO ONE` the client follows the
//! promotion, sees the replicated rate state, and keeps using the promoted address while the
//! old one stays dead.
//!
//! Assertions are about answers and counts, never speed: every wait is a bounded poll with a
//! generous deadline, and both daemons are killed on drop.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use ratelimitd_client::{Client, Config, FallbackLimit, Node, Scope, Source, Window};

/// Fallback allowance per key while the node is unavailable: 2 per hour. Distinct from the
/// daemon's limit (10 per hour) so a degraded answer cannot pass for a daemon's.
const FALLBACK: u32 = 2;
const LIMIT: u32 = 10;

fn test_config() -> Config {
    Config {
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        down_backoff: Duration::from_millis(100),
        fallback: FallbackLimit {
            rate: FALLBACK,
            period: Duration::from_secs(3600),
            burst: 0,
            max_keys: 1000,
        },
        ..Config::default()
    }
}

/// One field of `INFO <section>` on `d`, "" when absent.
fn info_field(d: &Daemon, section: &str, name: &str) -> String {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut d.client())
        .expect("INFO");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// Poll `f` until it is true; fail after 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn limit_on(d: &Daemon, endpoint: &str) -> Vec<String> {
    let reply: Option<Vec<redis::Value>> = redis::cmd("RL.LIMIT")
        .arg(&["GET", "ENDPOINT", endpoint])
        .query(&mut d.client())
        .expect("RL.LIMIT GET");
    reply
        .unwrap_or_default()
        .iter()
        .map(|v| match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            redis::Value::Int(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_real_replica_through_kill_and_promotion() {
    let (user, ep) = ("alice", "/fo");

    // 1. A primary and a real replica of it, each with its own --dir.
    let mut primary = Daemon::start();
    let replica = Daemon::start_with(&["--replicaof", &primary.addr()]);
    eventually("replica's master_link_status:up", || {
        info_field(&replica, "replication", "master_link_status") == "up"
    });
    assert_eq!(info_field(&replica, "replication", "role"), "slave");

    let client = Client::with_config(
        vec![Node::new(primary.addr())
            .replica(replica.addr())
            .name("shard")],
        test_config(),
    )
    .expect("client");
    let scope = Scope::Endpoint(ep.into());
    client
        .set_limit(&scope, &[Window::new(LIMIT, Duration::from_secs(3600))])
        .await
        .expect("set limit through the client");
    assert_eq!(client.preferred_addresses(), vec![primary.addr()]);
    assert_eq!(
        limit_on(&primary, ep),
        ["RATE", "10/1h", "BURST", "0", "ALGO", "gcra"]
    );
    eventually("the limit replicated to the replica", || {
        limit_on(&replica, ep) == ["RATE", "10/1h", "BURST", "0", "ALGO", "gcra"]
    });

    // 2. The primary answers every check.
    for want in [9, 8, 7] {
        let d = client.check(user, ep, 1).await.expect("check");
        assert!(d.allowed);
        assert_eq!(d.limit, Some(u64::from(LIMIT)));
        assert_eq!(d.remaining, Some(want));
        assert_eq!(
            d.source,
            Source::Daemon {
                node: "shard".into(),
                address: primary.addr()
            }
        );
    }
    let s = client.stats();
    assert_eq!(s.checks, 3);
    assert_eq!(s.degraded_allowed + s.degraded_denied, 0);
    assert_eq!(
        (s.failovers, s.readonly_replies, s.transport_errors),
        (0, 0, 0)
    );
    // The rate state reaches the replica before the kill (what replication promises is what
    // it has acknowledged; the test is about the client, so it waits for the ack).
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut primary.client())
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica acknowledged the primary's writes");
    eventually("the replica holds the 3 checks", || {
        replica.peek_remaining(user, ep) == 7
    });

    // 3. kill -9 the primary. The replica is still a replica: READONLY is not an answer, the
    // checks are decided by the local allowance, within its bound.
    primary.kill();
    assert_eq!(info_field(&replica, "replication", "role"), "slave");
    const DEGRADED_CHECKS: u64 = 6;
    let mut admitted = 0;
    for _ in 0..DEGRADED_CHECKS {
        let d = client
            .check(user, ep, 1)
            .await
            .expect("an outage is not an error");
        assert_eq!(
            d.source,
            Source::Degraded {
                node: "shard".into()
            },
            "a READONLY replica must not answer a check: {d:?}"
        );
        assert_eq!(d.limit, Some(u64::from(FALLBACK)));
        admitted += u64::from(d.allowed);
    }
    assert!(
        admitted <= u64::from(FALLBACK),
        "{admitted} admitted in degraded mode, the local allowance is {FALLBACK}"
    );
    let s = client.stats();
    assert_eq!(s.checks, 3, "no daemon answered during the outage");
    assert_eq!(s.degraded_allowed, admitted);
    assert_eq!(s.degraded_allowed + s.degraded_denied, DEGRADED_CHECKS);
    // Every degraded check asked the replica (READONLY puts no address in back-off).
    assert_eq!(s.readonly_replies, DEGRADED_CHECKS);
    assert!(s.transport_errors >= 1, "the dead primary was tried");
    assert_eq!(
        s.failovers, 0,
        "READONLY must not move the preferred address"
    );
    assert_eq!(client.preferred_addresses(), vec![primary.addr()]);
    // The refused checks consumed nothing on the replica.
    assert_eq!(replica.peek_remaining(user, ep), 7);

    // 4. Promote the replica, directly. The client's checks are answered by it again, and
    // they continue from the replicated state.
    let ok: String = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.client())
        .expect("REPLICAOF NO ONE");
    assert_eq!(ok, "OK");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut degraded_while_promoting = 0u64;
    let first = loop {
        let d = client.check(user, ep, 1).await.expect("check");
        if !d.is_degraded() {
            break d;
        }
        admitted += u64::from(d.allowed);
        degraded_while_promoting += 1;
        assert!(
            Instant::now() < deadline,
            "the promoted replica did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        first.source,
        Source::Daemon {
            node: "shard".into(),
            address: replica.addr()
        }
    );
    assert!(first.allowed);
    assert_eq!(first.limit, Some(u64::from(LIMIT)));
    let remaining = first.remaining.expect("a limited key");
    assert!(
        remaining <= 6,
        "replication carries state: 3 checks before the kill, got remaining {remaining}"
    );
    // The replica had acknowledged all 3, and refused checks consume nothing: exactly 6.
    assert_eq!(remaining, 6);
    assert!(
        admitted <= u64::from(FALLBACK),
        "local bound over the whole outage"
    );
    assert_eq!(info_field(&replica, "replication", "role"), "master");
    assert_eq!(client.preferred_addresses(), vec![replica.addr()]);
    let s = client.stats();
    assert_eq!(s.failovers, 1);
    assert_eq!(s.checks, 4);
    assert_eq!(
        s.degraded_allowed + s.degraded_denied,
        DEGRADED_CHECKS + degraded_while_promoting
    );

    // 5. The old primary's address stays dead; the client keeps using the promoted one, also
    // once that address's back-off has long expired (it is not even probed: the promoted
    // address is tried first and answers).
    let errors_before = s.transport_errors;
    for want in [5, 4, 3] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let d = client.check(user, ep, 1).await.expect("check");
        assert_eq!(
            d.source,
            Source::Daemon {
                node: "shard".into(),
                address: replica.addr()
            }
        );
        assert!(d.allowed);
        assert_eq!(d.remaining, Some(want));
    }
    assert_eq!(replica.peek_remaining(user, ep), 3);
    let s = client.stats();
    assert_eq!(s.checks, 7);
    assert_eq!(s.failovers, 1);
    assert_eq!(
        s.transport_errors, errors_before,
        "the dead address was not tried"
    );
    assert_eq!(
        s.degraded_allowed + s.degraded_denied,
        DEGRADED_CHECKS + degraded_while_promoting
    );
    assert_eq!(client.preferred_addresses(), vec![replica.addr()]);
    // Reads follow too: the limit, from the promoted address.
    assert_eq!(
        client.get_limit(&scope).await.expect("get limit"),
        Some(vec![Window::new(LIMIT, Duration::from_secs(3600))])
    );
}
