//! Bad input over raw sockets: every case gets a Redis-style error (or, for bytes that are not
//! RESP at all, an error and a close), and the daemon keeps serving everyone else.

mod common;
use common::{resp, Daemon};
use std::io::Write;
use std::time::Duration;

#[test]
fn unknown_command_and_arity_errors_keep_the_connection() {
    let d = Daemon::start();
    let mut raw = d.raw();
    raw.send(&resp(&[b"FROBNICATE", b"a", b"b"]));
    raw.expect(b"-ERR unknown command 'FROBNICATE', with args beginning with: 'a' 'b' \r\n");
    raw.send(&resp(&[b"ECHO"]));
    raw.expect(b"-ERR wrong number of arguments for 'echo' command\r\n");
    raw.send(&resp(&[
        b"CL.THROTTLE",
        b"k",
        b"1",
        b"99999999999999999999",
        b"1",
    ]));
    let line = raw.line();
    assert!(line.starts_with("-"), "{line}");
    raw.send(&resp(&[
        b"RL.CHECK",
        b"a",
        b"b",
        b"COST",
        b"18446744073709551616",
    ]));
    raw.expect(b"-ERR value is not an integer or out of range\r\n");
    raw.send(&resp(&[b"PING"]));
    raw.expect(b"+PONG\r\n");
}

#[test]
fn huge_cost_and_binary_ids_do_not_break_anything() {
    let d = Daemon::start();
    let mut raw = d.raw();
    raw.send(&resp(&[
        b"RL.LIMIT",
        b"SET",
        b"DEFAULT",
        b"RATE",
        b"4294967295/30d",
        b"BURST",
        b"4294967295",
    ]));
    raw.expect(b"+OK\r\n");
    raw.send(&resp(&[
        b"RL.CHECK",
        b"\x00\xff\r\n",
        b"\xfe",
        b"COST",
        b"18446744073709551615",
    ]));
    raw.expect(b"*5\r\n:0\r\n:8589934590\r\n:8589934590\r\n:-1\r\n:0\r\n");
    raw.send(&resp(&[b"CL.THROTTLE", b"\xff\xfe", b"1", b"1", b"1"]));
    let line = raw.line();
    assert!(line.starts_with('*') || line.starts_with('-'), "{line}");
    if line.starts_with('*') {
        for _ in 0..5 {
            raw.line();
        }
    }
    raw.send(&resp(&[b"PING"]));
    raw.expect(b"+PONG\r\n");
}

#[test]
fn inline_commands_work_like_redis() {
    let d = Daemon::start();
    let mut raw = d.raw();
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
    raw.send(b"ECHO \"hello world\"\r\n\r\nECHO 'a b'\n");
    raw.expect(b"$11\r\nhello world\r\n$3\r\na b\r\n");
    raw.send(b"RL.LIMIT SET DEFAULT RATE 1/1m\r\nRL.CHECK c e\r\nRL.CHECK c e\r\n");
    raw.expect(b"+OK\r\n*5\r\n:1\r\n:1\r\n:0\r\n:-1\r\n");
    let _reset = raw.line();
    raw.expect(b"*5\r\n:0\r\n:1\r\n:0\r\n");
    let _retry = raw.line();
    let _reset = raw.line();
    raw.send(b"ECHO \"unbalanced\r\n");
    raw.expect(b"-ERR Protocol error: unbalanced quotes in request\r\n");
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
}

#[test]
fn oversized_bulk_is_refused_and_skipped_then_the_connection_carries_on() {
    let d = Daemon::start_with(&["--max-bulk-len", "1024"]);
    let mut raw = d.raw();
    // Header announcing 4096 bytes, then the data in pieces, then a normal command.
    raw.send(b"*2\r\n$4\r\nECHO\r\n$4096\r\n");
    raw.expect(b"-ERR Protocol error: bulk string length 4096 exceeds the limit of 1024 bytes\r\n");
    for _ in 0..4 {
        raw.send(&[b'x'; 1024]);
        std::thread::sleep(Duration::from_millis(5));
    }
    raw.send(b"\r\n");
    raw.send(&resp(&[b"PING"]));
    raw.expect(b"+PONG\r\n");
    // Exactly at the limit is fine.
    let big = vec![b'y'; 1024];
    raw.send(&resp(&[b"ECHO", &big]));
    let mut want = b"$1024\r\n".to_vec();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"\r\n");
    raw.expect(&want);
}

#[test]
fn oversized_arrays_and_inline_lines_are_refused() {
    let d = Daemon::start_with(&["--max-args", "8"]);
    let mut raw = d.raw();
    let args: Vec<&[u8]> = vec![b"PING"; 9];
    raw.send(&resp(&args));
    raw.expect(b"-ERR Protocol error: array of 9 elements exceeds the limit of 8\r\n");
    raw.send(&resp(&[b"PING"]));
    raw.expect(b"+PONG\r\n");
    let mut long = vec![b'a'; 70 * 1024];
    long.extend_from_slice(b"\r\n");
    raw.send(&long);
    raw.expect(b"-ERR Protocol error: too big inline request\r\n");
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
}

