//! The memcached listener against the real binary: the `memcache` crate (a real client, text
//! protocol), a scripted Dalli-style `ma`/`mg` exchange with exact bytes (what rack-attack's
//! memcached store sends), memcached's own arithmetic and exptime rules, the key space shared
//! with RESP, and bad input (bad keys, oversized values, half-sent lines, the binary protocol,
//! vanished clients).

mod common;

use common::eventually;
use common::inproc::InProcess;
use common::{run, Daemon};
use std::io::Write;
use std::time::Duration;

/// True if `get key` finds nothing (the whole reply is read either way).
fn missing(mc: &mut common::Raw, key: &str) -> bool {
    mc.send(format!("get {key}\r\n").as_bytes());
    if mc.line() == "END" {
        return true;
    }
    let _value = mc.line();
    assert_eq!(mc.line(), "END");
    false
}

/// The daemon in-process on a fake clock, for the tests about time.
fn daemon_on_a_fake_clock() -> InProcess {
    InProcess::start(&["--memcached-port", "0"])
}

fn daemon() -> Daemon {
    Daemon::start_with(&["--memcached-port", "0"])
}

fn client(d: &Daemon) -> memcache::Client {
    let url = format!(
        "memcache://127.0.0.1:{}?protocol=ascii&timeout=5",
        d.memcached_port.expect("memcached port in the log")
    );
    memcache::Client::connect(url).expect("memcache client")
}

#[test]
fn the_memcache_crate_works_against_the_text_protocol() {
    let d = daemon();
    let c = client(&d);
    c.set("greeting", "hello", 0).unwrap();
    assert_eq!(c.get::<String>("greeting").unwrap(), Some("hello".into()));
    // The crate reads NOT_STORED as a quiet Ok: check the value instead.
    c.add("greeting", "again", 0).unwrap();
    assert_eq!(c.get::<String>("greeting").unwrap(), Some("hello".into()));
    c.add("fresh", "1", 60).unwrap();
    c.replace("fresh", "2", 60).unwrap();
    c.replace("absent", "x", 0).unwrap();
    assert_eq!(
        c.get::<String>("absent").unwrap(),
        None,
        "replace needs an existing key"
    );
    c.append("greeting", " world").unwrap();
    c.prepend("greeting", ">").unwrap();
    assert_eq!(
        c.get::<String>("greeting").unwrap(),
        Some(">hello world".into())
    );
    assert_eq!(c.increment("fresh", 5).unwrap(), 7);
    assert_eq!(c.decrement("fresh", 100).unwrap(), 0, "decr floors at 0");
    assert!(
        c.increment("absent", 1).is_err(),
        "incr needs an existing key"
    );
    assert!(c.touch("fresh", 100).unwrap());
    assert!(!c.touch("absent", 100).unwrap());
    let (v, _flags, cas) = c
        .get::<(String, u32, Option<u64>)>("fresh")
        .unwrap()
        .unwrap();
    assert_eq!(v, "0");
    let got = c
        .gets::<(String, u32, Option<u64>)>(&["fresh", "greeting", "absent"])
        .unwrap();
    assert_eq!(got.len(), 2);
    let cas = got["fresh"].2.or(cas).expect("gets returns the cas");
    assert!(c.cas("fresh", "10", 0, cas).unwrap());
    assert!(
        !matches!(c.cas("fresh", "11", 0, cas), Ok(true)),
        "a stale cas is refused (EXISTS)"
    );
    assert_eq!(c.get::<String>("fresh").unwrap(), Some("10".into()));
    assert!(c.delete("fresh").unwrap());
    assert!(!c.delete("fresh").unwrap());
    let version = c.version().unwrap();
    assert!(version[0].1.starts_with("1.6"), "{version:?}");
    // The crate's stats() parses nothing (its loop condition is inverted in 0.21), so read the
    // fields over a raw socket.
    c.stats().unwrap();
    let mut m = d.mc_raw();
    m.send(b"stats\r\n");
    let mut s = std::collections::HashMap::new();
    loop {
        let line = m.line();
        if line == "END" {
            break;
        }
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("STAT"), "{line}");
        s.insert(
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
    }
    assert_eq!(s["version"], "1.6.21");
    assert_eq!(
        s["curr_connections"], "2",
        "this raw socket and the crate's connection"
    );
    for field in [
        "pid",
        "uptime",
        "time",
        "version",
        "curr_items",
        "total_items",
        "bytes",
        "curr_connections",
        "total_connections",
        "cmd_get",
        "cmd_set",
        "get_hits",
        "get_misses",
        "evictions",
        "limit_maxbytes",
        "threads",
    ] {
        assert!(s.contains_key(field), "stats has {field}: {s:?}");
    }
    c.flush().unwrap();
    assert_eq!(c.get::<String>("greeting").unwrap(), None);
}

