//! A hostile or broken primary must not be able to harm a replica: a primary's address that
//! is not a host is refused (REPLICAOF, --replicaof, the config file's `replicaof`); a full
//! sync larger than the replica's bound is refused before its body is read; a payload with
//! one bad part (a limit, the snapshot) changes nothing; values over the replica's
//! --max-value-size are not stored.
//!
//! The primary here is a fake: a listener in the test that speaks the replica handshake as
//! src/replica.rs expects it and sends payloads built with the replication crate (and engine
//! snapshots made by a real engine, then damaged). Every wait polls with a deadline.

mod common;
use bytes::Bytes;
use common::{eventually, run, temp_dir, Daemon};
use ratelimitd_engine::{Change, Engine, EngineConfig, FakeClock, Item, Limit, Scope, Window};
use ratelimitd_replication::{record, FullSync, Record};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REPLID: &str = "0123456789abcdef0123456789abcdef01234567";

fn info(con: &mut redis::Connection, section: &str) -> String {
    run(con, &["INFO", section]).expect("INFO")
}

fn field(con: &mut redis::Connection, section: &str, name: &str) -> String {
    info(con, section)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
        .unwrap_or_default()
}

type LimitList = Vec<(String, Vec<String>)>;

fn limits(con: &mut redis::Connection) -> LimitList {
    run(con, &["RL.LIMIT", "LIST"]).expect("RL.LIMIT LIST")
}

// --- 1. The primary's address -------------------------------------------------------------

