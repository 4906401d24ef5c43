//! One counter set: every path that changes state marks it for the snapshot, and INFO and
//! /metrics report the same counts. Each path is driven by its real client (redis for RESP,
//! reqwest for HTTP, a raw memcached socket), against the daemon in-process.

mod common;

use common::eventually;
use common::inproc::InProcess;
use common::run;
use std::time::Duration;

fn changes(d: &InProcess, con: &mut redis::Connection) -> u64 {
    d.info_field(con, "rdb_changes_since_last_save")
        .parse()
        .expect("a number")
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The value of one sample line of /metrics.
fn metric(d: &InProcess, sample: &str) -> u64 {
    let text = http()
        .get(format!("{}/metrics", d.http_url()))
        .send()
        .and_then(|r| r.text())
        .expect("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics"))
}

#[test]
fn every_path_that_writes_marks_the_snapshot_dirty() {
    let d = InProcess::start(&["--http-port", "0", "--memcached-port", "0"]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "100/1h"]).unwrap();
    assert_eq!(
        changes(&d, &mut con),
        0,
        "a limit is in the log, not the snapshot"
    );
    let mut expected = 0;

    // RESP: an admitted check, a denied one (charges nothing), a reset.
    run::<Vec<i64>>(&mut con, &["RL.CHECK", "a", "/x"]).unwrap();
    expected += 1;
    assert_eq!(changes(&d, &mut con), expected, "RL.CHECK");
    run::<Vec<i64>>(&mut con, &["RL.CHECK", "a", "/x", "COST", "1000"]).unwrap();
    assert_eq!(changes(&d, &mut con), expected, "a denial changes nothing");
    assert_eq!(run::<i64>(&mut con, &["RL.RESET", "a", "/x"]).unwrap(), 1);
    expected += 1;
    assert_eq!(changes(&d, &mut con), expected, "RL.RESET");
    assert_eq!(run::<i64>(&mut con, &["RL.RESET", "a", "/x"]).unwrap(), 0);
    assert_eq!(changes(&d, &mut con), expected, "a reset of nothing");
    run::<Vec<i64>>(&mut con, &["CL.THROTTLE", "t", "5", "10", "60"]).unwrap();
    expected += 1;
    assert_eq!(changes(&d, &mut con), expected, "CL.THROTTLE");

    // RESP key-value writes: each write counts; reads do not.
    run::<i64>(&mut con, &["INCR", "k"]).unwrap();
    run::<i64>(&mut con, &["EXPIRE", "k", "60"]).unwrap();
    expected += 2;
    run::<Option<String>>(&mut con, &["GET", "k"]).unwrap();
    assert_eq!(changes(&d, &mut con), expected, "INCR + EXPIRE");
    // Inside MULTI/EXEC too.
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("INCR")
        .arg("k")
        .cmd("SET")
        .arg("j")
        .arg("1");
    let _: redis::Value = pipe.query(&mut con).expect("EXEC");
    expected += 2;
    assert_eq!(changes(&d, &mut con), expected, "EXEC");

    // HTTP: an admitted check counts, for the snapshot and for INFO.
    let allowed_before: u64 = d.info_field(&mut con, "rl_checks_allowed").parse().unwrap();
    let r = http()
        .get(format!("{}/v1/check?client=h&endpoint=/x", d.http_url()))
        .send()
        .expect("check");
    assert_eq!(r.status(), 200);
    expected += 1;
    assert_eq!(changes(&d, &mut con), expected, "HTTP check");
    let allowed: u64 = d.info_field(&mut con, "rl_checks_allowed").parse().unwrap();
    assert_eq!(allowed, allowed_before + 1, "INFO counts HTTP checks");

    // memcached: a set, an incr, a delete; a get does not count.
    let mut mc = d.mc_raw();
    mc.send(b"set m 0 0 1\r\n1\r\nincr m 1\r\nget m\r\ndelete m\r\n");
    mc.expect(b"STORED\r\n2\r\nVALUE m 0 1\r\n2\r\nEND\r\nDELETED\r\n");
    expected += 3;
    assert_eq!(changes(&d, &mut con), expected, "memcached writes");

    // /metrics reads the same counts as INFO.
    assert_eq!(metric(&d, "ratelimitd_changes_since_last_save "), expected);
    let info_allowed: u64 = d.info_field(&mut con, "rl_checks_allowed").parse().unwrap();
    assert_eq!(
        metric(&d, "ratelimitd_checks_total{result=\"allowed\"} "),
        info_allowed
    );
    let info_denied: u64 = d.info_field(&mut con, "rl_checks_denied").parse().unwrap();
    assert_eq!(
        metric(&d, "ratelimitd_checks_total{result=\"denied\"} "),
        info_denied
    );
    assert_eq!(info_denied, 1);

    // SAVE writes them out.
    run::<String>(&mut con, &["SAVE"]).unwrap();
    assert_eq!(changes(&d, &mut con), 0);
}

#[test]
fn http_only_traffic_is_saved_by_the_periodic_snapshot() {
    let d = InProcess::start(&["--http-port", "0", "--save-interval", "1"]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1h"]).unwrap();
    let http = http();
    for _ in 0..3 {
        let r = http
            .post(format!("{}/v1/check", d.http_url()))
            .form(&[("client", "alice"), ("endpoint", "/x")])
            .send()
            .expect("check");
        assert_eq!(r.status(), 200);
    }
    let snap = d.dir.join("state.snap");
    eventually("a snapshot of the HTTP checks", 10, || snap.exists());
    eventually("the change count back to 0", 10, || {
        changes(&d, &mut con) == 0
    });
}

#[test]
fn config_resetstat_resets_info_but_not_metrics() {
    let d = InProcess::start(&["--http-port", "0"]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1h"]).unwrap();
    for _ in 0..3 {
        run::<Vec<i64>>(&mut con, &["RL.CHECK", "a", "/x"]).unwrap();
    }
    run::<String>(&mut con, &["CONFIG", "RESETSTAT"]).unwrap();
    assert_eq!(d.info_field(&mut con, "rl_checks_allowed"), "0");
    assert_eq!(d.info_field(&mut con, "rl_checks_denied"), "0");
    // Prometheus counters only grow.
    assert_eq!(
        metric(&d, "ratelimitd_checks_total{result=\"allowed\"} "),
        1
    );
    assert_eq!(metric(&d, "ratelimitd_checks_total{result=\"denied\"} "), 2);
    assert_eq!(
        metric(
            &d,
            "ratelimitd_checks_denied_by_scope_total{scope=\"default\"} "
        ),
        2
    );
}
