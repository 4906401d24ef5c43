//! Replication against the real binary: a replica gets limits, tiers and rate state and
//! refuses writes; a short link loss resumes with a partial resync; a replica behind by more
//! than the backlog gets a full one; a replica restarted empty catches up; and the failover
//! drill (kill -9 the primary, promote the replica, move the load, count what was admitted).
//!
//! Assertions are about state and counts, never speed: every wait polls with a generous
//! deadline. The drill prints its figures (time to first answer, over-admission per key).

mod common;
use common::{eventually, run, temp_dir, Daemon};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `INFO <section>` as a field map.
fn info(con: &mut redis::Connection, section: &str) -> HashMap<String, String> {
    let text: String = run(con, &["INFO", section]).expect("INFO");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn field(con: &mut redis::Connection, section: &str, name: &str) -> String {
    info(con, section).get(name).cloned().unwrap_or_default()
}

fn counter(con: &mut redis::Connection, name: &str) -> u64 {
    field(con, "stats", name).parse().unwrap_or(0)
}

fn port_s(d: &Daemon) -> String {
    d.port.to_string()
}

fn start_replica_of(primary: &Daemon, extra: &[&str]) -> Daemon {
    let target = format!("127.0.0.1:{}", primary.port);
    let mut args = vec!["--replicaof", target.as_str()];
    args.extend_from_slice(extra);
    Daemon::start_with(&args)
}

fn wait_link_up(replica: &Daemon) {
    let mut con = replica.client();
    eventually("master_link_status:up", 20, || {
        field(&mut con, "replication", "master_link_status") == "up"
    });
}

/// Wait until the replica has processed everything the primary produced so far.
fn wait_caught_up(primary: &Daemon, replica: &Daemon) {
    let mut p = primary.client();
    let mut r = replica.client();
    // WAIT publishes pending changes and asks for an immediate ack.
    let _: i64 = run(&mut p, &["WAIT", "1", "5000"]).expect("WAIT");
    let target: u64 = field(&mut p, "replication", "master_repl_offset")
        .parse()
        .expect("offset");
    eventually("replica offset reaches the primary's", 20, || {
        field(&mut r, "replication", "slave_repl_offset")
            .parse::<u64>()
            .unwrap_or(0)
            >= target
    });
}

fn setup_limits(con: &mut redis::Connection) {
    for args in [
        &[
            "RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1s", "RATE", "1000/1h",
        ][..],
        &[
            "RL.LIMIT", "SET", "ENDPOINT", "/login", "RATE", "5/1m", "BURST", "2",
        ],
        &[
            "RL.LIMIT", "SET", "TIER", "gold", "ENDPOINT", "/api/*", "RATE", "100/1s",
        ],
        &[
            "RL.LIMIT", "SET", "CLIENT", "bob", "RATE", "3/1h", "ALGO", "sliding",
        ],
        &["RL.TIER", "SET", "acme", "gold"],
        &["RL.TIER", "SET", "initech", "silver"],
    ] {
        assert_eq!(run::<String>(con, args).expect("limit"), "OK", "{args:?}");
    }
}

type LimitList = Vec<(String, Vec<String>)>;

fn limits(con: &mut redis::Connection) -> LimitList {
    run(con, &["RL.LIMIT", "LIST"]).expect("RL.LIMIT LIST")
}

fn tiers(con: &mut redis::Connection) -> Vec<Option<String>> {
    ["acme", "initech", "nobody"]
        .iter()
        .map(|c| run(con, &["RL.TIER", "GET", c]).expect("RL.TIER GET"))
        .collect()
}

fn peek(con: &mut redis::Connection, client: &str, endpoint: &str) -> Vec<i64> {
    run(con, &["RL.PEEK", client, endpoint]).expect("RL.PEEK")
}

#[test]
fn a_replica_gets_limits_tiers_and_state_and_refuses_writes() {
    let primary = Daemon::start();
    let mut p = primary.client();
    setup_limits(&mut p);
    // State written before the replica attached travels in the full sync...
    for _ in 0..3 {
        let _: Vec<i64> = run(&mut p, &["RL.CHECK", "alice", "/login"]).expect("check");
    }
    let replica = start_replica_of(&primary, &[]);
    wait_link_up(&replica);
    let mut r = replica.client();
    // ...and state written after it in the stream.
    for _ in 0..2 {
        let _: Vec<i64> = run(&mut p, &["RL.CHECK", "carol", "/api/x"]).expect("check");
    }
    let _: Vec<i64> = run(&mut p, &["CL.THROTTLE", "cell", "5", "10", "60"]).expect("cell");
    assert_eq!(
        run::<String>(&mut p, &["RL.TIER", "SET", "late", "gold"]).unwrap(),
        "OK"
    );
    assert_eq!(
        run::<i64>(&mut p, &["RL.TIER", "DEL", "initech"]).unwrap(),
        1
    );
    assert_eq!(run::<i64>(&mut p, &["WAIT", "1", "5000"]).unwrap(), 1);
    wait_caught_up(&primary, &replica);

    assert_eq!(limits(&mut r), limits(&mut p));
    assert_eq!(tiers(&mut r), tiers(&mut p));
    assert_eq!(
        run::<Option<String>>(&mut r, &["RL.TIER", "GET", "late"]).unwrap(),
        Some("gold".into())
    );
    for (c, e) in [("alice", "/login"), ("carol", "/api/x"), ("zed", "/login")] {
        let (a, b) = (peek(&mut p, c, e), peek(&mut r, c, e));
        assert_eq!(a[..3], b[..3], "{c} {e}: remaining must match");
    }
    assert_eq!(peek(&mut r, "alice", "/login")[2], 4, "7 allowed, 3 used");

    // Writes are refused, reads served.
    for args in [
        &["RL.CHECK", "alice", "/login"][..],
        &["RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1s"],
        &["RL.LIMIT", "DEL", "DEFAULT"],
        &["RL.TIER", "SET", "x", "gold"],
        &["RL.RESET", "alice", "/login"],
        &["CL.THROTTLE", "cell", "5", "10", "60"],
        &["FLUSHALL"],
    ] {
        let err = run::<redis::Value>(&mut r, args).expect_err("refused");
        assert!(err.contains("read only replica"), "{args:?}: {err}");
    }
    let mut raw = replica.raw();
    raw.send(&common::resp(&[b"RL.CHECK", b"alice", b"/login"]));
    raw.expect(b"-READONLY You can't write against a read only replica.\r\n");
    let _: Vec<String> = run(&mut r, &["RL.LIMIT", "GET", "DEFAULT"]).expect("GET");
    let _: redis::Value = run(&mut r, &["RL.EXPLAIN", "alice", "/login"]).expect("EXPLAIN");

    // ROLE, both sides, in Redis's shapes.
    let role: redis::Value = run(&mut r, &["ROLE"]).expect("ROLE");
    let text = format!("{role:?}");
    assert!(
        text.contains("slave") && text.contains("connected"),
        "{text}"
    );
    let role: (String, i64, Vec<Vec<String>>) = run(&mut p, &["ROLE"]).expect("ROLE");
    assert_eq!(role.0, "master");
    assert_eq!(role.2.len(), 1);
    assert_eq!(role.2[0][1], replica.port.to_string());
    let pi = info(&mut p, "replication");
    assert_eq!(pi["connected_slaves"], "1");
    assert!(
        pi["slave0"].contains(&format!("port={}", replica.port)),
        "{pi:?}"
    );
    assert!(pi["slave0"].contains("state=online"), "{pi:?}");
    let ri = info(&mut r, "replication");
    assert_eq!(ri["role"], "slave");
    assert_eq!(ri["master_host"], "127.0.0.1");
    assert_eq!(ri["master_port"], primary.port.to_string());
    assert_eq!(ri["slave_read_only"], "1");
    assert_eq!(ri["slave_priority"], "100");
    assert_eq!(ri["master_replid"], pi["master_replid"]);

    // FLUSHALL on the primary reaches the replica.
    assert_eq!(run::<String>(&mut p, &["FLUSHALL"]).unwrap(), "OK");
    wait_caught_up(&primary, &replica);
    assert_eq!(peek(&mut r, "alice", "/login")[2], 7);
}

#[test]
fn a_short_link_loss_resumes_with_a_partial_resync() {
    let primary = Daemon::start();
    let mut p = primary.client();
    setup_limits(&mut p);
    let replica = start_replica_of(&primary, &[]);
    wait_link_up(&replica);
    let mut r = replica.client();
    assert_eq!(counter(&mut p, "sync_full"), 1);

    // The replica drops its link (CLIENT KILL TYPE master), then the primary drops the
    // replica (CLIENT KILL TYPE replica); writes happen in between each time.
    for (on_replica, kind, round) in [(true, "master", 1u64), (false, "replica", 2)] {
        let who = if on_replica { &mut r } else { &mut p };
        let killed: i64 = run(who, &["CLIENT", "KILL", "TYPE", kind]).expect("CLIENT KILL");
        assert_eq!(killed, 1, "{kind}");
        for i in 0..20 {
            let _: Vec<i64> =
                run(&mut p, &["RL.CHECK", &format!("k{i}"), "/login"]).expect("check");
        }
        eventually("partial resync", 20, || {
            counter(&mut p, "sync_partial_ok") == round
        });
        wait_link_up(&replica);
        wait_caught_up(&primary, &replica);
        assert_eq!(
            counter(&mut p, "sync_full"),
            1,
            "no full resync after {kind}"
        );
        for i in 0..20 {
            let k = format!("k{i}");
            assert_eq!(
                peek(&mut r, &k, "/login")[..3],
                peek(&mut p, &k, "/login")[..3]
            );
        }
    }
}

#[test]
fn a_replica_behind_by_more_than_the_backlog_gets_a_full_resync() {
    let primary = Daemon::start_with(&["--repl-backlog-size", "1kb"]);
    let mut p = primary.client();
    setup_limits(&mut p);
    let replica = start_replica_of(&primary, &[]);
    wait_link_up(&replica);
    let mut r = replica.client();
    assert_eq!(field(&mut p, "replication", "repl_backlog_size"), "1024");
    // Point the replica at a port where nothing listens: its link is down, its history kept.
    let _: String = run(&mut r, &["REPLICAOF", "127.0.0.1", "1"]).expect("REPLICAOF");
    eventually("replica detached", 20, || {
        field(&mut p, "replication", "connected_slaves") == "0"
    });
    for i in 0..100 {
        let _: Vec<i64> = run(&mut p, &["RL.CHECK", &format!("key{i}"), "/x"]).expect("check");
    }
    let _: i64 = run(&mut p, &["WAIT", "0", "0"]).expect("WAIT flushes the stream");
    let histlen: u64 = field(&mut p, "replication", "repl_backlog_histlen")
        .parse()
        .unwrap();
    assert_eq!(histlen, 1024, "the backlog has wrapped");
    let port = port_s(&primary);
    let _: String = run(&mut r, &["REPLICAOF", "127.0.0.1", &port]).expect("REPLICAOF");
    eventually("full resync", 20, || counter(&mut p, "sync_full") == 2);
    assert_eq!(
        counter(&mut p, "sync_partial_err"),
        1,
        "a partial resync was tried"
    );
    assert_eq!(counter(&mut p, "sync_partial_ok"), 0);
    wait_link_up(&replica);
    wait_caught_up(&primary, &replica);
    for i in 0..100 {
        let k = format!("key{i}");
        assert_eq!(peek(&mut r, &k, "/x")[..3], peek(&mut p, &k, "/x")[..3]);
    }
}

#[test]
fn writes_made_while_a_full_sync_is_read_reach_the_replica() {
    // The snapshot is read outside the replication lock while checks go on; the stream after
    // the snapshot carries the current state of every key written meanwhile.
    let primary = Daemon::start();
    let mut p = primary.client();
    setup_limits(&mut p);
    let _: String = run(
        &mut p,
        &["RL.LIMIT", "SET", "ENDPOINT", "/bulk", "RATE", "1000/1h"],
    )
    .expect("limit");
    let mut pipe = redis::pipe();
    for i in 0..30_000 {
        pipe.cmd("RL.CHECK")
            .arg(format!("b{i}"))
            .arg("/bulk")
            .ignore();
    }
    let _: () = pipe.query(&mut p).expect("bulk checks");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = primary.client();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("hot{}", n % 200);
                let _: Vec<i64> = run(&mut w, &["RL.CHECK", &k, "/login"]).expect("check");
                let k = format!("b{}", n % 30_000);
                let _: Vec<i64> = run(&mut w, &["RL.CHECK", &k, "/bulk"]).expect("check");
                n += 1;
            }
            n
        })
    };
    let replica = start_replica_of(&primary, &[]);
    let _: String = run(
        &mut p,
        &["RL.LIMIT", "SET", "ENDPOINT", "/late", "RATE", "7/1m"],
    )
    .expect("limit during the sync");
    wait_link_up(&replica);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("writer");
    assert!(writes > 0);
    wait_caught_up(&primary, &replica);
    let mut r = replica.client();
    assert_eq!(limits(&mut r), limits(&mut p));
    assert_eq!(
        run::<i64>(&mut r, &["DBSIZE"]).unwrap(),
        run::<i64>(&mut p, &["DBSIZE"]).unwrap()
    );
    for i in 0..200 {
        let k = format!("hot{i}");
        assert_eq!(
            peek(&mut r, &k, "/login")[..3],
            peek(&mut p, &k, "/login")[..3]
        );
    }
    for i in (0..30_000).step_by(97) {
        let k = format!("b{i}");
        assert_eq!(
            peek(&mut r, &k, "/bulk")[..3],
            peek(&mut p, &k, "/bulk")[..3]
        );
    }
}