#[test]
fn replicaof_refuses_a_host_that_is_not_a_host_name_or_an_address() {
    let d = Daemon::start();
    let mut con = d.client();
    let role_before: redis::Value = run(&mut con, &["ROLE"]).expect("ROLE");
    let info_before = info(&mut con, "replication");
    for host in [
        "evil\r\nrole:master",
        "evil\nmaster_host:x",
        "a\0b",
        "two words",
        "",
        "-leading-dash",
        "trailing-dash-.example",
        "a..b",
        "under_score",
        "quote\"d",
        "back\\slash",
        "[::1",
        "[127.0.0.1]",
        &"a".repeat(64),
        &vec!["x".repeat(63); 4].join("."), // 255 bytes
    ] {
        let err = run::<String>(&mut con, &["REPLICAOF", host, "6379"]).expect_err(host);
        assert!(err.contains("Invalid master host"), "{host:?}: {err}");
        let role: redis::Value = run(&mut con, &["ROLE"]).expect("ROLE");
        assert_eq!(role, role_before, "{host:?}: ROLE unchanged");
        let now = info(&mut con, "replication");
        assert_eq!(now, info_before, "{host:?}: INFO unchanged");
    }
    // Host names, IPv4 and IPv6 addresses (bracketed or not) are taken, and shown without
    // brackets. The port is closed: the link just retries.
    for (host, shown) in [
        ("localhost", "localhost"),
        ("replica-1.dc2.example.com", "replica-1.dc2.example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("fe80::1:2", "fe80::1:2"),
        (&"a".repeat(63), &"a".repeat(63)),
    ] {
        let ok: String = run(&mut con, &["REPLICAOF", host, "1"]).expect(host);
        assert_eq!(ok, "OK");
        assert_eq!(field(&mut con, "replication", "master_host"), shown);
        let _: String = run(&mut con, &["REPLICAOF", "NO", "ONE"]).expect("NO ONE");
    }
}

#[test]
fn a_replicaof_flag_or_file_value_that_is_not_a_host_stops_the_start() {
    for bad in ["evil\r\nrole:master:6379", "two words 6379", "a..b:1"] {
        let lines = Daemon::try_start_with(&["--replicaof", bad])
            .err()
            .unwrap_or_else(|| panic!("--replicaof {bad:?} was accepted"));
        let text = lines.join("\n");
        assert!(text.contains("invalid master host"), "{bad:?}: {text}");
    }
    let dir = temp_dir("hostile-config");
    let path = dir.join("ratelimitd.toml");
    std::fs::write(&path, "replicaof = \"evil\\r\\nrole:master:6379\"\n").expect("write");
    let path = path.to_string_lossy().into_owned();
    let lines = Daemon::try_start_with(&["--config", &path])
        .err()
        .expect("a config file naming a host with CR LF was accepted");
    // clap quotes the value as given, so the line ends at its CR: the refusal is what counts.
    assert!(lines.join("\n").contains("invalid value"), "{lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- The fake primary --------------------------------------------------------------------

/// Accept the replica's next link attempt (20 s at most).
fn accept(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the replica never connected");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// One RESP array of bulk strings, as the replica sends its handshake.
fn read_command(r: &mut BufReader<TcpStream>) -> Vec<String> {
    let mut line = String::new();
    r.read_line(&mut line).expect("read");
    let n: usize = line.trim().trim_start_matches('*').parse().expect("array");
    (0..n)
        .map(|_| {
            line.clear();
            r.read_line(&mut line).expect("read");
            let len: usize = line.trim().trim_start_matches('$').parse().expect("bulk");
            let mut b = vec![0u8; len + 2];
            r.read_exact(&mut b).expect("read");
            String::from_utf8_lossy(&b[..len]).into_owned()
        })
        .collect()
}

/// Answer the replica's handshake up to `+FULLRESYNC`; the caller sends `$<len>` and the body.
fn handshake(sock: &TcpStream) -> TcpStream {
    let mut r = BufReader::new(sock.try_clone().expect("clone"));
    let mut w = sock.try_clone().expect("clone");
    for (want, answer) in [
        ("PING", "+PONG\r\n"),
        ("REPLCONF", "+OK\r\n"),
        ("REPLCONF", "+OK\r\n"),
    ] {
        let cmd = read_command(&mut r);
        assert_eq!(cmd[0], want, "{cmd:?}");
        w.write_all(answer.as_bytes()).expect("write");
    }
    let cmd = read_command(&mut r);
    assert_eq!(cmd[0], "PSYNC", "{cmd:?}");
    w.write_all(format!("+FULLRESYNC {REPLID} 0\r\n").as_bytes())
        .expect("write");
    w
}

/// Serve one link attempt: handshake, then `payload` as the full sync.
fn full_sync(l: &TcpListener, payload: &[u8]) -> TcpStream {
    let sock = accept(l);
    let mut w = handshake(&sock);
    w.write_all(format!("${}\r\n", payload.len()).as_bytes())
        .expect("write");
    w.write_all(payload).expect("write");
    sock
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words.iter().map(|w| Bytes::from(w.to_string())).collect()
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// An engine at the real time, with DEFAULT RATE 10/1h and `alice` charged 3 on `/e`, plus
/// `items` in its key-value space: what a real primary's snapshot would hold.
fn primary_state(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let e = Engine::new(FakeClock::new(wall_ns()), EngineConfig::default());
    let w = Window::new(10, 3_600_000, 0).expect("window");
    e.set_limit(Scope::Default, Limit::new(vec![w]).expect("limit"));
    e.check(b"alice", b"/e", 3);
    for (i, (key, value)) in items.iter().enumerate() {
        e.apply_change(&Change::Item {
            key: key.as_bytes().to_vec(),
            item: Some(Item {
                value: value.clone(),
                flags: 0,
                cas: i as u64 + 1,
                expires_at: None,
            }),
        });
    }
    e.snapshot_state()
}

fn point_at(d: &Daemon, l: &TcpListener) {
    let port = l.local_addr().expect("addr").port().to_string();
    let mut con = d.client();
    let ok: String = run(&mut con, &["REPLICAOF", "127.0.0.1", &port]).expect("REPLICAOF");
    assert_eq!(ok, "OK");
}

/// True once the peer closed `sock` (within 10 s); false if it is still open then.
fn closed_by_peer(sock: &mut TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // REPLCONF ACKs, if any
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true, // reset
        }
    }
    false
}

// --- 4. The payload's size ---------------------------------------------------------------

/// A declared length over the bound is refused as soon as the header arrives: the replica
/// closes the link without waiting for (or buffering) a byte of the body, and retries.
#[test]
fn a_full_sync_over_the_bound_is_refused_before_its_body() {
    for (flags, declared) in [
        (&[][..], 2u64 << 30),                  // default --repl-max-sync-size 1gb
        (&["--maxmemory", "8mb"][..], 9 << 20), // the memory bound
        (&["--repl-max-sync-size", "1mb"][..], 2 << 20), // the flag, memory unbounded
    ] {
        let d = Daemon::start_with(flags);
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        point_at(&d, &l);
        let mut sock = accept(&l);
        let mut w = handshake(&sock);
        w.write_all(format!("${declared}\r\n").as_bytes())
            .expect("write");
        assert!(
            closed_by_peer(&mut sock),
            "{flags:?}: a payload of {declared} bytes was waited for"
        );
        let log = d.log_until("larger than", 5).join("\n");
        assert!(log.contains("larger than"), "{flags:?}: {log}");
        // The link retries (and is refused again).
        let again = accept(&l);
        drop(again);
        let mut con = d.client();
        assert_eq!(field(&mut con, "replication", "master_link_status"), "down");
    }
}

// --- 3. A full sync is staged ------------------------------------------------------------

/// A snapshot with a valid checksum whose first entry names an unknown table.
fn with_unknown_table(snap: &[u8]) -> Vec<u8> {
    let mut s = snap.to_vec();
    let shapes = u32::from_le_bytes(s[20..24].try_into().expect("4 bytes")) as usize;
    let first_entry = 24 + shapes * 18 + 8;
    assert!(s.len() > first_entry + 8, "the snapshot has an entry");
    s[first_entry] = 9;
    let body = s.len() - 8;
    let sum = xxhash_rust::xxh3::xxh3_64(&s[..body]);
    s[body..].copy_from_slice(&sum.to_le_bytes());
    s
}

#[test]
fn a_payload_with_a_bad_part_changes_nothing_and_the_link_retries() {
    let d = Daemon::start();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    point_at(&d, &l);
    let mut con = d.client();

    // A good full sync first: its limits and state are what must survive.
    let state = primary_state(&[("kept", b"v".to_vec())]);
    let good = FullSync {
        limits: vec![
            args(&["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1h"]),
            args(&["RL.TIER", "SET", "acme", "gold"]),
        ],
        state: state.clone(),
    };
    let first = full_sync(&l, &good.encode());
    eventually("the good sync is applied", 20, || {
        field(&mut con, "replication", "master_link_status") == "up" && limits(&mut con).len() == 1
    });
    let listed = limits(&mut con);
    let peeked: Vec<i64> = run(&mut con, &["RL.PEEK", "alice", "/e"]).expect("PEEK");
    assert_eq!(
        peeked[2], 7,
        "alice's state came with the snapshot: {peeked:?}"
    );
    drop(first);

    let other_limits = vec![
        args(&["RL.LIMIT", "SET", "DEFAULT", "RATE", "99/1m"]),
        args(&["RL.LIMIT", "SET", "ENDPOINT", "/x", "RATE", "1/1s"]),
        args(&["RL.TIER", "SET", "initech", "silver"]),
    ];
    let mut flipped = state.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x41;
    let bad_payloads = [
        (
            "a snapshot that fails its checksum",
            FullSync {
                limits: other_limits.clone(),
                state: flipped,
            },
        ),
        (
            "a snapshot with an unknown table",
            FullSync {
                limits: other_limits.clone(),
                state: with_unknown_table(&state),
            },
        ),
        (
            "a limit the live command refuses",
            FullSync {
                limits: [
                    other_limits.clone(),
                    vec![args(&["RL.LIMIT", "SET", "CLIENT", "z", "RATE", "0/1s"])],
                ]
                .concat(),
                state: primary_state(&[]),
            },
        ),
        (
            "a record that is not a SET",
            FullSync {
                limits: [
                    other_limits.clone(),
                    vec![args(&["RL.LIMIT", "DEL", "DEFAULT"])],
                ]
                .concat(),
                state: primary_state(&[]),
            },
        ),
    ];
    for (what, payload) in bad_payloads {
        let sock = full_sync(&l, &payload.encode());
        // The next attempt comes only after this payload was refused (or taken).
        let next = accept(&l);
        drop((sock, next));
        assert_eq!(limits(&mut con), listed, "{what}: limits unchanged");
        let tiers: Vec<Option<String>> = ["acme", "initech"]
            .iter()
            .map(|c| run(&mut con, &["RL.TIER", "GET", c]).expect("TIER GET"))
            .collect();
        assert_eq!(
            tiers,
            [Some("gold".to_string()), None],
            "{what}: tiers unchanged"
        );
        let now: Vec<i64> = run(&mut con, &["RL.PEEK", "alice", "/e"]).expect("PEEK");
        assert_eq!(now[2], 7, "{what}: rate state unchanged: {now:?}");
        let kept: Option<String> = run(&mut con, &["GET", "kept"]).expect("GET");
        assert_eq!(kept.as_deref(), Some("v"), "{what}: items unchanged");
    }
    let log = d.log_until("bad full-sync payload", 5).join("\n");
    assert!(log.contains("bad full-sync payload"), "{log}");
}

// --- 5. Values over --max-value-size -----------------------------------------------------

#[test]
fn values_over_max_value_size_are_not_stored_and_the_link_stays() {
    let d = Daemon::start_with(&["--max-value-size", "16"]);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    point_at(&d, &l);
    let mut con = d.client();
    let big = vec![b'x'; 100];
    let payload = FullSync {
        limits: vec![args(&["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1h"])],
        state: primary_state(&[
            ("small", b"fits".to_vec()),
            ("big-in-snapshot", big.clone()),
        ]),
    };
    let mut sock = full_sync(&l, &payload.encode());
    eventually("the sync is applied", 20, || {
        field(&mut con, "replication", "master_link_status") == "up"
    });
    let small: Option<String> = run(&mut con, &["GET", "small"]).expect("GET");
    assert_eq!(small.as_deref(), Some("fits"));
    let over: Option<String> = run(&mut con, &["GET", "big-in-snapshot"]).expect("GET");
    assert_eq!(
        over, None,
        "a snapshot item over max-value-size is not stored"
    );

    // In the stream: the big item is skipped, the records around it are applied.
    let item = |key: &str, value: &[u8], cas: u64| {
        record::to_bytes(&Record::Change(Change::Item {
            key: key.as_bytes().to_vec(),
            item: Some(Item {
                value: value.to_vec(),
                flags: 0,
                cas,
                expires_at: None,
            }),
        }))
    };
    let mut stream = item("before", b"1", 10);
    stream.extend(item("big-in-stream", &big, 11));
    stream.extend(item("after", b"2", 12));
    sock.write_all(&stream).expect("write");
    eventually("the record after the big one is applied", 20, || {
        run::<Option<String>>(&mut con, &["GET", "after"]).expect("GET") == Some("2".into())
    });
    let before: Option<String> = run(&mut con, &["GET", "before"]).expect("GET");
    assert_eq!(before.as_deref(), Some("1"));
    let over: Option<String> = run(&mut con, &["GET", "big-in-stream"]).expect("GET");
    assert_eq!(
        over, None,
        "a streamed item over max-value-size is not stored"
    );
    assert_eq!(field(&mut con, "replication", "master_link_status"), "up");
    // The offset counts the skipped record's bytes too: the stream stays aligned.
    let offset: usize = field(&mut con, "replication", "slave_repl_offset")
        .parse()
        .expect("offset");
    assert_eq!(offset, stream.len());

    let log = d.log_until("big-in-stream", 5).join("\n");
    assert!(log.contains("big-in-snapshot"), "{log}");
    assert!(log.contains("big-in-stream"), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("big-in"))
            .all(|l| l.contains("ERROR")),
        "{log}"
    );
}
