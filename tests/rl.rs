//! RL.* over the real binary with the `redis` crate.

mod common;
use common::{run, Daemon};

fn check(con: &mut redis::Connection, client: &str, endpoint: &str) -> Vec<i64> {
    run(con, &["RL.CHECK", client, endpoint]).expect("RL.CHECK")
}

#[test]
fn five_per_second_admits_five_then_denies_with_retry_about_200ms() {
    let d = Daemon::start();
    let mut con = d.client();
    assert_eq!(
        run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1s"]).unwrap(),
        "OK"
    );
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let r = check(&mut con, "alice", "/search");
        assert_eq!(r[0], 1, "allowed: {r:?}");
        assert_eq!(r[1], 5);
        assert_eq!(r[3], -1, "retry_after_ms is -1 when allowed");
        remaining.push(r[2]);
    }
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    let denied = check(&mut con, "alice", "/search");
    assert_eq!(denied[0], 0, "sixth is denied: {denied:?}");
    assert_eq!(denied[1], 5);
    assert_eq!(denied[2], 0);
    // Five checks took a few ms at most, so the wait is a little under 200 ms.
    assert!(
        (150..=200).contains(&denied[3]),
        "retry_after_ms {}",
        denied[3]
    );
    assert!(
        (900..=1000).contains(&denied[4]),
        "reset_after_ms {}",
        denied[4]
    );
    // Another client has its own allowance.
    assert_eq!(check(&mut con, "bob", "/search")[0], 1);
}

#[test]
fn burst_adds_instant_capacity_and_cost_counts() {
    let d = Daemon::start();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &[
            "RL.LIMIT", "SET", "ENDPOINT", "/upload", "RATE", "10/1m", "BURST", "5",
        ],
    )
    .unwrap();
    let r: Vec<i64> = run(&mut con, &["RL.CHECK", "c1", "/upload", "COST", "15"]).unwrap();
    assert_eq!(&r[..3], &[1, 15, 0]);
    let r: Vec<i64> = run(&mut con, &["RL.CHECK", "c1", "/upload"]).unwrap();
    assert_eq!(r[0], 0);
    // A cost larger than the capacity can never fit: retry_after_ms is -1.
    let r: Vec<i64> = run(&mut con, &["RL.CHECK", "c2", "/upload", "COST", "16"]).unwrap();
    assert_eq!((r[0], r[3]), (0, -1));
    // Denied checks charge nothing: c2 still has all 15.
    let r: Vec<i64> = run(&mut con, &["RL.PEEK", "c2", "/upload"]).unwrap();
    assert_eq!(&r[..3], &[1, 15, 15]);
}

#[test]
fn no_limit_means_unlimited() {
    let d = Daemon::start();
    let mut con = d.client();
    assert_eq!(check(&mut con, "x", "/y"), vec![1, -1, -1, -1, -1]);
    assert_eq!(
        run::<i64>(&mut con, &["DBSIZE"]).unwrap(),
        0,
        "unlimited checks store nothing"
    );
}

#[test]
fn multi_window_is_all_or_nothing() {
    let d = Daemon::start();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1s", "RATE", "4/1h"],
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(check(&mut con, "a", "/e")[0], 1);
    }
    // The per-second window denies; the hour window must not be charged for it.
    assert_eq!(check(&mut con, "a", "/e")[0], 0);
    let explain: Vec<redis::Value> = run(&mut con, &["RL.EXPLAIN", "a", "/e"]).unwrap();
    let text = format!("{explain:?}");
    assert!(text.contains("4/1h"), "{text}");
    // Hour window: 4 - 3 = 1 left (the denied check charged nothing).
    let r: Vec<i64> = run(&mut con, &["RL.PEEK", "a", "/e"]).unwrap();
    assert_eq!(
        r[0], 0,
        "the second window is still full for a peek, but the first is not"
    );
    assert_eq!(run::<i64>(&mut con, &["RL.RESET", "a", "/e"]).unwrap(), 1);
    assert_eq!(run::<i64>(&mut con, &["RL.RESET", "a", "/e"]).unwrap(), 0);
    let r = check(&mut con, "a", "/e");
    assert_eq!(
        &r[..3],
        &[1, 3, 2],
        "after reset the most restrictive window is 3/1s"
    );
}