#[test]
fn garbage_gets_a_protocol_error_and_a_close() {
    let d = Daemon::start();
    let mut raw = d.raw();
    raw.send(b"*abc\r\n");
    raw.expect(b"-ERR Protocol error: invalid multibulk length\r\n");
    assert!(raw.closed());
    let mut raw = d.raw();
    raw.send(b"*1\r\n$x\r\n");
    raw.expect(b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(raw.closed());
    let mut raw = d.raw();
    raw.send(b"*1\r\n:1\r\n");
    raw.expect(b"-ERR Protocol error: expected '$', got ':'\r\n");
    assert!(raw.closed());
    // Everyone else is still served.
    let mut con = d.client();
    assert_eq!(common::run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
}

#[test]
fn half_frames_and_vanishing_clients_do_not_block_others() {
    let d = Daemon::start();
    // A client that sends half a frame and waits.
    let mut slow = d.raw();
    slow.send(b"*2\r\n$4\r\nECHO\r\n$5\r\nhel");
    // Clients that send half a frame and vanish, or connect and vanish.
    for _ in 0..20 {
        let mut gone = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        let _ = gone.write_all(b"*3\r\n$8\r\nRL.CHECK\r\n$1");
        drop(gone);
    }
    let mut con = d.client();
    assert_eq!(common::run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    // The slow client's frame completes byte by byte and is answered.
    for b in b"lo\r\n" {
        slow.send(&[*b]);
        std::thread::sleep(Duration::from_millis(2));
    }
    slow.expect(b"$5\r\nhello\r\n");
    let clients: String = common::run(&mut con, &["CLIENT", "LIST"]).unwrap();
    assert_eq!(
        clients.lines().count(),
        2,
        "vanished clients are gone: {clients}"
    );
}

#[test]
fn maxclients_refuses_extra_connections() {
    let d = Daemon::start_with(&["--maxclients", "2"]);
    let _a = d.client();
    let _b = d.client();
    let mut c = d.raw();
    c.expect(b"-ERR max number of clients reached\r\n");
    drop(_a);
    // The daemon notices the close on its next read of that socket: a new client is
    // refused until it has, and served after.
    let url = format!("redis://127.0.0.1:{}/", d.port);
    let mut served = None;
    common::eventually("a slot freed by the close", 5, || {
        served = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .ok()
            .and_then(|mut c| common::run::<String>(&mut c, &["PING"]).ok().map(|_| c));
        served.is_some()
    });
    let mut con = served.expect("served");
    assert_eq!(common::run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
}

/// Pipelined checks are decoded ahead of execution (to prefetch their keys); what follows
/// them must still behave as if every request were decoded one at a time: checks before
/// garbage are answered before the protocol error, and nothing after a QUIT is run.
#[test]
fn pipelined_checks_then_garbage_or_quit_answer_in_order() {
    let d = Daemon::start();
    let mut con = d.client();
    let _: String = common::run(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1h"]).unwrap();
    let check = b"*3\r\n$8\r\nRL.CHECK\r\n$1\r\nk\r\n$2\r\n/e\r\n";
    let mut raw = d.raw();
    let mut bytes = Vec::new();
    for _ in 0..4 {
        bytes.extend_from_slice(check);
    }
    bytes.extend_from_slice(b"*1\r\n:1\r\n");
    raw.send(&bytes);
    for remaining in ["2", "1", "0"] {
        assert_eq!(raw.line(), "*5");
        assert_eq!(raw.line(), ":1");
        assert_eq!(raw.line(), ":3");
        assert_eq!(raw.line(), format!(":{remaining}"));
        raw.line();
        raw.line();
    }
    assert_eq!(raw.line(), "*5");
    assert_eq!(raw.line(), ":0", "the fourth check is denied");
    for _ in 0..4 {
        raw.line();
    }
    raw.expect(b"-ERR Protocol error: expected '$', got ':'\r\n");
    assert!(raw.closed());

    // Checks, QUIT, and a check after it: the last one never runs.
    let mut raw = d.raw();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"*3\r\n$8\r\nRL.CHECK\r\n$1\r\nq\r\n$2\r\n/e\r\n");
    bytes.extend_from_slice(b"*1\r\n$4\r\nQUIT\r\n");
    bytes.extend_from_slice(b"*3\r\n$8\r\nRL.CHECK\r\n$1\r\nq\r\n$2\r\n/e\r\n");
    raw.send(&bytes);
    assert_eq!(raw.line(), "*5");
    assert_eq!(raw.line(), ":1");
    for _ in 0..4 {
        raw.line();
    }
    raw.expect(b"+OK\r\n");
    assert!(raw.closed());
    let peek: Vec<i64> = common::run(&mut con, &["RL.PEEK", "q", "/e"]).unwrap();
    assert_eq!(peek[2], 2, "one check of q ran, not two: {peek:?}");
}