#[test]
fn counters_are_shared_with_resp() {
    let d = daemon();
    let c = client(&d);
    let mut r = d.client();
    c.set("hits", 10u64, 0).unwrap();
    assert_eq!(c.increment("hits", 5).unwrap(), 15);
    assert_eq!(run::<String>(&mut r, &["GET", "hits"]), Ok("15".into()));
    assert_eq!(run::<i64>(&mut r, &["INCR", "hits"]), Ok(16));
    assert_eq!(c.get::<u64>("hits").unwrap(), Some(16));
    // A key made over RESP, with a TTL, is seen (and keeps its TTL through incr).
    run::<i64>(&mut r, &["INCR", "made-by-resp"]).unwrap();
    run::<i64>(&mut r, &["EXPIRE", "made-by-resp", "100"]).unwrap();
    assert_eq!(c.increment("made-by-resp", 1).unwrap(), 2);
    let ttl = run::<i64>(&mut r, &["TTL", "made-by-resp"]).unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
}

#[test]
fn dalli_style_meta_arithmetic_exact_bytes() {
    let d = daemon();
    let mut m = d.mc_raw();
    // rack-attack's counter: Dalli's `incr(key, 1, ttl, 0)` → `ma <key> v D1 J0 N<ttl> MI`.
    m.send(b"ma rack::attack:1:ip v D1 J0 N60 MI\r\n");
    m.expect(b"VA 1\r\n0\r\n");
    m.send(b"ma rack::attack:1:ip v D1 J0 N60 MI\r\n");
    m.expect(b"VA 1\r\n1\r\n");
    m.send(b"ma rack::attack:1:ip v D5 J0 N60 MI\r\n");
    m.expect(b"VA 1\r\n6\r\n");
    m.send(b"mg rack::attack:1:ip v t\r\n");
    m.expect(b"VA 1 t60\r\n6\r\n");
    m.send(b"ma rack::attack:1:ip v D10 MD\r\n");
    m.expect(b"VA 1\r\n0\r\n");
    m.send(b"ma nope v D1\r\n");
    m.expect(b"NF\r\n");
    m.send(b"mg nope v\r\n");
    m.expect(b"EN\r\n");
    // Quiet mode and mn, as Dalli batches them; opaque and key echo.
    m.send(b"mg nope v q\r\nma rack::attack:1:ip q\r\nmg rack::attack:1:ip s v k O42\r\nmn\r\n");
    m.expect(b"VA 1 s1 krack::attack:1:ip O42\r\n1\r\nMN\r\n");
    // ms / md with CAS.
    m.send(b"ms sk 2 T0 F7 c\r\nhi\r\n");
    let line = m.line();
    assert!(line.starts_with("HD c"), "{line}");
    let cas: u64 = line[4..].parse().unwrap();
    m.send(format!("md sk C{}\r\n", cas + 1000).as_bytes());
    m.expect(b"EX\r\n");
    m.send(b"mg sk v f\r\n");
    m.expect(b"VA 2 f7\r\nhi\r\n");
    m.send(format!("md sk C{cas}\r\n").as_bytes());
    m.expect(b"HD\r\n");
    m.send(b"md sk\r\n");
    m.expect(b"NF\r\n");
    // base64 keys.
    m.send(b"ms Zm9v 1 b\r\nx\r\nmg Zm9v b v k\r\n");
    m.expect(b"HD\r\nVA 1 kZm9v b\r\nx\r\n");
    m.send(b"ms k 1 MZ\r\nx\r\n");
    m.expect(b"CLIENT_ERROR invalid mode for ms STORE\r\n");
    m.send(b"mg k v v\r\nmg k !\r\n");
    m.expect(b"CLIENT_ERROR duplicate flag\r\nCLIENT_ERROR invalid flag\r\n");
}

