//! Connection and server commands over the real binary: what client libraries and redis-cli
//! send at connect, pipelining, RESP3, AUTH, INFO, CLIENT, COMMAND, CONFIG and shutdown.

mod common;
use common::{resp, run, Daemon};
use std::collections::HashMap;

#[test]
fn ping_echo_select_time_quit() {
    let d = Daemon::start();
    let mut con = d.client();
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    assert_eq!(run::<String>(&mut con, &["PING", "hi"]).unwrap(), "hi");
    assert_eq!(run::<String>(&mut con, &["ECHO", "x y"]).unwrap(), "x y");
    assert_eq!(run::<String>(&mut con, &["SELECT", "0"]).unwrap(), "OK");
    assert!(run::<String>(&mut con, &["SELECT", "1"])
        .unwrap_err()
        .contains("DB index is out of range"));
    let t: Vec<u64> = run(&mut con, &["TIME"]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(t[0].abs_diff(now) <= 2 && t[1] < 1_000_000, "{t:?}");
    let mut raw = d.raw();
    raw.send(&resp(&[b"QUIT"]));
    raw.expect(b"+OK\r\n");
    assert!(raw.closed());
}

#[test]
fn pipelining_answers_every_request_in_order() {
    let d = Daemon::start();
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1m"]).unwrap();
    let mut pipe = redis::pipe();
    for _ in 0..12 {
        pipe.cmd("RL.CHECK").arg("p").arg("/e");
    }
    let replies: Vec<Vec<i64>> = pipe.query(&mut con).unwrap();
    let allowed: Vec<i64> = replies.iter().map(|r| r[0]).collect();
    assert_eq!(allowed, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    let remaining: Vec<i64> = replies.iter().take(10).map(|r| r[2]).collect();
    assert_eq!(remaining, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);

    // Raw: 100 PINGs in one write come back as 100 PONGs.
    let mut raw = d.raw();
    let batch: Vec<u8> = (0..100).flat_map(|_| resp(&[b"PING"])).collect();
    raw.send(&batch);
    raw.expect(&b"+PONG\r\n".repeat(100));
}

/// `total_commands_processed` from INFO.
fn commands_processed(con: &mut redis::Connection) -> u64 {
    let info: String = run(con, &["INFO", "stats"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has total_commands_processed")
}

#[test]
fn a_client_that_never_stops_pipelining_does_not_hold_the_worker() {
    // One worker, shared by a connection that always has requests waiting and a client asking
    // INFO over and over. The number of flood requests run between two consecutive INFOs is
    // how long the flood held the worker while the INFO waited. Without the connection's yield
    // every 512 requests, this debug build ran 2,165 between every two INFOs; with it, 199–953.
    let d = Daemon::start_with(&["--threads", "1"]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "100/1h"]).unwrap();
    let gaps = common::flood_and_watch(
        d.port,
        |i| resp(&[b"RL.CHECK", format!("flood:{i}").as_bytes(), b"/e"]),
        b"*1\r\n$4\r\nQUIT\r\n",
        300_000,
        || commands_processed(&mut con),
    );
    // The least of 20 gaps: a test thread descheduled for a few ms on a busy machine widens
    // one gap, not all of them.
    let least = *gaps.iter().min().unwrap();
    assert!(least < 1_000, "flood requests between two INFOs: {gaps:?}");
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
}

#[test]
fn a_pipeline_of_mixed_checks_charges_each_its_own_key() {
    // Pipelined RL.CHECKs and CL.THROTTLEs are decoded ahead, their keys prefetched and the
    // fingerprints handed to the checks (src/connection.rs): every reply must still be that of
    // its own key. 48 requests cross several look-ahead runs; a PING breaks one.
    let d = Daemon::start();
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "2/1m"]).unwrap();
    let mut pipe = redis::pipe();
    let mut want: Vec<[i64; 3]> = Vec::new();
    let mut rl_used = [0i64; 5];
    let mut cl_used = [0i64; 3];
    for i in 0..48 {
        if i == 20 {
            pipe.cmd("PING").ignore();
        }
        if i % 2 == 0 {
            let k = (i / 2) % 5;
            pipe.cmd("RL.CHECK").arg(format!("rl{k}")).arg("/e");
            let allowed = rl_used[k] < 2;
            rl_used[k] += i64::from(allowed);
            want.push([i64::from(allowed), 2, 2 - rl_used[k]]);
        } else {
            // Capacity max_burst + 1 = 2, one token per minute: no refill during the test.
            let k = (i / 2) % 3;
            pipe.cmd("CL.THROTTLE")
                .arg(format!("cl{k}"))
                .arg(1)
                .arg(1)
                .arg(60);
            let limited = cl_used[k] >= 2;
            cl_used[k] += i64::from(!limited);
            want.push([i64::from(limited), 2, 2 - cl_used[k]]);
        }
    }
    let replies: Vec<Vec<i64>> = pipe.query(&mut con).unwrap();
    let got: Vec<[i64; 3]> = replies.iter().map(|r| [r[0], r[1], r[2]]).collect();
    assert_eq!(got, want);
}

/// Read HELLO's remaining lines up to its last value, the empty `modules` array.
fn skip_to_modules(raw: &mut common::Raw) {
    for _ in 0..40 {
        if raw.line() == "*0" {
            return;
        }
    }
    panic!("HELLO reply did not end with modules *0");
}

#[test]
fn resp3_after_hello_3() {
    let d = Daemon::start();
    let mut raw = d.raw();
    raw.send(&resp(&[b"HELLO", b"3"]));
    let first = raw.line();
    assert_eq!(first, "%7", "HELLO 3 answers a RESP3 map");
    skip_to_modules(&mut raw);
    raw.send(&resp(&[b"RL.TIER", b"GET", b"nobody"]));
    raw.expect(b"_\r\n");
    raw.send(&resp(&[b"RL.EXPLAIN", b"a", b"/b"]));
    raw.expect(b"%3\r\n$5\r\nscope\r\n_\r\n$4\r\ntier\r\n_\r\n$7\r\nwindows\r\n*0\r\n");
    raw.send(&resp(&[b"HELLO", b"2"]));
    assert_eq!(raw.line(), "*14", "RESP2 gets the map as a flat array");
    skip_to_modules(&mut raw);
    raw.send(&resp(&[b"RL.TIER", b"GET", b"nobody"]));
    raw.expect(b"$-1\r\n");
    raw.send(&resp(&[b"HELLO", b"4"]));
    raw.expect(b"-NOPROTO unsupported protocol version\r\n");

    // And through the redis crate with RESP3 negotiated.
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", d.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let r: Vec<i64> = run(&mut con, &["RL.CHECK", "a", "/b"]).unwrap();
    assert_eq!(r, vec![1, -1, -1, -1, -1]);
    let e: HashMap<String, redis::Value> = run(&mut con, &["RL.EXPLAIN", "a", "/b"]).unwrap();
    assert_eq!(e.get("scope"), Some(&redis::Value::Nil));
}

#[test]
fn auth_is_required_when_a_password_is_set() {
    let d = Daemon::start_with(&["--requirepass", "s3cret"]);
    let mut raw = d.raw();
    raw.send(&resp(&[b"PING"]));
    raw.expect(b"-NOAUTH Authentication required.\r\n");
    raw.send(&resp(&[b"RL.CHECK", b"a", b"b"]));
    raw.expect(b"-NOAUTH Authentication required.\r\n");
    raw.send(&resp(&[b"AUTH", b"wrong"]));
    raw.expect(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    raw.send(&resp(&[b"AUTH", b"someone", b"s3cret"]));
    raw.expect(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    raw.send(&resp(&[b"AUTH", b"s3cret"]));
    raw.expect(b"+OK\r\n");
    raw.send(&resp(&[b"PING"]));
    raw.expect(b"+PONG\r\n");

    // The redis crate authenticates from the URL.
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", d.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    let bad = redis::Client::open(format!("redis://:nope@127.0.0.1:{}/", d.port)).unwrap();
    assert!(bad.get_connection().is_err());

    // HELLO with AUTH authenticates and switches protocol at once.
    let mut raw = d.raw();
    raw.send(&resp(&[
        b"HELLO", b"3", b"AUTH", b"default", b"s3cret", b"SETNAME", b"h",
    ]));
    assert_eq!(raw.line(), "%7");
    let d2 = Daemon::start();
    let mut con = d2.client();
    let err = run::<String>(&mut con, &["AUTH", "x"]).unwrap_err();
    assert!(err.contains("without any password configured"), "{err}");
    // Without a password the `default` user takes any (Redis 6+: it is `nopass`); clients that
    // hold a password send it that way whatever the server (go-redis v9, redis-py with a
    // username), and must connect. Another user does not exist.
    assert_eq!(
        run::<String>(&mut con, &["AUTH", "default", "pw"]).unwrap(),
        "OK"
    );
    let err = run::<String>(&mut con, &["AUTH", "nouser", "pw"]).unwrap_err();
    assert!(err.contains("WRONGPASS"), "{err}");
    let mut raw = d2.raw();
    raw.send(&resp(&[
        b"HELLO", b"3", b"AUTH", b"default", b"pw", b"SETNAME", b"n1",
    ]));
    assert_eq!(raw.line(), "%7");
    let client = redis::Client::open(format!("redis://default:pw@127.0.0.1:{}/", d2.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    assert_eq!(run::<String>(&mut con, &["PING"]).unwrap(), "PONG");
}

#[test]
fn client_commands() {
    let d = Daemon::start();
    let mut con = d.client();
    assert_eq!(
        run::<Option<String>>(&mut con, &["CLIENT", "GETNAME"]).unwrap(),
        None
    );
    assert_eq!(
        run::<String>(&mut con, &["CLIENT", "SETNAME", "worker-1"]).unwrap(),
        "OK"
    );
    assert_eq!(
        run::<String>(&mut con, &["CLIENT", "GETNAME"]).unwrap(),
        "worker-1"
    );
    assert!(run::<String>(&mut con, &["CLIENT", "SETNAME", "has space"])
        .unwrap_err()
        .contains("cannot contain spaces"));
    let id: i64 = run(&mut con, &["CLIENT", "ID"]).unwrap();
    assert!(id > 0);
    let _other = d.client();
    let list: String = run(&mut con, &["CLIENT", "LIST"]).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains(&format!("id={id} ")) && list.contains("name=worker-1"),
        "{list}"
    );
    let info: String = run(&mut con, &["CLIENT", "INFO"]).unwrap();
    assert!(info.starts_with(&format!("id={id} ")), "{info}");
    assert_eq!(
        run::<String>(&mut con, &["CLIENT", "SETINFO", "LIB-NAME", "x"]).unwrap(),
        "OK"
    );
    assert!(run::<String>(&mut con, &["CLIENT", "FLY"])
        .unwrap_err()
        .contains("unknown subcommand 'FLY'"));
}

#[test]
fn every_command_that_says_try_help_answers_help() {
    // "unknown subcommand 'x'. Try CMD HELP." must not point at a HELP that is itself unknown.
    let d = Daemon::start();
    let mut con = d.client();
    for (cmd, names) in [
        ("CLIENT", &["SETNAME", "LIST"][..]),
        ("CONFIG", &["GET", "SET"][..]),
        ("COMMAND", &["COUNT", "DOCS"][..]),
        ("PUBSUB", &["CHANNELS", "NUMPAT"][..]),
        ("RL.LIMIT", &["SET", "LIST"][..]),
        ("RL.TIER", &["SET", "DEL"][..]),
    ] {
        let err = run::<String>(&mut con, &[cmd, "FROB"]).unwrap_err();
        assert!(err.contains(&format!("Try {cmd} HELP")), "{err}");
        let help: Vec<String> = run(&mut con, &[cmd, "HELP"]).unwrap();
        assert!(
            help[0].starts_with(&format!("{cmd} <subcommand>")),
            "{help:?}"
        );
        for name in names {
            assert!(
                help.iter().any(|l| l.starts_with(name)),
                "{cmd} HELP lacks {name}: {help:?}"
            );
        }
        let err = run::<String>(&mut con, &[cmd, "HELP", "extra"]).unwrap_err();
        assert!(err.contains("wrong number of arguments"), "{cmd}: {err}");
    }
}

#[test]
fn info_dbsize_flushall_config_command() {
    let d = Daemon::start();
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1m"]).unwrap();
    run::<Vec<i64>>(&mut con, &["RL.CHECK", "a", "/x"]).unwrap();
    run::<Vec<i64>>(&mut con, &["RL.CHECK", "b", "/x"]).unwrap();
    run::<Vec<i64>>(&mut con, &["RL.CHECK", "b", "/x"]).unwrap();
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]).unwrap(), 2);
    let info: String = run(&mut con, &["INFO"]).unwrap();
    for field in [
        "# Server",
        "redis_version:",
        "run_id:",
        "# Clients",
        "connected_clients:1",
        "# Memory",
        "used_memory:",
        "# Stats",
        "rl_checks_allowed:3",
        "# Keyspace",
        "db0:keys=2",
    ] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap();
    assert_eq!(run_id.len(), 40);
    assert!(run_id.chars().all(|c| c.is_ascii_hexdigit()));
    let section: String = run(&mut con, &["INFO", "keyspace"]).unwrap();
    assert!(
        section.starts_with("# Keyspace") && !section.contains("# Server"),
        "{section}"
    );
    assert_eq!(run::<String>(&mut con, &["FLUSHALL"]).unwrap(), "OK");
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]).unwrap(), 0);
    assert!(
        run::<Vec<String>>(&mut con, &["RL.LIMIT", "GET", "DEFAULT"]).is_ok(),
        "limits survive FLUSHALL"
    );

    let cfg: HashMap<String, String> = run(&mut con, &["CONFIG", "GET", "save"]).unwrap();
    // Snapshots every --save-interval (60 s by default) when anything changed: "60 1".
    assert_eq!(cfg.get("save").map(String::as_str), Some("60 1"));
    let cfg: HashMap<String, String> =
        run(&mut con, &["CONFIG", "GET", "appendonly", "max*"]).unwrap();
    assert_eq!(cfg.get("appendonly").map(String::as_str), Some("no"));
    assert_eq!(cfg.get("maxclients").map(String::as_str), Some("10000"));
    assert!(run::<String>(&mut con, &["CONFIG", "SET", "x", "y"]).is_err());

    let count: i64 = run(&mut con, &["COMMAND", "COUNT"]).unwrap();
    assert!(count >= 20);
    let info: Vec<redis::Value> = run(&mut con, &["COMMAND", "INFO", "rl.check", "nope"]).unwrap();
    assert_eq!(info.len(), 2);
    assert_eq!(info[1], redis::Value::Nil);
    let docs: HashMap<String, HashMap<String, redis::Value>> =
        run(&mut con, &["COMMAND", "DOCS", "rl.check"]).unwrap();
    assert!(docs.contains_key("rl.check"));
}

