//! The client against several real ratelimitd daemons on loopback: keys land where the ring
//! says, limits are configured on every node, a killed node triggers degraded mode with the
//! local bound respected, a restarted node is used again, and failover to a replica address
//! (primary killed, or answering READONLY) is followed.
//!
//! Timing is only used with generous bounds (a restarted node must be picked up within 10 s);
//! every loop is bounded and every daemon is killed on drop.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::Daemon;
use ratelimitd_client::{Client, ClientError, Config, FallbackLimit, Node, Scope, Source, Window};

/// Generous timeouts: the tests must not see a slow CI machine as an outage. The defaults
/// (50 ms / 10 ms) are for production; what is tested here is behaviour, not latency.
fn test_config() -> Config {
    Config {
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        down_backoff: Duration::from_millis(100),
        fallback: FallbackLimit {
            rate: 5,
            period: Duration::from_secs(3600),
            burst: 0,
            max_keys: 1000,
        },
        ..Config::default()
    }
}

fn hour_limit() -> Vec<Window> {
    vec![Window::new(1000, Duration::from_secs(3600))]
}

fn pairs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("user{i}"), format!("/ep{}", i % 7)))
        .collect()
}

fn start(n: usize) -> Vec<Daemon> {
    (0..n).map(|_| Daemon::start()).collect()
}