#[test]
fn memcached_arithmetic_and_exptime_rules() {
    let d = daemon_on_a_fake_clock();
    let mut m = d.mc_raw();
    let steps: &[(&[u8], &[u8])] = &[
        (b"incr none 1\r\n", b"NOT_FOUND\r\n"),
        (b"set n 0 0 20\r\n18446744073709551615\r\n", b"STORED\r\n"),
        (b"incr n 2\r\n", b"1\r\n"),
        (b"decr n 5\r\n", b"0\r\n"),
        (b"set s 0 0 3\r\nabc\r\n", b"STORED\r\n"),
        (
            b"incr s 1\r\n",
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (
            b"incr n abc\r\n",
            b"CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        (
            b"incr n -1\r\n",
            b"CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        // Numbers as memcached's strtoull reads them, in the value and in the delta.
        (b"set w 0 0 4\r\n  10\r\nincr w 1\r\n", b"STORED\r\n11\r\n"),
        (b"set w 0 0 2\r\n+5\r\nincr w +5\r\n", b"STORED\r\n10\r\n"),
        (b"set w 0 0 2\r\n5\t\r\ndecr w 1\r\n", b"STORED\r\n4\r\n"),
        (
            b"set w 0 0 21\r\n000000000000000000001\r\nincr w 1\r\n",
            b"STORED\r\n2\r\n",
        ),
        (
            b"set w 0 0 2\r\n5x\r\nincr w 1\r\n",
            b"STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (b"set gone 0 -1 1\r\nx\r\n", b"STORED\r\n"),
        (b"get gone\r\n", b"END\r\n"),
        (b"set past 0 2592001 1\r\nx\r\n", b"STORED\r\n"),
        (b"get past\r\n", b"END\r\n"),
        (b"set f 4294967295 0 1\r\nx\r\n", b"STORED\r\n"),
        (b"get f\r\n", b"VALUE f 4294967295 1\r\nx\r\nEND\r\n"),
        (
            b"set f 4294967296 0 1\r\nx\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            b"set q 0 0 1 noreply\r\n5\r\nincr q 1 noreply\r\nget q\r\n",
            b"VALUE q 0 1\r\n6\r\nEND\r\n",
        ),
        // Errors are sent even with noreply.
        (
            b"incr s 1 noreply\r\n",
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (b"delete f noreply\r\ndelete f\r\n", b"NOT_FOUND\r\n"),
        (b"touch n 1\r\n", b"TOUCHED\r\n"),
        (b"gat 0 n\r\n", b"VALUE n 0 1\r\n0\r\nEND\r\n"),
        (b"verbosity 1\r\n", b"OK\r\n"),
        (b"flush_all noreply\r\nget n\r\n", b"END\r\n"),
    ];
    for (send, want) in steps {
        m.send(send);
        m.expect(want);
    }
    // A TTL set with touch expires the key.
    m.send(b"set t 0 0 1\r\nx\r\ntouch t 1\r\n");
    m.expect(b"STORED\r\nTOUCHED\r\n");
    d.advance(Duration::from_millis(1100));
    m.send(b"get t\r\n");
    m.expect(b"END\r\n");
}

#[test]
fn bad_input_is_answered_and_the_connection_carries_on() {
    let d = Daemon::start_with(&["--memcached-port", "0", "--max-value-size", "16"]);
    let mut m = d.mc_raw();
    let long_key = "k".repeat(251);
    let steps: Vec<(Vec<u8>, &[u8])> = vec![
        (b"bogus\r\n".to_vec(), b"ERROR\r\n"),
        (b"\r\n".to_vec(), b"ERROR\r\n"),
        (b"GET a\r\n".to_vec(), b"ERROR\r\n"),
        (b"get\r\n".to_vec(), b"ERROR\r\n"),
        (
            format!("get {long_key}\r\n").into_bytes(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            b"get a\x01b\r\n".to_vec(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        // Over the value cap: the data block is swallowed, as memcached does.
        (
            b"set big 0 0 17\r\n01234567890123456\r\nversion\r\n".to_vec(),
            b"SERVER_ERROR object too large for cache\r\nVERSION 1.6.21\r\n",
        ),
        // A bad header with a readable length: the data block is swallowed too (stricter than
        // memcached, which would run `flush_all` here).
        (
            b"set k x 0 9\r\nflush_all\r\nversion\r\n".to_vec(),
            b"CLIENT_ERROR bad command line format\r\nVERSION 1.6.21\r\n",
        ),
        // The data block must end in \r\n.
        (
            b"set k 0 0 1\r\nxyz\r\nversion\r\n".to_vec(),
            b"CLIENT_ERROR bad data chunk\r\nVERSION 1.6.21\r\n",
        ),
        (b"set k 0 0\r\n".to_vec(), b"ERROR\r\n"),
        (
            b"touch k abc\r\n".to_vec(),
            b"CLIENT_ERROR invalid exptime argument\r\n",
        ),
        (
            b"delete k 10\r\n".to_vec(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            [&[b'x'; 3000][..], b"\r\nversion\r\n"].concat(),
            b"CLIENT_ERROR line too long\r\nVERSION 1.6.21\r\n",
        ),
    ];
    for (send, want) in steps {
        m.send(&send);
        m.expect(want);
    }
    // A half-sent request waits for the rest.
    m.send(b"set half 0 0 5\r\nab");
    std::thread::sleep(std::time::Duration::from_millis(100));
    m.send(b"cde\r\nget ha");
    std::thread::sleep(std::time::Duration::from_millis(100));
    m.send(b"lf\r\n");
    m.expect(b"STORED\r\nVALUE half 0 5\r\nabcde\r\nEND\r\n");
    // A client that vanishes mid-request does not disturb the others.
    {
        let mut gone = d.mc_raw();
        gone.send(b"set v 0 0 10\r\nabc");
    }
    m.send(b"quit\r\n");
    assert!(m.closed(), "quit closes");
    let mut again = d.mc_raw();
    again.send(b"get half\r\n");
    again.expect(b"VALUE half 0 5\r\nabcde\r\nEND\r\n");
}

#[test]
fn the_binary_protocol_gets_a_clear_error_and_a_close() {
    let d = daemon();
    let mut m = d.mc_raw();
    // A binary-protocol GET request header.
    let mut req = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    req.extend_from_slice(&[0; 8]);
    req.push(b'k');
    m.s.write_all(&req).unwrap();
    let line = m.line();
    assert!(
        line.starts_with("CLIENT_ERROR") && line.contains("binary"),
        "{line}"
    );
    assert!(m.closed());
}

#[test]
fn memcached_connections_count_against_maxclients_and_shutdown_is_clean() {
    let mut d = Daemon::start_with(&["--memcached-port", "0", "--maxclients", "2"]);
    let _a = d.mc_raw();
    let mut b = d.client();
    eventually("both connections registered", 5, || {
        let list: String = run(&mut b, &["CLIENT", "LIST"]).unwrap();
        list.lines().count() == 2
    });
    let mut c = d.mc_raw();
    assert_eq!(c.line(), "SERVER_ERROR max number of clients reached");
    drop(c);
    d.signal("TERM");
    let status = d.wait_exit(10);
    assert!(status.success(), "{status:?}");
}

#[test]
fn flush_all_drops_items_but_keeps_rate_state() {
    let d = Daemon::start_with(&["--memcached-port", "0"]);
    let mut con = d.client();
    common::run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1h"]).unwrap();
    common::run::<Vec<i64>>(&mut con, &["RL.CHECK", "c", "/e"]).unwrap();
    let mut mc = d.mc_raw();
    mc.send(b"set k 0 0 1\r\n1\r\n");
    mc.expect(b"STORED\r\n");
    mc.send(b"flush_all\r\n");
    mc.expect(b"OK\r\n");
    mc.send(b"get k\r\n");
    mc.expect(b"END\r\n");
    let r: Vec<i64> = common::run(&mut con, &["RL.PEEK", "c", "/e"]).unwrap();
    assert_eq!(r[2], 4, "the rate state survived flush_all");
}

#[test]
fn only_the_latest_flush_all_counts() {
    // As in memcached, a new flush_all replaces a pending delayed one: `flush_all 1` then
    // `flush_all 60` flushes in a minute, not in a second (and a stream of delayed flushes
    // holds one deadline, not a timer each).
    let d = daemon_on_a_fake_clock();
    let mut mc = d.mc_raw();
    mc.send(b"flush_all 1\r\nflush_all 60 noreply\r\nset k 0 0 1\r\n1\r\n");
    mc.expect(b"OK\r\nSTORED\r\n");
    d.advance(Duration::from_millis(2500));
    // The flush timer looks every 10 ms: give it a few looks at the new time.
    std::thread::sleep(Duration::from_millis(100));
    mc.send(b"get k\r\n");
    mc.expect(b"VALUE k 0 1\r\n1\r\nEND\r\n");
    // The minute's flush, when it falls due.
    d.advance(Duration::from_secs(60));
    eventually("the delayed flush", 5, || missing(&mut mc, "k"));
    // flush_all without a delay cancels the pending one too, and flushes now.
    mc.send(b"set k 0 0 1\r\n1\r\nflush_all 1\r\nflush_all\r\nget k\r\nset k 0 0 1\r\n2\r\n");
    mc.expect(b"STORED\r\nOK\r\nOK\r\nEND\r\nSTORED\r\n");
    d.advance(Duration::from_millis(2500));
    std::thread::sleep(Duration::from_millis(100));
    mc.send(b"get k\r\n");
    mc.expect(b"VALUE k 0 1\r\n2\r\nEND\r\n");
}

#[test]
fn touch_and_gat_keep_the_cas_as_memcached_does() {
    // A new expiry is not a new version: read (gets), extend the TTL, then cas with the token
    // read must store (a touch that gave a new CAS would make that cas answer EXISTS).
    let d = Daemon::start_with(&["--memcached-port", "0"]);
    let mut mc = d.mc_raw();
    mc.send(b"set k 0 0 1\r\nv\r\n");
    mc.expect(b"STORED\r\n");
    let gets = |mc: &mut common::Raw| -> String {
        mc.send(b"gets k\r\n");
        let head = mc.line();
        let _value = mc.line();
        assert_eq!(mc.line(), "END");
        head.rsplit(' ').next().unwrap().to_string()
    };
    let cas = gets(&mut mc);
    mc.send(b"touch k 100\r\n");
    mc.expect(b"TOUCHED\r\n");
    assert_eq!(gets(&mut mc), cas, "touch");
    mc.send(b"gat 200 k\r\n");
    mc.expect(b"VALUE k 0 1\r\nv\r\nEND\r\n");
    mc.send(b"gats 300 k\r\n");
    mc.expect(format!("VALUE k 0 1 {cas}\r\nv\r\nEND\r\n").as_bytes());
    assert_eq!(gets(&mut mc), cas, "gat, gats");
    mc.send(format!("cas k 0 0 1 {cas}\r\nx\r\nget k\r\n").as_bytes());
    mc.expect(b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn flush_all_takes_an_absolute_unix_time_as_exptimes_do() {
    // Over 30 days the delay is a Unix time, not that many seconds (which would be a flush
    // some 56 years away). One already past flushes nothing.
    let d = daemon_on_a_fake_clock();
    let mut mc = d.mc_raw();
    let now = d.clock_secs();
    mc.send(format!("set k 0 0 1\r\n1\r\nflush_all {}\r\n", now + 2).as_bytes());
    mc.expect(b"STORED\r\nOK\r\n");
    mc.send(b"get k\r\n");
    mc.expect(b"VALUE k 0 1\r\n1\r\nEND\r\n");
    d.advance(Duration::from_millis(3200));
    eventually("the flush at its Unix time", 5, || missing(&mut mc, "k"));
    mc.send(format!("set k 0 0 1\r\n2\r\nflush_all {}\r\nget k\r\n", now - 3600).as_bytes());
    mc.expect(b"STORED\r\nOK\r\nVALUE k 0 1\r\n2\r\nEND\r\n");
}

#[test]
fn a_client_that_never_stops_pipelining_does_not_hold_the_worker() {
    // The memcached listener's side of the RESP test of the same name (tests/server.rs): a
    // connection flooding `get` keeps the one worker only for its share. A connection runs
    // every complete request of a read before it yields, and a 16 KiB read holds about 1,000
    // of these short gets, so another connection's `stats` waits one or two reads' worth:
    // 598–2,346 gets in this debug build, against 5,291–5,602 between every two `stats`
    // without the yield.
    let d = Daemon::start_with(&["--memcached-port", "0", "--threads", "1"]);
    let port = d.memcached_port.expect("memcached port in the log");
    let mut stats = d.mc_raw();
    let mut cmd_get = || {
        stats.send(b"stats\r\n");
        let mut gets = None;
        loop {
            let line = stats.line();
            if line == "END" {
                return gets.expect("stats has cmd_get");
            }
            if let Some(v) = line.strip_prefix("STAT cmd_get ") {
                gets = v.parse::<u64>().ok();
            }
        }
    };
    let gaps = common::flood_and_watch(
        port,
        |i| format!("get flood:{i}\r\n").into_bytes(),
        b"quit\r\n",
        300_000,
        &mut cmd_get,
    );
    let least = *gaps.iter().min().unwrap();
    assert!(least < 3_000, "flood gets between two stats: {gaps:?}");
}