#[test]
fn sigterm_finishes_in_flight_replies_and_exits_zero() {
    let mut d = Daemon::start();
    let mut raw = d.raw();
    raw.send(&resp(&[b"PING"]));
    raw.expect(b"+PONG\r\n");
    d.signal("TERM");
    let status = d.wait_exit(10);
    assert_eq!(status.code(), Some(0), "clean exit");
    assert!(raw.closed(), "connections are closed at shutdown");

    let mut d = Daemon::start();
    d.signal("INT");
    assert_eq!(d.wait_exit(10).code(), Some(0));
}

#[test]
fn subcommands_are_rows_of_their_own() {
    let d = Daemon::start();
    let mut con = d.client();
    // A subcommand's arity names the subcommand, as Redis 7 does.
    let err = run::<String>(&mut con, &["RL.TIER", "SET", "alice"]).unwrap_err();
    assert!(
        err.contains("wrong number of arguments for 'rl.tier|set' command"),
        "{err}"
    );
    // COMMAND INFO lists a container's subcommands with their own arity and flags.
    let info: redis::Value = run(&mut con, &["COMMAND", "INFO", "rl.limit"]).unwrap();
    let text = format!("{info:?}");
    for sub in [
        "rl.limit|set",
        "rl.limit|get",
        "rl.limit|del",
        "rl.limit|list",
    ] {
        assert!(text.contains(sub), "{sub} in {text}");
    }
    // Inside MULTI a subcommand's arity error is a queuing-time error: EXEC aborts.
    let mut raw = d.raw();
    let mut pipeline = Vec::new();
    for cmd in [
        &[&b"MULTI"[..]][..],
        &[b"RL.TIER", b"SET", b"alice"],
        &[b"PING"],
        &[b"EXEC"],
    ] {
        pipeline.extend(common::resp(cmd));
    }
    raw.send(&pipeline);
    raw.expect(
        b"+OK\r\n-ERR wrong number of arguments for 'rl.tier|set' command\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
}
