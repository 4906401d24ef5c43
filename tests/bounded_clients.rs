//! Clients are bounded, against the real binary: a subscriber or a client that stops reading
//! is cut at its output limit, a stranger cannot send a large request before signing in, and
//! idle connections, slow trickles and connections that never sign in are closed.

mod common;

use common::{eventually, info_field, resp, run, Daemon};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn stat(con: &mut redis::Connection, field: &str) -> u64 {
    info_field(con, field).parse().expect("a number")
}

/// Number of connections CLIENT LIST shows with these flags (N normal, P pubsub).
fn clients_flagged(con: &mut redis::Connection, flags: &str) -> usize {
    let list: String = run(con, &["CLIENT", "LIST"]).expect("CLIENT LIST");
    list.lines()
        .filter(|l| l.contains(&format!(" flags={flags} ")))
        .count()
}

#[test]
fn a_subscriber_that_stops_reading_is_cut_at_its_output_limit() {
    let d = Daemon::start_with(&["--client-output-buffer-limit", "pubsub 1mb 0 0"]);
    let mut sub = d.raw();
    sub.send(&resp(&[b"SUBSCRIBE", b"news"]));
    sub.expect(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    // The subscriber reads nothing more. 40 MB of messages: far more than the socket buffers
    // hold, so most of it waits in the daemon, where 1 MB is the bound.
    let mut publisher = d.client();
    let payload = "x".repeat(64 * 1024);
    let mut delivered = 0;
    for _ in 0..640 {
        delivered += run::<i64>(&mut publisher, &["PUBLISH", "news", &payload]).unwrap();
    }
    assert!(
        delivered < 640,
        "the subscriber stops receiving: {delivered}"
    );
    assert_eq!(
        stat(&mut publisher, "client_output_buffer_limit_disconnections"),
        1
    );
    eventually("the subscriber gone", 10, || {
        clients_flagged(&mut publisher, "P") == 0
    });
    // Everyone else is still served.
    assert_eq!(run::<String>(&mut publisher, &["PING"]).unwrap(), "PONG");
    // CONFIG GET shows the limits in Redis's format, in bytes.
    let got: Vec<String> = run(
        &mut publisher,
        &["CONFIG", "GET", "client-output-buffer-limit"],
    )
    .unwrap();
    assert_eq!(
        got[1],
        "normal 0 0 0 replica 268435456 67108864 60 pubsub 1048576 0 0"
    );
}

#[test]
fn a_client_over_the_normal_output_limit_is_disconnected() {
    let d = Daemon::start();
    let mut admin = d.client();
    run::<String>(
        &mut admin,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 10kb 0 0",
        ],
    )
    .unwrap();
    let mut small = d.raw();
    small.send(&resp(&[b"PING", &[b'a'; 1000]]));
    small.line();
    let mut big = d.raw();
    big.send(&resp(&[b"PING", &[b'a'; 20_000]]));
    assert!(big.closed(), "a 20 kB reply is over the 10 kB hard limit");
    assert_eq!(
        stat(&mut admin, "client_output_buffer_limit_disconnections"),
        1
    );
    let err = run::<String>(
        &mut admin,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 1zb 0 0",
        ],
    )
    .unwrap_err();
    assert!(err.contains("'1zb' is not a size"), "{err}");
}

#[test]
fn before_sign_in_a_large_request_is_refused_and_the_connection_closed() {
    let d = Daemon::start_with(&["--requirepass", "pw"]);
    // Eleven arguments: refused on the header, before any of them arrives.
    let mut many = d.raw();
    many.send(b"*11\r\n");
    many.expect(b"-ERR Protocol error: unauthenticated multibulk length\r\n");
    assert!(many.closed());
    // A long argument: refused on its header, the body never buffered.
    let mut long = d.raw();
    long.send(b"*2\r\n$4\r\nAUTH\r\n$100000\r\n");
    long.expect(b"-ERR Protocol error: unauthenticated bulk length\r\n");
    assert!(long.closed());
    // Signed in (in the same write as the request), the usual bounds apply.
    let mut signed = d.raw();
    let mut both = resp(&[b"AUTH", b"pw"]);
    both.extend(resp(&[b"PING", &[b'a'; 20_000]]));
    signed.send(&both);
    signed.expect(b"+OK\r\n$20000\r\n");
    // Without a password to require, nobody is held to these bounds.
    let open = Daemon::start();
    let mut raw = open.raw();
    raw.send(&resp(&[b"PING", &[b'a'; 20_000]]));
    raw.expect(b"$20000\r\n");
}