#[test]
fn precedence_and_tiers() {
    let d = Daemon::start();
    let mut con = d.client();
    let set = |con: &mut redis::Connection, args: &[&str]| {
        let mut full = vec!["RL.LIMIT", "SET"];
        full.extend_from_slice(args);
        assert_eq!(run::<String>(con, &full).unwrap(), "OK", "{args:?}");
    };
    set(&mut con, &["DEFAULT", "RATE", "1/1s"]);
    set(&mut con, &["ENDPOINT", "/api/*", "RATE", "2/1s"]);
    set(&mut con, &["ENDPOINT", "/api/v2/*", "RATE", "3/1s"]);
    set(&mut con, &["TIER", "gold", "RATE", "4/1s"]);
    set(
        &mut con,
        &["TIER", "gold", "ENDPOINT", "/api/*", "RATE", "5/1s"],
    );
    set(&mut con, &["CLIENT", "vip", "RATE", "6/1s"]);
    set(
        &mut con,
        &["CLIENT", "vip", "ENDPOINT", "/api/v2/users", "RATE", "7/1s"],
    );
    assert_eq!(
        run::<String>(&mut con, &["RL.TIER", "SET", "g", "gold"]).unwrap(),
        "OK"
    );
    assert_eq!(
        run::<String>(&mut con, &["RL.TIER", "SET", "vip", "gold"]).unwrap(),
        "OK"
    );
    let cases = [
        ("nobody", "/other", 1, "DEFAULT"),
        ("nobody", "/api/x", 2, "ENDPOINT /api/*"),
        ("nobody", "/api/v2/x", 3, "ENDPOINT /api/v2/*"),
        ("g", "/other", 4, "TIER gold"),
        ("g", "/api/v2/x", 5, "TIER gold ENDPOINT /api/*"),
        ("vip", "/api/x", 6, "CLIENT vip"),
        (
            "vip",
            "/api/v2/users",
            7,
            "CLIENT vip ENDPOINT /api/v2/users",
        ),
    ];
    for (client, endpoint, limit, scope) in cases {
        let r: Vec<i64> = run(&mut con, &["RL.PEEK", client, endpoint]).unwrap();
        assert_eq!(r[1], limit, "{client} {endpoint}");
        let e: std::collections::HashMap<String, redis::Value> =
            run(&mut con, &["RL.EXPLAIN", client, endpoint]).unwrap();
        assert_eq!(
            e.get("scope"),
            Some(&redis::Value::BulkString(scope.as_bytes().to_vec())),
            "{client} {endpoint}"
        );
    }
    assert_eq!(
        run::<Option<String>>(&mut con, &["RL.TIER", "GET", "g"])
            .unwrap()
            .as_deref(),
        Some("gold")
    );
    assert_eq!(run::<i64>(&mut con, &["RL.TIER", "DEL", "g"]).unwrap(), 1);
    assert_eq!(
        run::<Option<String>>(&mut con, &["RL.TIER", "GET", "g"]).unwrap(),
        None
    );
    let r: Vec<i64> = run(&mut con, &["RL.PEEK", "g", "/other"]).unwrap();
    assert_eq!(r[1], 1, "without its tier, g falls back to the default");
}

