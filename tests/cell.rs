//! CL.THROTTLE over the real binary, compared with redis-cell's replies.
//!
//! The daemon's clock is real here, so only sequences that complete well within a second are
//! asserted exactly (redis-cell reports whole seconds, rounded up); the frozen-clock vectors of
//! redis-cell's own test run against the engine in its unit tests.

mod common;
use common::{run, Daemon};

#[test]
fn redis_cell_sequence_at_one_instant() {
    let d = Daemon::start();
    let mut con = d.client();
    let mut throttle =
        |q: &str| -> Vec<i64> { run(&mut con, &["CL.THROTTLE", "foo", "4", "1", "1", q]).unwrap() };
    assert_eq!(throttle("6"), vec![1, 5, 5, -1, 0]);
    assert_eq!(throttle("1"), vec![0, 5, 4, -1, 1]);
    assert_eq!(throttle("1"), vec![0, 5, 3, -1, 2]);
    assert_eq!(throttle("1"), vec![0, 5, 2, -1, 3]);
    assert_eq!(throttle("1"), vec![0, 5, 1, -1, 4]);
    assert_eq!(throttle("1"), vec![0, 5, 0, -1, 5]);
    assert_eq!(throttle("1"), vec![1, 5, 0, 1, 5]);
    // Quantity 0 peeks.
    assert_eq!(throttle("0"), vec![0, 5, 0, -1, 5]);
}

#[test]
fn quantity_defaults_to_one_and_keys_are_independent() {
    let d = Daemon::start();
    let mut con = d.client();
    let r: Vec<i64> = run(&mut con, &["CL.THROTTLE", "user123", "15", "30", "60"]).unwrap();
    assert_eq!(r, vec![0, 16, 15, -1, 2]);
    let r: Vec<i64> = run(&mut con, &["CL.THROTTLE", "user456", "15", "30", "60", "1"]).unwrap();
    assert_eq!(r, vec![0, 16, 15, -1, 2]);
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]).unwrap(), 2);
}

#[test]
fn cell_errors_match_redis_cell() {
    let d = Daemon::start();
    let mut con = d.client();
    // redis-cell registers the command without an arity and answers any wrong count with its
    // usage text; so do we.
    let mut raw = d.raw();
    for args in [
        &[&b"CL.THROTTLE"[..]][..],
        &[b"CL.THROTTLE", b"k", b"4", b"1"],
        &[b"CL.THROTTLE", b"k", b"4", b"1", b"1", b"1", b"extra"],
    ] {
        raw.send(&common::resp(args));
        raw.expect(b"-Cell error: Usage: cl.throttle <key> <max_burst> <count per period> <period> [<quantity>]\r\n");
    }
    raw.send(&common::resp(&[b"CL.THROTTLE", b"k", b"x", b"1", b"1"]));
    raw.expect(b"-Cell error: Couldn't parse as integer: x\r\n");
    for args in [
        ["CL.THROTTLE", "k", "x", "1", "1"],
        ["CL.THROTTLE", "k", "4", "x", "1"],
        ["CL.THROTTLE", "k", "4", "1", "x"],
        ["CL.THROTTLE", "k", "4", "0", "1"],
        ["CL.THROTTLE", "k", "4", "1", "0"],
    ] {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        raw.send(&common::resp(&bytes));
        let line = raw.line();
        assert!(line.starts_with("-Cell error: "), "{args:?}: {line}");
    }
    // redis-cell has no range checks: a negative max_burst is accepted and computed.
    let r: Vec<i64> = run(&mut con, &["CL.THROTTLE", "neg", "-1", "1", "1"]).unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
}