fn client_for(daemons: &[Daemon]) -> Client {
    Client::with_config(
        daemons.iter().map(|d| Node::new(d.addr())).collect(),
        test_config(),
    )
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_the_ring_says() {
    let daemons = start(3);
    let client = client_for(&daemons);
    client
        .set_limit(&Scope::Default, &hour_limit())
        .await
        .expect("set limit");

    let pairs = pairs(300);
    let mut per_node = [0i64; 3];
    for (c, e) in &pairs {
        let d = client.check(c, e, 1).await.expect("check");
        assert!(d.allowed);
        assert_eq!(d.limit, Some(1000));
        assert_eq!(d.remaining, Some(999));
        let owner = client.node_for(c, e);
        per_node[owner] += 1;
        assert_eq!(
            d.source,
            Source::Daemon {
                node: daemons[owner].addr(),
                address: daemons[owner].addr()
            }
        );
    }
    for (c, e) in pairs.iter().take(60) {
        let owner = client.node_for(c, e);
        for (i, d) in daemons.iter().enumerate() {
            let want = if i == owner { 999 } else { 1000 };
            assert_eq!(d.peek_remaining(c, e), want, "{c} {e} on daemon {i}");
        }
    }
    for (i, d) in daemons.iter().enumerate() {
        assert_eq!(d.dbsize(), per_node[i], "DBSIZE of daemon {i}");
        assert!(
            per_node[i] > 50,
            "ring put only {} of 300 keys on node {i}",
            per_node[i]
        );
    }
    let s = client.stats();
    assert_eq!(s.checks, 300);
    assert_eq!(s.degraded_allowed + s.degraded_denied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_checks_return_in_order() {
    let daemons = start(2);
    let client = client_for(&daemons);
    client
        .set_limit(
            &Scope::Endpoint("/p".into()),
            &[Window::new(3, Duration::from_secs(3600))],
        )
        .await
        .expect("set limit");
    let reqs: Vec<(&str, &str, u32)> = (0..10).map(|_| ("alice", "/p", 1)).collect();
    let out = client.check_many(&reqs).await;
    let allowed = out
        .iter()
        .filter(|r| matches!(r, Ok(d) if d.allowed))
        .count();
    assert_eq!(allowed, 3);
    assert!(out.iter().all(|r| r.is_ok()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_and_tier_management_reaches_every_node() {
    let mut daemons = start(3);
    let client = client_for(&daemons);
    let scope = Scope::ClientEndpoint("acme".into(), "/upload".into());
    let windows = vec![
        Window::new(10, Duration::from_millis(500)).burst(2),
        Window::new(1000, Duration::from_secs(3600)),
    ];
    client.set_limit(&scope, &windows).await.expect("set");
    assert_eq!(
        client.get_limit(&scope).await.expect("get"),
        Some(windows.clone())
    );
    for d in &daemons {
        let reply: Vec<redis::Value> = redis::cmd("RL.LIMIT")
            .arg(&["GET", "CLIENT", "acme", "ENDPOINT", "/upload"])
            .query(&mut d.client())
            .expect("GET");
        // Two windows of RATE/BURST pairs, then ALGO gcra.
        assert_eq!(reply.len(), 10, "limit missing on {}", d.addr());
    }
    client.set_tier("acme", "gold").await.expect("tier set");
    assert_eq!(
        client.get_tier("acme").await.expect("tier get"),
        Some("gold".into())
    );
    assert!(client.del_tier("acme").await.expect("tier del"));
    assert_eq!(client.get_tier("acme").await.expect("tier get"), None);
    assert!(client.del_limit(&scope).await.expect("del"));
    assert!(!client.del_limit(&scope).await.expect("del again"));
    assert_eq!(client.get_limit(&scope).await.expect("get"), None);

    // A daemon's own error is returned, not retried elsewhere.
    match client.check("a", "b", u32::MAX).await {
        Ok(_) | Err(ClientError::Server { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
    }

    // A change that cannot reach every node says so.
    daemons[1].kill();
    match client.set_limit(&Scope::Default, &hour_limit()).await {
        Err(ClientError::Partial { total: 3, failed }) => assert_eq!(failed.len(), 1),
        other => panic!("expected a partial failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_degrades_within_the_local_bound_and_restarted_node_is_used_again() {
    let mut daemons = start(3);
    let client = client_for(&daemons);
    client
        .set_limit(&Scope::Default, &hour_limit())
        .await
        .expect("set limit");

    let pairs = pairs(120);
    for (c, e) in &pairs {
        assert!(!client.check(c, e, 1).await.expect("check").is_degraded());
    }

    let victim = 1;
    let port = daemons[victim].port;
    daemons[victim].kill();

    // Hammer every pair 20 times, concurrently; the victim's pairs are decided locally.
    let mut reqs = Vec::new();
    for _ in 0..20 {
        for (c, e) in &pairs {
            reqs.push((c.as_str(), e.as_str(), 1));
        }
    }
    let out = client.check_many(&reqs).await;
    let mut victim_pairs = std::collections::HashMap::<(&str, &str), usize>::new();
    for ((c, e, _), r) in reqs.iter().zip(&out) {
        let d = r.as_ref().expect("checks never fail for an outage");
        let owner = client.node_for(c, e);
        if owner == victim {
            assert!(d.is_degraded(), "{c} {e} should be degraded");
            assert_eq!(d.limit, Some(5));
            if d.allowed {
                *victim_pairs.entry((c, e)).or_default() += 1;
            }
        } else {
            assert!(!d.is_degraded(), "{c} {e} is on a live node");
            assert!(d.allowed);
        }
    }
    let victim_keys = pairs
        .iter()
        .filter(|(c, e)| client.node_for(c, e) == victim)
        .count();
    assert!(victim_keys > 10);
    // The local bound per key: 5 per hour, whatever the load.
    assert!(victim_pairs.values().all(|&n| n <= 5), "{victim_pairs:?}");
    let admitted: usize = victim_pairs.values().sum();
    let s = client.stats();
    assert_eq!(s.degraded_allowed as usize, admitted);
    assert!(admitted <= 5 * victim_keys);
    assert_eq!(
        s.degraded_allowed + s.degraded_denied,
        20 * victim_keys as u64
    );

    // Restart on the same port (limits are configuration the new process does not have).
    let restarted = Daemon::start_on(port);
    let (c, e) = pairs
        .iter()
        .find(|(c, e)| client.node_for(c, e) == victim)
        .expect("a victim pair");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = client.check(c, e, 1).await.expect("check");
        if !d.is_degraded() {
            // The fresh daemon has no limit: unlimited, and it answered.
            assert_eq!(d.limit, None);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted daemon not used again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .set_limit(&Scope::Default, &hour_limit())
        .await
        .expect("set limit after restart");
    let d = client.check(c, e, 1).await.expect("check");
    assert!(!d.is_degraded());
    assert_eq!(restarted.peek_remaining(c, e), 999);
    daemons[victim] = restarted;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_fails_over_to_the_replica_and_stays() {
    // The "replica" here is a standalone daemon standing in for an already promoted one;
    // tests/failover.rs runs the same path with a real replica and a real promotion.
    let mut primary = Daemon::start();
    let replica = Daemon::start();
    let other = Daemon::start();
    let nodes = vec![
        Node::new(primary.addr())
            .replica(replica.addr())
            .name("shard-a"),
        Node::new(other.addr()).name("shard-b"),
    ];
    let client = Client::with_config(nodes, test_config()).expect("client");
    let (c, e) = pairs(200)
        .into_iter()
        .find(|(c, e)| client.node_for(c, e) == 0)
        .expect("a pair on shard-a");

    let d = client.check(&c, &e, 1).await.expect("check");
    assert_eq!(
        d.source,
        Source::Daemon {
            node: "shard-a".into(),
            address: primary.addr()
        }
    );

    let port = primary.port;
    primary.kill();
    let d = client.check(&c, &e, 1).await.expect("check");
    assert_eq!(
        d.source,
        Source::Daemon {
            node: "shard-a".into(),
            address: replica.addr()
        }
    );
    assert_eq!(client.preferred_addresses()[0], replica.addr());
    assert_eq!(client.stats().failovers, 1);
    assert_eq!(client.stats().degraded_allowed, 0);

    // The old primary comes back: the client keeps writing to the address that last accepted
    // a write (the promoted one).
    let _back = Daemon::start_on(port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = client.check(&c, &e, 1).await.expect("check");
    assert_eq!(
        d.source,
        Source::Daemon {
            node: "shard-a".into(),
            address: replica.addr()
        }
    );
}

/// A stand-in for an unpromoted replica: answers every command with READONLY.
fn readonly_server() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    listener.set_nonblocking(false).expect("blocking");
    let handle = std::thread::spawn(move || {
        // Serve a bounded number of connections, each until it closes or 10 s pass.
        for stream in listener.incoming().take(4).flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut w = match stream.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let mut r = BufReader::new(stream);
                let mut line = String::new();
                // Read RESP arrays of bulk strings; answer each command.
                while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    let argc: usize = line.trim_start_matches('*').trim().parse().unwrap_or(0);
                    let mut name = String::new();
                    for i in 0..argc * 2 {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if i == 1 {
                            name = line.trim().to_ascii_uppercase();
                        }
                    }
                    line.clear();
                    let reply: &[u8] = if name == "CLIENT" {
                        b"+OK\r\n"
                    } else {
                        b"-READONLY You can't write against a read only replica.\r\n"
                    };
                    if w.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_address_is_skipped_and_the_writable_one_preferred() {
    let (readonly, _server) = readonly_server();
    let promoted = Daemon::start();
    let client = Client::with_config(
        vec![Node::new(readonly.clone())
            .replica(promoted.addr())
            .name("only")],
        test_config(),
    )
    .expect("client");
    let d = client.check("alice", "/x", 1).await.expect("check");
    assert_eq!(
        d.source,
        Source::Daemon {
            node: "only".into(),
            address: promoted.addr()
        }
    );
    let s = client.stats();
    assert_eq!(s.readonly_replies, 1);
    assert_eq!(s.failovers, 1);
    // From now on the promoted address is tried first: no more READONLY round trips.
    for _ in 0..5 {
        client.check("alice", "/x", 1).await.expect("check");
    }
    assert_eq!(client.stats().readonly_replies, 1);
    assert_eq!(client.preferred_addresses(), vec![promoted.addr()]);
}
