//! A Sentinel node's discovery logic against real daemons and a *scripted* Sentinel (a loopback
//! listener answering `SENTINEL get-master-addr-by-name` with whatever the test sets), so each
//! step is deterministic: an unreachable Sentinel is skipped, a `-READONLY` primary makes the
//! client ask again, re-discovery is rate-limited, a newly named primary is followed without
//! moving keys, AUTH reaches the discovered primary, and no named primary means degraded mode,
//! not errors. The real-Sentinel drill is tests/sentinel.rs.
//!
//! No assertion is about speed: the one about rate limiting bounds the number of Sentinel
//! queries by the time that actually elapsed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Daemon;
use ratelimitd_client::{Client, ClientError, Config, FallbackLimit, Node, Source};

/// A fake Sentinel: replies to `SENTINEL get-master-addr-by-name` with 127.0.0.1 and the port
/// in `names` (0: nil, "no such master"), `+OK` to the client library's `CLIENT SETINFO`.
struct FakeSentinel {
    addr: String,
    names: Arc<AtomicU16>,
    queries: Arc<AtomicU64>,
}

impl FakeSentinel {
    fn start(port: u16) -> FakeSentinel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let names = Arc::new(AtomicU16::new(port));
        let queries = Arc::new(AtomicU64::new(0));
        let (n, q) = (Arc::clone(&names), Arc::clone(&queries));
        // Lives until the test binary exits; every connection is served on its own thread.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (n, q) = (Arc::clone(&n), Arc::clone(&q));
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(mut w) = stream.try_clone() else {
                        return;
                    };
                    let mut r = BufReader::new(stream);
                    let mut line = String::new();
                    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                        let argc: usize = line.trim_start_matches('*').trim().parse().unwrap_or(0);
                        let mut args = Vec::new();
                        for i in 0..argc * 2 {
                            line.clear();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if i % 2 == 1 {
                                args.push(line.trim().to_ascii_uppercase());
                            }
                        }
                        line.clear();
                        let reply = match args.first().map(String::as_str) {
                            Some("SENTINEL")
                                if args.get(1).map(String::as_str)
                                    == Some("GET-MASTER-ADDR-BY-NAME") =>
                            {
                                q.fetch_add(1, Ordering::Relaxed);
                                match n.load(Ordering::Relaxed) {
                                    0 => "*-1\r\n".to_string(),
                                    p => {
                                        let p = p.to_string();
                                        format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{p}\r\n", p.len())
                                    }
                                }
                            }
                            Some("CLIENT") => "+OK\r\n".to_string(),
                            _ => "-ERR unknown command\r\n".to_string(),
                        };
                        if w.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeSentinel {
            addr,
            names,
            queries,
        }
    }

    fn name(&self, port: u16) {
        self.names.store(port, Ordering::Relaxed);
    }

    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// An address nothing listens on (bound, then closed).
fn closed_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn config() -> Config {
    Config {
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        down_backoff: Duration::from_millis(100),
        sentinel_timeout: Duration::from_secs(1),
        rediscover_interval: Duration::from_millis(100),
        fallback: FallbackLimit {
            rate: 2,
            period: Duration::from_secs(3600),
            burst: 0,
            max_keys: 1000,
        },
        ..Config::default()
    }
}