#[test]
fn a_replica_restarted_empty_catches_up_and_keeps_its_limits_on_disk() {
    let primary = Daemon::start();
    let mut p = primary.client();
    setup_limits(&mut p);
    let rdir = temp_dir("replica");
    let rdir_s = rdir.to_str().expect("utf-8");
    let target = format!("127.0.0.1:{}", primary.port);
    {
        let replica = Daemon::start_with(&["--replicaof", &target, "--dir", rdir_s]);
        wait_link_up(&replica);
        wait_caught_up(&primary, &replica);
        // kill -9: the replica's memory is gone.
    }
    for i in 0..50 {
        let _: Vec<i64> = run(&mut p, &["RL.CHECK", &format!("u{i}"), "/login"]).expect("check");
    }
    let _: i64 = run(&mut p, &["RL.LIMIT", "DEL", "CLIENT", "bob"]).expect("del");
    // A fresh, empty replica (new directory) catches up by a full sync.
    let fresh = Daemon::start_with(&["--replicaof", &target]);
    wait_link_up(&fresh);
    wait_caught_up(&primary, &fresh);
    let mut f = fresh.client();
    assert_eq!(limits(&mut f), limits(&mut p));
    for i in 0..50 {
        let k = format!("u{i}");
        assert_eq!(
            peek(&mut f, &k, "/login")[..3],
            peek(&mut p, &k, "/login")[..3]
        );
    }
    // The first replica's directory holds the limits it was sent (with no primary at all).
    let alone = Daemon::start_with(&["--dir", rdir_s]);
    let mut a = alone.client();
    let mut before = limits(&mut p);
    before.push((
        "CLIENT bob".into(),
        vec!["RATE", "3/1h", "BURST", "0", "ALGO", "sliding"]
            .into_iter()
            .map(String::from)
            .collect(),
    ));
    before.sort();
    let mut got = limits(&mut a);
    got.sort();
    assert_eq!(
        got, before,
        "replicated limits were persisted in the replica's --dir"
    );
    drop(alone);
    let _ = std::fs::remove_dir_all(&rdir);
}

