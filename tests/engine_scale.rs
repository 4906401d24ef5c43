//! The engine-at-scale features through the real binary: ALGO, decayed keys leaving DBSIZE,
//! and the --max-keys bound with each --maxmemory-policy, visible in INFO.

mod common;
use common::{check_distinct_keys, info_field, run, Daemon};
use std::time::Duration;

/// One pipeline of RL.CHECKs of clients `c0` .. `c<n-1>` on `/e`; their replies in order.
fn check_clients(con: &mut redis::Connection, n: usize) -> Vec<Vec<i64>> {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("RL.CHECK").arg(format!("c{i}")).arg("/e");
    }
    pipe.query(con).unwrap()
}

#[test]
fn algorithms_are_chosen_per_limit() {
    let d = Daemon::start();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &[
            "RL.LIMIT", "SET", "ENDPOINT", "/f", "RATE", "3/1h", "ALGO", "fixed",
        ],
    )
    .unwrap();
    run::<String>(
        &mut con,
        &[
            "RL.LIMIT", "SET", "ENDPOINT", "/s", "ALGO", "SLIDING", "RATE", "3/1h",
        ],
    )
    .unwrap();
    for ep in ["/f", "/s"] {
        let got: Vec<Vec<i64>> = (0..4)
            .map(|_| run(&mut con, &["RL.CHECK", "c", ep]).unwrap())
            .collect();
        let allowed: Vec<i64> = got.iter().map(|r| r[0]).collect();
        assert_eq!(allowed, [1, 1, 1, 0], "{ep}: {got:?}");
        assert!(got[3][3] > 0, "{ep}: a retry time is given");
    }
    let limit: Vec<redis::Value> = run(&mut con, &["RL.LIMIT", "GET", "ENDPOINT", "/s"]).unwrap();
    assert_eq!(
        limit.last(),
        Some(&redis::Value::BulkString(b"sliding".to_vec()))
    );
    for (args, want) in [
        (
            vec![
                "RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1s", "ALGO", "leaky",
            ],
            "unknown algorithm 'leaky'",
        ),
        (
            vec![
                "RL.LIMIT", "SET", "DEFAULT", "ALGO", "gcra", "RATE", "1/1s", "ALGO", "fixed",
            ],
            "ALGO given twice",
        ),
        (
            vec!["RL.LIMIT", "SET", "DEFAULT", "ALGO"],
            "wrong number of arguments",
        ),
    ] {
        let err = run::<String>(&mut con, &args).unwrap_err();
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn decayed_keys_leave_dbsize_through_the_wheels() {
    let d = common::inproc::InProcess::start(&[]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1s"]).unwrap();
    check_clients(&mut con, 2000);
    let live = run::<i64>(&mut con, &["DBSIZE"]).unwrap();
    assert!(live > 0);
    let keyspace: String = run(&mut con, &["INFO", "keyspace"]).unwrap();
    assert!(
        keyspace.contains(&format!("db0:keys={live},")),
        "INFO keyspace with {live} keys: {keyspace:?}"
    );
    // Keys decay 1 s after their check; the wheels drop them within a few ticks. The bound
    // is generous: this asserts that they go, not how fast.
    d.advance(Duration::from_millis(1100));
    common::eventually("keys expired", 30, || {
        run::<i64>(&mut con, &["DBSIZE"]).unwrap() == 0
    });
    let expired: u64 = info_field(&mut con, "expired_keys").parse().unwrap();
    assert_eq!(expired, 2000);
    // As Redis does for an empty database: the section, without a db0 line.
    let keyspace: String = run(&mut con, &["INFO", "keyspace"]).unwrap();
    assert_eq!(keyspace.trim_end(), "# Keyspace");
}

#[test]
fn zero_bounds_mean_unbounded_as_in_redis() {
    // `--maxmemory 0` is "no limit" in Redis; with the bound split per shard, a 0 that reached
    // the engine became one key per shard, and refuse-deny then denied every new client.
    let d = Daemon::start_with(&[
        "--shards",
        "1",
        "--max-keys",
        "0",
        "--maxmemory",
        "0",
        "--maxmemory-policy",
        "refuse-deny",
    ]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1h"]).unwrap();
    let replies = check_clients(&mut con, 50);
    assert!(replies.iter().all(|r| r[0] == 1), "{replies:?}");
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]).unwrap(), 50);
    assert_eq!(info_field(&mut con, "refused_keys"), "0");
    assert_eq!(info_field(&mut con, "maxmemory"), "0");
    assert_eq!(info_field(&mut con, "max_keys"), "0");
}