#[test]
fn idle_clients_are_closed_and_subscribers_are_not() {
    let d = Daemon::start_with(&["--timeout", "1", "--memcached-port", "0"]);
    let mut idle = d.raw();
    let mut mc_idle = d.mc_raw();
    let mut sub = d.raw();
    sub.send(&resp(&[b"SUBSCRIBE", b"c"]));
    sub.expect(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
    // A slow trickle: half a request, one byte at a time, is not activity.
    let mut trickle = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    trickle.write_all(b"*2\r\n$4\r\nPING\r\n$100\r\n").unwrap();
    let dribble = std::thread::spawn(move || {
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if trickle.write_all(b"a").is_err() {
                return true;
            }
        }
        false
    });
    assert!(idle.closed(), "an idle connection is closed");
    assert!(mc_idle.closed(), "an idle memcached connection is closed");
    assert!(
        dribble.join().unwrap(),
        "the trickling connection is closed"
    );
    let mut admin = d.client();
    assert!(stat(&mut admin, "client_idle_timeout_disconnections") >= 3);
    // The subscriber outlived the timeout and still gets its messages.
    assert_eq!(run::<i64>(&mut admin, &["PUBLISH", "c", "hi"]).unwrap(), 1);
    sub.expect(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n");
    // A client blocked in WAIT longer than the timeout is not idle.
    let mut waiting = d.raw();
    waiting.send(&resp(&[b"WAIT", b"1", b"2500"]));
    waiting.expect(b":0\r\n");
    waiting.send(&resp(&[b"PING"]));
    waiting.expect(b"+PONG\r\n");
    // CONFIG SET timeout 0: no more idle closes (on a new connection: the last one sat idle
    // through the WAIT).
    let mut admin = d.client();
    run::<String>(&mut admin, &["CONFIG", "SET", "timeout", "0"]).unwrap();
    let before = stat(&mut admin, "client_idle_timeout_disconnections");
    let mut kept = d.raw();
    std::thread::sleep(Duration::from_millis(2500));
    kept.send(&resp(&[b"PING"]));
    kept.expect(b"+PONG\r\n");
    assert_eq!(
        stat(&mut admin, "client_idle_timeout_disconnections"),
        before
    );
}

#[test]
fn a_client_that_stops_reading_its_replies_is_closed_by_the_idle_timeout() {
    let d = Daemon::start_with(&["--timeout", "1"]);
    // Requests whose replies nobody reads: the daemon's writes block, and the connection
    // must still be closed rather than held forever.
    let s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let req = resp(&[b"PING", &[b'a'; 60_000]]);
        for _ in 0..2000 {
            if let Err(e) = w.write_all(&req) {
                return Some(e.kind());
            }
        }
        None
    });
    // Closed by the daemon (reset or broken pipe), not a write that timed out because the
    // daemon stopped reading and kept the connection.
    let ended = writer.join().unwrap();
    assert!(
        matches!(
            ended,
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        ),
        "{ended:?}"
    );
    let mut admin = d.client();
    assert!(stat(&mut admin, "client_idle_timeout_disconnections") >= 1);
    drop(s);
}

#[test]
fn a_connection_that_does_not_sign_in_in_time_is_closed() {
    let d = Daemon::start_with(&[
        "--requirepass",
        "pw",
        "--auth-timeout",
        "1",
        "--memcached-port",
        "0",
    ]);
    let mut stranger = d.raw();
    let mut mc_stranger = d.mc_raw();
    let mut member = d.raw();
    member.send(&resp(&[b"AUTH", b"pw"]));
    member.expect(b"+OK\r\n");
    assert!(
        stranger.closed(),
        "a connection that never signs in is closed"
    );
    assert!(mc_stranger.closed(), "over memcached too");
    // The one that signed in stays, idle or not.
    std::thread::sleep(Duration::from_millis(1500));
    member.send(&resp(&[b"INFO", b"stats"]));
    let header = member.line();
    assert!(header.starts_with('$'), "{header}");
    let mut admin = d.client();
    run::<String>(&mut admin, &["AUTH", "pw"]).unwrap();
    assert_eq!(stat(&mut admin, "client_auth_timeout_disconnections"), 2);
    let got: Vec<String> = run(&mut admin, &["CONFIG", "GET", "auth-timeout"]).unwrap();
    assert_eq!(got, ["auth-timeout", "1"]);
}

#[test]
fn client_kill_filters_reach_resp_and_memcached_connections() {
    let d = Daemon::start_with(&["--memcached-port", "0"]);
    let mut mc = d.mc_raw();
    mc.send(b"version\r\n");
    assert!(mc.line().starts_with("VERSION"));
    let mut admin = d.client();
    let port = d.memcached_port.unwrap();
    let list: String = run(&mut admin, &["CLIENT", "LIST"]).unwrap();
    let field = |line: &str, name: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let mc_line = list
        .lines()
        .find(|l| l.contains(&format!(" laddr=127.0.0.1:{port} ")))
        .expect("the memcached connection in CLIENT LIST")
        .to_string();
    let id = field(&mc_line, "id").unwrap();
    // Filters must all match: the right id with the wrong type closes nothing.
    assert_eq!(
        run::<i64>(&mut admin, &["CLIENT", "KILL", "ID", &id, "TYPE", "pubsub"]).unwrap(),
        0
    );
    assert_eq!(
        run::<i64>(&mut admin, &["CLIENT", "KILL", "ID", &id]).unwrap(),
        1
    );
    assert!(mc.closed());
    // The old form names one address.
    let mut other = d.raw();
    other.send(&resp(&[b"CLIENT", b"ID"]));
    let other_id = other.line();
    let list: String = run(&mut admin, &["CLIENT", "LIST"]).unwrap();
    let addr = list
        .lines()
        .find(|l| field(l, "id").as_deref() == Some(other_id.trim_start_matches(':')))
        .and_then(|l| field(l, "addr"))
        .unwrap();
    assert_eq!(
        run::<String>(&mut admin, &["CLIENT", "KILL", &addr]).unwrap(),
        "OK"
    );
    assert!(other.closed());
    let err = run::<String>(&mut admin, &["CLIENT", "KILL", &addr]).unwrap_err();
    assert!(err.contains("No such client"), "{err}");
    // USER, and the caller is spared unless SKIPME no.
    assert_eq!(
        run::<i64>(&mut admin, &["CLIENT", "KILL", "USER", "default"]).unwrap(),
        0
    );
    // With SKIPME no, the caller gets its answer, then its connection closes.
    assert_eq!(
        run::<i64>(
            &mut admin,
            &["CLIENT", "KILL", "USER", "default", "SKIPME", "no"]
        ),
        Ok(1)
    );
    assert!(run::<String>(&mut admin, &["PING"]).is_err());
}