/// Figures of one drill run.
#[derive(Debug)]
pub struct DrillReport {
    pub first_answer_after_kill: Duration,
    pub limit: i64,
    pub admitted_per_key: Vec<i64>,
    pub over_admission_max: i64,
}

/// The failover drill: steady RL.CHECK load on keys with a known limit, `kill -9` of the
/// primary, `REPLICAOF NO ONE` on the replica, load moved to it. A second replica of the old
/// primary then follows the new one with a partial resync.
#[test]
fn failover_drill() {
    const KEYS: usize = 10;
    const LIMIT: i64 = 400;
    let mut primary = Daemon::start();
    let mut p = primary.client();
    setup_limits(&mut p);
    let lim = LIMIT.to_string();
    let rate = format!("{lim}/1h");
    let _: String = run(
        &mut p,
        &["RL.LIMIT", "SET", "ENDPOINT", "/drill", "RATE", &rate],
    )
    .expect("drill limit");
    let replica = start_replica_of(&primary, &[]);
    let other = start_replica_of(&primary, &[]);
    wait_link_up(&replica);
    wait_link_up(&other);
    let limits_before = limits(&mut p);
    let tiers_before = tiers(&mut p);

    // The load: one client thread, round-robin over the keys, following `target`.
    let target = Arc::new(AtomicU16::new(primary.port));
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(Mutex::new(vec![0i64; KEYS]));
    let answered = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let load = {
        let (target, stop, admitted, answered) = (
            target.clone(),
            stop.clone(),
            admitted.clone(),
            answered.clone(),
        );
        std::thread::spawn(move || {
            let mut con: Option<(u16, redis::Connection)> = None;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let port = target.load(Ordering::Relaxed);
                if con.as_ref().is_none_or(|(p, _)| *p != port) {
                    con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                        .ok()
                        .and_then(|c| {
                            c.get_connection_with_timeout(Duration::from_millis(200))
                                .ok()
                        })
                        .map(|c| (port, c));
                    if con.is_none() {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                }
                let Some((_, c)) = con.as_mut() else { continue };
                let key = i % KEYS;
                let reply: Result<Vec<i64>, _> = redis::cmd("RL.CHECK")
                    .arg(format!("drill{key}"))
                    .arg("/drill")
                    .query(c);
                match reply {
                    Ok(r) => {
                        if r.first() == Some(&1) {
                            admitted.lock().expect("lock")[key] += 1;
                        }
                        answered.lock().expect("lock").push(Instant::now());
                        i += 1;
                    }
                    Err(_) => {
                        con = None;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        })
    };
    // Kill the primary mid-consumption: about half of every key's allowance spent.
    eventually("half the allowance spent", 20, || {
        admitted
            .lock()
            .expect("lock")
            .iter()
            .all(|&a| a >= LIMIT / 2)
    });
    primary.signal("KILL");
    let killed_at = Instant::now();
    let _ = primary.wait_exit(10);
    let mut r = replica.client();
    let _: String = run(&mut r, &["REPLICAOF", "NO", "ONE"]).expect("promote");
    target.store(replica.port, Ordering::Relaxed);
    eventually("every key exhausted on the new primary", 20, || {
        admitted.lock().expect("lock").iter().all(|&a| a >= LIMIT)
    });
    // A little more load, all of which must be denied.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");

    let first_answer = answered
        .lock()
        .expect("lock")
        .iter()
        .find(|&&t| t > killed_at)
        .map(|t| t.duration_since(killed_at))
        .expect("an answer after the kill");
    let admitted = admitted.lock().expect("lock").clone();
    // GCRA 400/1h refills one every 9 s; the drill is shorter than that, give it one.
    let over: Vec<i64> = admitted.iter().map(|a| (a - LIMIT - 1).max(0)).collect();
    let report = DrillReport {
        first_answer_after_kill: first_answer,
        limit: LIMIT,
        admitted_per_key: admitted.clone(),
        over_admission_max: over.iter().copied().max().unwrap_or(0),
    };
    eprintln!("failover drill: {report:?}");
    // The stream is drained every millisecond: what can be lost is the last few checks.
    assert!(
        report.over_admission_max <= 5,
        "over-admission per key beyond the replication lag: {report:?}"
    );
    assert_eq!(limits(&mut r), limits_before, "every limit survived");
    assert_eq!(tiers(&mut r), tiers_before, "every tier survived");
    let ri = info(&mut r, "replication");
    assert_eq!(ri["role"], "master");
    assert_ne!(ri["master_replid2"], "0".repeat(40));

    // The other replica of the old primary follows the new one: partially when it had not
    // received more of the old primary's stream than the promoted replica had (the usual case),
    // fully when it had (it then holds history the new primary never saw; Redis does the same).
    // Which one happened depends on when the kill landed, so the test decides from the offsets.
    let mut o = other.client();
    let other_offset: u64 = field(&mut o, "replication", "slave_repl_offset")
        .parse()
        .expect("offset");
    let second: u64 = field(&mut r, "replication", "second_repl_offset")
        .parse()
        .expect("second offset");
    let port = port_s(&replica);
    let _: String = run(&mut o, &["REPLICAOF", "127.0.0.1", &port]).expect("REPLICAOF");
    eventually("other replica attached", 20, || {
        field(&mut r, "replication", "connected_slaves") == "1"
    });
    // second_repl_offset is the promoted replica's offset + 1, as in Redis.
    if other_offset < second {
        assert_eq!(
            counter(&mut r, "sync_partial_ok"),
            1,
            "partial: {other_offset} < {second}"
        );
        assert_eq!(counter(&mut r, "sync_full"), 0);
    } else {
        assert_eq!(
            counter(&mut r, "sync_full"),
            1,
            "full: {other_offset} >= {second}"
        );
    }
    wait_caught_up(&replica, &other);
    for k in 0..KEYS {
        let key = format!("drill{k}");
        assert_eq!(
            peek(&mut o, &key, "/drill")[..3],
            peek(&mut r, &key, "/drill")[..3]
        );
    }
    assert_eq!(limits(&mut o), limits_before);
}

#[test]
fn readiness_and_metrics_follow_the_replica_link() {
    let primary = Daemon::start_with(&["--http-port", "0"]);
    let replica = start_replica_of(&primary, &["--http-port", "0"]);
    wait_link_up(&replica);
    let http = reqwest::blocking::Client::new();
    let get = |d: &Daemon, path: &str| {
        let r = http
            .get(format!("{}{path}", d.http_url()))
            .send()
            .expect("http");
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    assert_eq!(get(&replica, "/readyz").0, 200);
    let (_, metrics) = get(&replica, "/metrics");
    assert!(
        metrics.contains("ratelimitd_replication_role{role=\"replica\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ratelimitd_replication_link_up 1"),
        "{metrics}"
    );
    let (_, metrics) = get(&primary, "/metrics");
    assert!(
        metrics.contains("ratelimitd_replication_role{role=\"master\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ratelimitd_connected_replicas 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ratelimitd_replication_lag_seconds"),
        "{metrics}"
    );
    // The replica's PSYNC is counted, although its connection never returns to serving
    // commands (it turned into the replication stream in the same batch).
    let psyncs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ratelimitd_commands_total{command=\"psync\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(matches!(psyncs, Some(n) if n >= 1), "{metrics}");
    // The primary goes away: the replica is up (healthz) but not ready (readyz).
    drop(primary);
    eventually("the replica notices its link is down", 20, || {
        get(&replica, "/readyz").0 == 503
    });
    assert_eq!(get(&replica, "/healthz").0, 200);
    let (_, metrics) = get(&replica, "/metrics");
    assert!(
        metrics.contains("ratelimitd_replication_link_up 0"),
        "{metrics}"
    );
}

#[test]
fn one_worker_daemons_replicate_persist_and_save() {
    // --threads 1 runs a current-thread runtime: the blocking paths (limits-log fsync, SAVE,
    // full sync, replayed limits) must work there too.
    let primary = Daemon::start_with(&["--threads", "1"]);
    let mut p = primary.client();
    setup_limits(&mut p);
    for _ in 0..3 {
        let _: Vec<i64> = run(&mut p, &["RL.CHECK", "c1", "/one"]).expect("check");
    }
    let _: String = run(&mut p, &["SAVE"]).expect("SAVE");
    let replica = start_replica_of(&primary, &["--threads", "1"]);
    wait_link_up(&replica);
    wait_caught_up(&primary, &replica);
    let mut r = replica.client();
    assert_eq!(limits(&mut r), limits(&mut p));
    // The reset time counts down between the two peeks, and times cross processes at
    // millisecond grain: the replica's answer lies between two primary answers taken around it.
    let before = peek(&mut p, "c1", "/one");
    let on_replica = peek(&mut r, "c1", "/one");
    let after = peek(&mut p, "c1", "/one");
    assert_eq!(on_replica[..4], before[..4]);
    assert_eq!(after[..4], before[..4]);
    assert!(
        after[4] - 1 <= on_replica[4] && on_replica[4] <= before[4] + 1,
        "reset on the replica {on_replica:?} outside the primary's {before:?}..{after:?}"
    );
    let _: String = run(
        &mut p,
        &["RL.LIMIT", "SET", "ENDPOINT", "/later", "RATE", "7/1m"],
    )
    .expect("set after attach");
    let acked: i64 = run(&mut p, &["WAIT", "1", "5000"]).expect("WAIT");
    assert_eq!(acked, 1);
    eventually("the later limit replicated", 20, || {
        run::<Option<Vec<redis::Value>>>(&mut r, &["RL.LIMIT", "GET", "ENDPOINT", "/later"])
            .ok()
            .flatten()
            .is_some()
    });
}

fn http_get(d: &Daemon, path: &str) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .get(format!("{}{path}", d.http_url()))
        .send()
        .expect("http");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn min_replicas_to_write_refuses_writes_without_good_replicas() {
    let primary = Daemon::start_with(&[
        "--http-port",
        "0",
        "--min-replicas-to-write",
        "1",
        "--min-replicas-max-lag",
        "2",
    ]);
    let mut p = primary.client();
    // No replica yet: writes are refused as Redis refuses them, reads are served.
    let err = run::<Vec<i64>>(&mut p, &["RL.CHECK", "alice", "/login"]).unwrap_err();
    assert!(err.contains("NOREPLICAS"), "{err}");
    assert!(
        err.to_string()
            .contains("Not enough good replicas to write"),
        "{err}"
    );
    let err = run::<String>(&mut p, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1h"]).unwrap_err();
    assert!(err.contains("NOREPLICAS"), "{err}");
    let _: Vec<i64> = run(&mut p, &["RL.PEEK", "alice", "/login"]).expect("reads are served");
    let _: Option<String> = run(&mut p, &["GET", "x"]).expect("reads are served");
    assert_eq!(field(&mut p, "replication", "min_slaves_good_slaves"), "0");
    let (status, body) = http_get(&primary, "/v1/check?client=alice&endpoint=/login");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("NOREPLICAS"), "{body}");
    assert_eq!(
        run::<Vec<String>>(&mut p, &["CONFIG", "GET", "min-replicas-to-write"]).unwrap(),
        vec!["min-replicas-to-write".to_string(), "1".into()]
    );

    // A replica that acknowledges: writes are accepted.
    let replica = start_replica_of(&primary, &["--http-port", "0"]);
    wait_link_up(&replica);
    eventually("the replica counts as good", 20, || {
        field(&mut p, "replication", "min_slaves_good_slaves") == "1"
    });
    let _: String = run(&mut p, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1h"]).expect("SET");
    let ok: Vec<i64> = run(&mut p, &["RL.CHECK", "alice", "/login"]).expect("check");
    assert_eq!(ok[..3], [1, 3, 2]);
    assert_eq!(
        http_get(&primary, "/v1/check?client=alice&endpoint=/login").0,
        200
    );

    // The replica refuses checks over HTTP too (a check is a write), and charges nothing.
    wait_caught_up(&primary, &replica);
    let mut r = replica.client();
    let before = peek(&mut r, "alice", "/login");
    let (status, body) = http_get(&replica, "/v1/check?client=alice&endpoint=/login");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("READONLY"), "{body}");
    assert_eq!(peek(&mut r, "alice", "/login")[..3], before[..3]);

    // The replica goes away: within the max lag the primary refuses writes again.
    drop(replica);
    eventually("no good replica left", 20, || {
        field(&mut p, "replication", "min_slaves_good_slaves") == "0"
    });
    let err = run::<Vec<i64>>(&mut p, &["RL.CHECK", "alice", "/login"]).unwrap_err();
    assert!(err.contains("NOREPLICAS"), "{err}");
    // Turned off at runtime: writes are accepted again.
    let _: String = run(&mut p, &["CONFIG", "SET", "min-replicas-to-write", "0"]).expect("SET");
    let ok: Vec<i64> = run(&mut p, &["RL.CHECK", "alice", "/login"]).expect("check");
    assert_eq!(ok[0], 1);
    assert!(field(&mut p, "replication", "min_slaves_good_slaves").is_empty());
}

#[test]
fn memcached_writes_are_refused_on_a_replica_and_without_good_replicas() {
    // A replica's items come from its primary alone: a memcached write there would never be
    // reconciled (the primary would not know it, the replica would keep it), so it is refused
    // as RESP writes are. Reads are served.
    let primary = Daemon::start_with(&["--memcached-port", "0"]);
    let mut pm = primary.mc_raw();
    pm.send(b"set shared 0 0 4\r\nfrom\r\n");
    pm.expect(b"STORED\r\n");
    let replica = start_replica_of(&primary, &["--memcached-port", "0"]);
    wait_link_up(&replica);
    wait_caught_up(&primary, &replica);
    let mut rm = replica.mc_raw();
    rm.send(b"get shared\r\n");
    rm.expect(b"VALUE shared 0 4\r\nfrom\r\nEND\r\n");
    rm.send(b"mg shared v\r\n");
    rm.expect(b"VA 4\r\nfrom\r\n");
    let refused = b"SERVER_ERROR READONLY You can't write against a read only replica.\r\n";
    for write in [
        &b"set foo 0 0 3\r\nbar\r\n"[..],
        b"set foo 0 0 3 noreply\r\nbar\r\n",
        b"add foo 0 0 3\r\nbar\r\n",
        b"delete shared\r\n",
        b"incr shared 1\r\n",
        b"touch shared 10\r\n",
        b"gat 10 shared\r\n",
        b"flush_all\r\n",
        b"ms foo 3\r\nbar\r\n",
        b"md shared\r\n",
        b"ma shared\r\n",
        b"mg shared T30 v\r\n",
    ] {
        rm.send(write);
        rm.expect(refused);
    }
    rm.send(b"get shared foo\r\n");
    rm.expect(b"VALUE shared 0 4\r\nfrom\r\nEND\r\n");
    let mut r = replica.client();
    assert_eq!(
        run::<Option<String>>(&mut r, &["GET", "foo"]).unwrap(),
        None,
        "nothing was written on the replica"
    );

    // A primary short of good replicas refuses memcached writes as it refuses RESP ones.
    let lonely = Daemon::start_with(&["--memcached-port", "0", "--min-replicas-to-write", "1"]);
    let mut lm = lonely.mc_raw();
    lm.send(b"set foo 0 0 3\r\nbar\r\n");
    lm.expect(b"SERVER_ERROR NOREPLICAS Not enough good replicas to write.\r\n");
    lm.send(b"get foo\r\n");
    lm.expect(b"END\r\n");
}

#[test]
fn a_replica_link_that_sends_more_than_acks_is_dropped() {
    // After PSYNC a replica only sends REPLCONF ACKs. A peer that starts a huge array instead
    // (4096 elements of 64 MiB would pass the framing limits) must not make the primary buffer
    // it: the link is dropped once 64 KiB are pending, and the primary serves on.
    use std::io::{Read, Write};
    let primary = Daemon::start();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", primary.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&common::resp(&[b"PSYNC", b"?", b"-1"]))
        .expect("psync");
    s.write_all(b"*4096\r\n$67108864\r\n").expect("header");
    // 16 MiB of one bulk: buffered, all of it would be written; dropped after 64 KiB, the
    // writes fail once the socket buffers are full (the primary has closed its end).
    let chunk = vec![b'x'; 64 * 1024];
    let total = 256;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let refused = (0..total).find_map(|i| match s.write_all(&chunk) {
        Ok(()) => None,
        Err(e) => Some((i, e.kind())),
    });
    match refused {
        Some((_, std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)) => {}
        other => panic!("the link was not dropped: {other:?} (None: all {total} chunks taken)"),
    }
    let mut buf = vec![0u8; 64 * 1024];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    let mut con = primary.client();
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    eventually("the link is gone", 20, || {
        field(&mut con, "replication", "connected_slaves") == "0"
    });
}