#[test]
fn max_keys_with_each_policy() {
    for (policy, allowed_when_full) in [
        ("refuse-deny", 0),
        ("refuse-allow", 1),
        ("evict-nearest", 1),
    ] {
        let d = Daemon::start_with(&[
            "--shards",
            "1",
            "--max-keys",
            "100",
            "--maxmemory-policy",
            policy,
        ]);
        let mut con = d.client();
        run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1h"]).unwrap();
        check_clients(&mut con, 100);
        let r: Vec<i64> = run(&mut con, &["RL.CHECK", "newcomer", "/e"]).unwrap();
        assert_eq!(r[0], allowed_when_full, "{policy}: {r:?}");
        assert!(
            run::<i64>(&mut con, &["DBSIZE"]).unwrap() <= 100,
            "{policy}"
        );
        // Known keys are always served.
        let r: Vec<i64> = run(&mut con, &["RL.CHECK", "c5", "/e"]).unwrap();
        assert_eq!(&r[..3], &[1, 10, 8], "{policy}");
        assert_eq!(info_field(&mut con, "maxmemory_policy"), policy);
        let evicted: u64 = info_field(&mut con, "evicted_keys").parse().unwrap();
        let refused: u64 = info_field(&mut con, "refused_keys").parse().unwrap();
        if policy == "evict-nearest" {
            assert!(
                evicted >= 1 && refused == 0,
                "{policy}: {evicted} {refused}"
            );
        } else {
            assert!(
                evicted == 0 && refused == 1,
                "{policy}: {evicted} {refused}"
            );
        }
    }
    let d = Daemon::start_with(&["--maxmemory", "64mb", "--shards", "1"]);
    let mut con = d.client();
    assert_eq!(info_field(&mut con, "maxmemory"), (64u64 << 20).to_string());
    // The bounds are runtime knobs too.
    assert_eq!(
        run::<String>(
            &mut con,
            &[
                "CONFIG",
                "SET",
                "maxmemory-policy",
                "refuse-deny",
                "max-keys",
                "1"
            ]
        )
        .unwrap(),
        "OK"
    );
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1h"]).unwrap();
    assert_eq!(
        run::<Vec<i64>>(&mut con, &["RL.CHECK", "a", "/e"]).unwrap()[0],
        1
    );
    assert_eq!(
        run::<Vec<i64>>(&mut con, &["RL.CHECK", "b", "/e"]).unwrap()[0],
        0,
        "fail-closed at 1 key"
    );
    let cfg: std::collections::HashMap<String, String> =
        run(&mut con, &["CONFIG", "GET", "max*"]).unwrap();
    assert_eq!(
        cfg.get("maxmemory-policy").map(String::as_str),
        Some("refuse-deny")
    );
    assert_eq!(cfg.get("max-keys").map(String::as_str), Some("1"));
    assert_eq!(cfg.get("maxmemory").map(String::as_str), Some("67108864"));
    let err = run::<String>(&mut con, &["CONFIG", "SET", "maxmemory-policy", "lru"]).unwrap_err();
    assert!(err.contains("unknown policy"), "{err}");
    // Below what the empty store takes, every new key would be refused.
    let err = run::<String>(&mut con, &["CONFIG", "SET", "maxmemory", "1kb"]).unwrap_err();
    assert!(
        err.contains("below the") && err.contains("bytes the empty store takes"),
        "{err}"
    );
    assert_eq!(info_field(&mut con, "maxmemory"), "67108864", "unchanged");
    assert_eq!(
        run::<String>(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).unwrap(),
        "OK"
    );
    assert_eq!(info_field(&mut con, "maxmemory"), "0");
}

#[test]
fn a_flood_of_distinct_keys_stays_within_the_memory_bound() {
    let d = Daemon::start_with(&["--maxmemory", "2mb", "--shards", "16"]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1h"]).unwrap();
    check_distinct_keys(&mut con, "flood", 20);
    let used: u64 = info_field(&mut con, "used_memory").parse().unwrap();
    // The bound covers the tables; allow the fixed per-shard overhead on top.
    assert!(used <= (2 << 20) + (2 << 20) / 4, "used_memory {used}");
    let evicted: u64 = info_field(&mut con, "evicted_keys").parse().unwrap();
    assert!(evicted > 100_000, "evicted {evicted}");
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
}

#[test]
fn large_tables_go_to_the_huge_page_arena_unless_turned_off() {
    // One shard, so 30k keys make a table of ~750 KiB: far above the arena's 32 KiB threshold.
    for (flag, in_arena) in [("yes", true), ("no", false)] {
        let d = Daemon::start_with(&["--shards", "1", "--huge-pages", flag]);
        let mut con = d.client();
        run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "100/1h"]).unwrap();
        check_distinct_keys(&mut con, "k", 3);
        assert_eq!(run::<u64>(&mut con, &["DBSIZE"]).unwrap(), 30_000);
        assert_eq!(info_field(&mut con, "rl_huge_pages"), flag);
        let used: u64 = info_field(&mut con, "rl_huge_page_arena_used")
            .parse()
            .unwrap();
        assert_eq!(
            used > 0,
            in_arena,
            "--huge-pages {flag}: arena holds {used} bytes"
        );
        // Either way the same answers.
        let r: Vec<i64> = run(&mut con, &["RL.CHECK", "k0-0", "/e"]).unwrap();
        assert_eq!(&r[..3], &[1, 100, 98]);
    }
}

#[test]
fn bad_bound_flags_are_refused_clearly() {
    for (args, says) in [
        (["--maxmemory", "12parsecs"], "unknown"),
        (["--maxmemory-policy", "lru"], "unknown"),
        (["--huge-pages", "maybe"], "possible values: yes, no"),
        (["--maxmemory", "1mb"], "below the 2"),
    ] {
        // A free port and a temp dir of its own: the last case is refused after the daemon
        // bound its port and opened its directory.
        let dir = common::temp_dir("bad-bounds");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ratelimitd"))
            .args(args)
            .args(["--port", "0", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