fn daemon_source(d: &Daemon) -> Source {
    Source::Daemon {
        node: "m".into(),
        address: d.addr(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_primary_the_sentinels_name() {
    let a = Daemon::start();
    let mut b = Daemon::start();
    let fake = FakeSentinel::start(a.port);
    // The first Sentinel listed is down: it is skipped, and the one that answered is asked
    // first from then on.
    let client = Client::with_config(
        vec![Node::sentinel([closed_addr(), fake.addr.clone()], "m")],
        config(),
    )
    .expect("client");
    assert_eq!(client.node_names(), vec!["m".to_string()]);
    assert_eq!(client.preferred_addresses(), vec![String::new()], "lazy");

    let d = client.check("alice", "/x", 1).await.expect("check");
    assert_eq!(d.source, daemon_source(&a));
    let s = client.stats();
    assert_eq!((s.discoveries, s.sentinel_errors, s.failovers), (1, 1, 0));
    assert_eq!(client.preferred_addresses(), vec![a.addr()]);
    // A working primary is not re-discovered.
    for _ in 0..5 {
        assert_eq!(
            client.check("alice", "/x", 1).await.expect("check").source,
            daemon_source(&a)
        );
    }
    assert_eq!(fake.queries(), 1);
    let owner = client.node_for("alice", "/x");

    // A becomes a replica of B, and the Sentinel still names A: READONLY makes the client ask
    // again (at most once per rediscover_interval), and the check is decided locally.
    let ok: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(b.port)
        .query(&mut a.client())
        .expect("REPLICAOF");
    assert_eq!(ok, "OK");
    // Past the rate limit of the first discovery round.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let queries_before = fake.queries();
    const CHECKS: u64 = 50;
    for _ in 0..CHECKS {
        let d = client
            .check("alice", "/x", 1)
            .await
            .expect("an outage is not an error");
        assert!(d.is_degraded(), "a READONLY primary must not answer: {d:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let asked = fake.queries() - queries_before;
    let s = client.stats();
    assert_eq!(
        s.readonly_replies, CHECKS,
        "every check asked A, which refused"
    );
    // 50 checks 5 ms apart span more than two rediscover intervals.
    assert!(
        asked >= 2,
        "READONLY made the client ask the Sentinels again: {asked}"
    );
    let most = elapsed.as_millis() as u64 / 100 + 1;
    assert!(
        asked <= most,
        "{asked} Sentinel rounds in {elapsed:?}: at most one per 100 ms ({most})"
    );
    assert_eq!(
        s.sentinel_errors, 1,
        "the answering Sentinel is asked first now"
    );
    assert_eq!(s.failovers, 0);
    assert_eq!(s.degraded_allowed, 2, "the local allowance");

    // The Sentinel names B: the client follows (keys stay on the same node, named "m").
    fake.name(b.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let d = loop {
        let d = client.check("alice", "/x", 1).await.expect("check");
        if !d.is_degraded() {
            break d;
        }
        assert!(Instant::now() < deadline, "the client did not follow to B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(d.source, daemon_source(&b));
    assert_eq!(client.node_for("alice", "/x"), owner);
    assert_eq!(client.preferred_addresses(), vec![b.addr()]);
    assert_eq!(client.stats().failovers, 1);

    // B dies and no Sentinel names a primary: degraded answers, never errors.
    b.kill();
    fake.name(0);
    let errors_before = client.stats().sentinel_errors;
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.stats().sentinel_errors == errors_before {
        let d = client
            .check("bob", "/x", 1)
            .await
            .expect("an outage is not an error");
        assert!(d.is_degraded());
        assert!(
            Instant::now() < deadline,
            "the Sentinels were not asked again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match client.get_tier("bob").await {
        Err(ClientError::Unavailable { node, .. }) => assert_eq!(node, "m"),
        other => panic!("a read with no primary is Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_to_the_discovered_primary() {
    let p = Daemon::start_with(&["--requirepass", "s3cret"]);
    let fake = FakeSentinel::start(p.port);
    let node = |pw: &str| Node::sentinel([fake.addr.clone()], "m").password(pw);
    let good = Client::with_config(vec![node("s3cret")], config()).expect("client");
    let d = good.check("alice", "/x", 1).await.expect("check");
    assert_eq!(d.source, daemon_source(&p));
    // A wrong password fails the handshake: the primary counts as down, the check is local.
    let bad = Client::with_config(vec![node("wrong")], config()).expect("client");
    let d = bad
        .check("alice", "/x", 1)
        .await
        .expect("an outage is not an error");
    assert!(d.is_degraded(), "{d:?}");
    assert!(bad.stats().transport_errors >= 1);
    // The same option on a fixed node.
    let fixed = Client::with_config(vec![Node::new(p.addr()).password("s3cret")], config())
        .expect("client");
    let d = fixed.check("alice", "/x", 1).await.expect("check");
    assert!(!d.is_degraded(), "{d:?}");
}

#[test]
fn sentinel_nodes_are_validated_and_named_by_master() {
    let n = Node::sentinel(["127.0.0.1:26379"], "orders").password("s3cret");
    assert_eq!(n.ring_name(), "orders");
    assert_eq!(n.clone().name("shard-1").ring_name(), "shard-1");
    let debug = format!("{n:?}");
    assert!(
        !debug.contains("s3cret"),
        "the password is not printed: {debug}"
    );
    assert!(debug.contains("orders"));
    let c = Client::new(vec![n.clone(), Node::new("127.0.0.1:7001")]).expect("client");
    assert_eq!(
        c.node_names(),
        vec!["orders".to_string(), "127.0.0.1:7001".to_string()]
    );

    let err = |nodes| Client::new(nodes).expect_err("refused");
    assert!(matches!(
        err(vec![n.clone().replica("127.0.0.1:7002")]),
        ClientError::InvalidArgument(_)
    ));
    assert!(matches!(
        err(vec![Node::sentinel(Vec::<String>::new(), "orders")]),
        ClientError::InvalidArgument(_)
    ));
    assert!(matches!(
        err(vec![Node::sentinel(["127.0.0.1:26379"], "")]),
        ClientError::InvalidArgument(_)
    ));
    assert!(matches!(
        err(vec![Node::sentinel(["nope://x"], "orders")]),
        ClientError::InvalidAddress { .. }
    ));
}