#[test]
fn limit_get_del_list_and_live_change() {
    let d = Daemon::start();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &[
            "RL.LIMIT", "SET", "CLIENT", "c", "RATE", "10/500ms", "BURST", "2", "RATE", "1000/1h",
        ],
    )
    .unwrap();
    let got: Vec<redis::Value> = run(&mut con, &["RL.LIMIT", "GET", "CLIENT", "c"]).unwrap();
    let text: Vec<String> = got
        .iter()
        .map(|v| match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::Int(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        text,
        vec!["RATE", "10/500ms", "BURST", "2", "RATE", "1000/1h", "BURST", "0", "ALGO", "gcra"]
    );
    assert_eq!(
        run::<Option<Vec<String>>>(&mut con, &["RL.LIMIT", "GET", "DEFAULT"]).unwrap(),
        None
    );
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "TIER", "free", "RATE", "1/1d"],
    )
    .unwrap();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1s"]).unwrap();
    let list: Vec<(String, Vec<redis::Value>)> = run(&mut con, &["RL.LIMIT", "LIST"]).unwrap();
    let scopes: Vec<&str> = list.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(scopes, vec!["DEFAULT", "CLIENT c", "TIER free"]);
    let list: Vec<(String, Vec<redis::Value>)> =
        run(&mut con, &["RL.LIMIT", "LIST", "MATCH", "TIER *"]).unwrap();
    assert_eq!(list.len(), 1);
    let list: Vec<(String, Vec<redis::Value>)> =
        run(&mut con, &["RL.LIMIT", "LIST", "COUNT", "2"]).unwrap();
    assert_eq!(list.len(), 2);

    // A change applies to the very next check.
    assert_eq!(check(&mut con, "z", "/e")[0], 1);
    assert_eq!(check(&mut con, "z", "/e")[0], 0);
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "100/1s"]).unwrap();
    assert_eq!(check(&mut con, "z", "/e")[1], 100);
    assert_eq!(check(&mut con, "fresh", "/e")[..3], [1, 100, 99]);
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "2/1h"]).unwrap();
    assert_eq!(check(&mut con, "fresh2", "/e")[..3], [1, 2, 1]);
    assert_eq!(check(&mut con, "fresh2", "/e")[..3], [1, 2, 0]);
    assert_eq!(check(&mut con, "fresh2", "/e")[0], 0);
    assert_eq!(
        run::<i64>(&mut con, &["RL.LIMIT", "DEL", "DEFAULT"]).unwrap(),
        1
    );
    assert_eq!(
        run::<i64>(&mut con, &["RL.LIMIT", "DEL", "DEFAULT"]).unwrap(),
        0
    );
    assert_eq!(check(&mut con, "z", "/e")[1], -1);
}

#[test]
fn rl_errors_are_clear() {
    let d = Daemon::start();
    let mut con = d.client();
    let cases: &[(&[&str], &str)] = &[
        (&["RL.LIMIT", "SET", "DEFAULT"], "at least one RATE"),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "0/1s"],
            "rate count must be between 1 and 4294967295",
        ),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "4294967296/1s"],
            "rate count must be between",
        ),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/0s"],
            "period must be between 1ms and 30d",
        ),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/31d"],
            "period must be between 1ms and 30d",
        ),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1w"],
            "invalid rate '5/1w'",
        ),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "-5/1s"],
            "invalid rate",
        ),
        (
            &[
                "RL.LIMIT",
                "SET",
                "DEFAULT",
                "RATE",
                "99999999999999999999999/1s",
            ],
            "invalid rate",
        ),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1s", "BURST", "x"],
            "value is not an integer",
        ),
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1s", "BURST", "-1"],
            "value is not an integer",
        ),
        (
            &["RL.LIMIT", "SET", "GALAXY", "x", "RATE", "5/1s"],
            "unknown scope 'GALAXY'",
        ),
        (&["RL.LIMIT", "SET", "CLIENT"], "wrong number of arguments"),
        (
            &["RL.LIMIT", "FROB", "DEFAULT"],
            "unknown subcommand 'FROB'",
        ),
        (
            &["RL.LIMIT", "GET", "DEFAULT", "extra"],
            "wrong number of arguments",
        ),
        (
            &["RL.CHECK", "a"],
            "wrong number of arguments for 'rl.check' command",
        ),
        (
            &["RL.CHECK", "a", "b", "COST", "x"],
            "value is not an integer",
        ),
        (
            &["RL.CHECK", "a", "b", "COST", "-1"],
            "value is not an integer",
        ),
        (&["RL.CHECK", "a", "b", "PRICE", "1"], "syntax error"),
        (
            &["RL.PEEK", "a", "b", "c"],
            "wrong number of arguments for 'rl.peek' command",
        ),
        (&["RL.TIER", "SET", "a"], "wrong number of arguments"),
    ];
    for (args, want) in cases {
        let err = run::<redis::Value>(&mut con, args).expect_err(&format!("{args:?} must fail"));
        assert!(err.contains(want), "{args:?}: got {err:?}, want {want:?}");
    }
    // The connection is still fine after all of that.
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
}
