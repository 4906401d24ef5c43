//! The key-value commands and MULTI/EXEC over RESP, against the real binary with the `redis`
//! crate: the patterns rate-limit libraries use (INCR + EXPIRE, a MULTI/EXEC pipeline as
//! django-ratelimit and rack-attack send it, SET NX EX, WATCH retries), Redis's error texts,
//! and bad input (arity, non-numbers, overflow, oversized values).

mod common;

use common::eventually;
use common::inproc::InProcess;
use common::{resp, run, Daemon};
use redis::Value;

#[test]
fn incr_then_expire_is_the_classic_fixed_window() {
    let d = Daemon::start();
    let mut c = d.client();
    assert_eq!(run::<i64>(&mut c, &["INCR", "rl:ip:1"]), Ok(1));
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "rl:ip:1", "60", "NX"]),
        Ok(1)
    );
    assert_eq!(run::<i64>(&mut c, &["INCR", "rl:ip:1"]), Ok(2));
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "rl:ip:1", "60", "NX"]),
        Ok(0),
        "NX keeps the window"
    );
    let ttl = run::<i64>(&mut c, &["TTL", "rl:ip:1"]).unwrap();
    assert!((59..=60).contains(&ttl), "ttl {ttl}");
    let pttl = run::<i64>(&mut c, &["PTTL", "rl:ip:1"]).unwrap();
    assert!((58_000..=60_000).contains(&pttl), "pttl {pttl}");
    assert_eq!(run::<String>(&mut c, &["GET", "rl:ip:1"]), Ok("2".into()));
    assert_eq!(run::<i64>(&mut c, &["INCRBY", "rl:ip:1", "10"]), Ok(12));
    assert_eq!(run::<i64>(&mut c, &["DECRBY", "rl:ip:1", "3"]), Ok(9));
    assert_eq!(run::<i64>(&mut c, &["DECR", "rl:ip:1"]), Ok(8));
    let ttl = run::<i64>(&mut c, &["TTL", "rl:ip:1"]).unwrap();
    assert!(ttl > 0, "INCR keeps the TTL");
    assert_eq!(run::<i64>(&mut c, &["PERSIST", "rl:ip:1"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["TTL", "rl:ip:1"]), Ok(-1));
    assert_eq!(run::<i64>(&mut c, &["PERSIST", "rl:ip:1"]), Ok(0));
    assert_eq!(run::<i64>(&mut c, &["TTL", "missing"]), Ok(-2));
    assert_eq!(run::<i64>(&mut c, &["PTTL", "missing"]), Ok(-2));
    assert_eq!(
        run::<String>(&mut c, &["TYPE", "rl:ip:1"]),
        Ok("string".into())
    );
    assert_eq!(
        run::<String>(&mut c, &["TYPE", "missing"]),
        Ok("none".into())
    );
}

#[test]
fn expiry_removes_keys() {
    let d = InProcess::start(&[]);
    let mut c = d.client();
    assert_eq!(
        run::<String>(&mut c, &["SET", "a", "1", "PX", "50"]),
        Ok("OK".into())
    );
    assert_eq!(
        run::<String>(&mut c, &["PSETEX", "b", "50", "x"]),
        Ok("OK".into())
    );
    assert_eq!(run::<i64>(&mut c, &["INCR", "c"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["PEXPIRE", "c", "50"]), Ok(1));
    d.advance(std::time::Duration::from_millis(150));
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "a", "b", "c"]), Ok(0));
    assert_eq!(run::<Option<String>>(&mut c, &["GET", "a"]), Ok(None));
    // A deadline not in the future deletes at once.
    assert_eq!(run::<i64>(&mut c, &["INCR", "d"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXPIRE", "d", "-1"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "d"]), Ok(0));
    assert_eq!(run::<i64>(&mut c, &["INCR", "e"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXPIREAT", "e", "1"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "e"]), Ok(0));
    assert_eq!(
        run::<String>(&mut c, &["SET", "f", "v", "PXAT", "1"]),
        Ok("OK".into())
    );
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "f"]), Ok(0));
    // Expired keys are gone from DBSIZE too, eventually (the wheel drops them).
    eventually("expired items leave DBSIZE", 5, || {
        run::<i64>(&mut c, &["DBSIZE"]).unwrap() == 0
    });
}

#[test]
fn set_options_follow_redis() {
    let d = Daemon::start();
    let mut c = d.client();
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "k", "1", "NX", "EX", "60"]),
        Ok(Some("OK".into()))
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "k", "2", "NX", "EX", "60"]),
        Ok(None)
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "k", "3", "XX", "GET"]),
        Ok(Some("1".into()))
    );
    assert_eq!(
        run::<i64>(&mut c, &["TTL", "k"]),
        Ok(-1),
        "SET without KEEPTTL clears the TTL"
    );
    assert_eq!(
        run::<String>(&mut c, &["SET", "k", "4", "EX", "100"]),
        Ok("OK".into())
    );
    assert_eq!(
        run::<String>(&mut c, &["SET", "k", "5", "KEEPTTL"]),
        Ok("OK".into())
    );
    assert!(run::<i64>(&mut c, &["TTL", "k"]).unwrap() > 90);
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "new", "v", "XX"]),
        Ok(None)
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "new", "v", "GET"]),
        Ok(None)
    );
    assert_eq!(run::<i64>(&mut c, &["SETNX", "new", "w"]), Ok(0));
    assert_eq!(run::<i64>(&mut c, &["SETNX", "new2", "w"]), Ok(1));
    assert_eq!(
        run::<String>(&mut c, &["SETEX", "sx", "100", "v"]),
        Ok("OK".into())
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["GETDEL", "sx"]),
        Ok(Some("v".into()))
    );
    assert_eq!(run::<Option<String>>(&mut c, &["GETDEL", "sx"]), Ok(None));
    assert_eq!(
        run::<Vec<Option<String>>>(&mut c, &["MGET", "k", "nope", "new"]),
        Ok(vec![Some("5".into()), None, Some("v".into())])
    );
    assert_eq!(run::<i64>(&mut c, &["DEL", "k", "nope", "new"]), Ok(2));
    assert_eq!(run::<i64>(&mut c, &["UNLINK", "new2"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "k", "k", "new2"]), Ok(0));

    let syntax = Err("ERR syntax error".to_string());
    for bad in [
        &["SET", "k", "v", "NX", "XX"][..],
        &["SET", "k", "v", "EX", "10", "PX", "10"],
        &["SET", "k", "v", "EX", "10", "KEEPTTL"],
        &["SET", "k", "v", "EX"],
        &["SET", "k", "v", "BOGUS"],
    ] {
        assert_eq!(run::<String>(&mut c, bad).map_err(strip), syntax, "{bad:?}");
    }
    assert_eq!(
        run::<String>(&mut c, &["SET", "k", "v", "EX", "0"]).map_err(strip),
        Err("ERR invalid expire time in 'set' command".into())
    );
    assert_eq!(
        run::<String>(&mut c, &["SET", "k", "v", "EX", "abc"]).map_err(strip),
        Err("ERR value is not an integer or out of range".into())
    );
    assert_eq!(
        run::<String>(&mut c, &["SETEX", "k", "-5", "v"]).map_err(strip),
        Err("ERR invalid expire time in 'setex' command".into())
    );
}

#[test]
fn counter_errors_use_redis_texts() {
    let d = Daemon::start();
    let mut r = d.raw();
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b"SET", b"s", b"abc"], b"+OK\r\n"),
        (
            &[b"INCR", b"s"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (
            &[b"INCRBY", b"n", b"x"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (&[b"SET", b"max", b"9223372036854775807"], b"+OK\r\n"),
        (
            &[b"INCR", b"max"],
            b"-ERR increment or decrement would overflow\r\n",
        ),
        (
            &[b"DECRBY", b"n", b"-9223372036854775808"],
            b"-ERR decrement would overflow\r\n",
        ),
        (
            &[b"INCRBY", b"n", b"99999999999999999999"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (
            &[b"INCR"],
            b"-ERR wrong number of arguments for 'incr' command\r\n",
        ),
        (
            &[b"GET", b"a", b"b"],
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &[b"EXPIRE", b"n", b"10", b"NX", b"XX"],
            b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
        ),
        (
            &[b"EXPIRE", b"n", b"10", b"GT", b"LT"],
            b"-ERR GT and LT options at the same time are not compatible\r\n",
        ),
        (
            &[b"EXPIRE", b"n", b"10", b"FOO"],
            b"-ERR Unsupported option FOO\r\n",
        ),
        (
            &[b"EXPIRE", b"n", b"9223372036854775807"],
            b"-ERR invalid expire time in 'expire' command\r\n",
        ),
        (&[b"EXPIRE", b"missing", b"10"], b":0\r\n"),
        (&[b"TYPE", b"s"], b"+string\r\n"),
    ];
    for (args, want) in cases {
        r.send(&resp(args));
        r.expect(want);
    }
    // Values are capped by --max-value-size (default 1024).
    r.send(&resp(&[b"SET", b"big", &[b'x'; 1025]]));
    r.expect(b"-ERR value is larger than max-value-size (1024 bytes)\r\n");
    r.send(&resp(&[b"SET", b"ok", &[b'x'; 1024]]));
    r.expect(b"+OK\r\n");
}

#[test]
fn expire_options_nx_xx_gt_lt() {
    let d = Daemon::start();
    let mut c = d.client();
    run::<i64>(&mut c, &["INCR", "k"]).unwrap();
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "100", "XX"]),
        Ok(0),
        "no TTL yet"
    );
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "100", "GT"]),
        Ok(0),
        "no TTL = infinite"
    );
    assert_eq!(run::<i64>(&mut c, &["EXPIRE", "k", "100", "LT"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXPIRE", "k", "200", "LT"]), Ok(0));
    assert_eq!(run::<i64>(&mut c, &["EXPIRE", "k", "200", "GT"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXPIRE", "k", "50", "XX"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["EXPIRE", "k", "500", "NX"]), Ok(0));
    let t = run::<i64>(&mut c, &["TTL", "k"]).unwrap();
    assert!((49..=50).contains(&t), "{t}");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1000;
    assert_eq!(
        run::<i64>(&mut c, &["EXPIREAT", "k", &at.to_string()]),
        Ok(1)
    );
    let t = run::<i64>(&mut c, &["TTL", "k"]).unwrap();
    assert!((998..=1000).contains(&t), "{t}");
    assert_eq!(
        run::<i64>(&mut c, &["PEXPIREAT", "k", &(at * 1000 + 5000).to_string()]),
        Ok(1)
    );
    let t = run::<i64>(&mut c, &["TTL", "k"]).unwrap();
    assert!((1003..=1005).contains(&t), "{t}");
}

#[test]
fn multi_exec_pipeline_as_rate_limit_libraries_send_it() {
    let d = Daemon::start();
    let mut c = d.client();
    // django-ratelimit / rack-attack: a transactional pipeline of INCR + EXPIRE.
    for n in 1..=3 {
        let (count, set): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("rl:django")
            .cmd("EXPIRE")
            .arg("rl:django")
            .arg(60)
            .arg("NX")
            .query(&mut c)
            .unwrap();
        assert_eq!(count, n);
        assert_eq!(set, i64::from(n == 1));
    }
    // Exact bytes, with a non-kv command and a runtime error inside.
    let mut r = d.raw();
    r.send(b"*1\r\n$5\r\nMULTI\r\n");
    r.expect(b"+OK\r\n");
    for cmd in [
        &[&b"INCR"[..], b"m"][..],
        &[b"PING"],
        &[b"SET", b"s", b"x"],
        &[b"INCR", b"s"],
        &[b"GET", b"m"],
    ] {
        r.send(&resp(cmd));
        r.expect(b"+QUEUED\r\n");
    }
    r.send(&resp(&[b"EXEC"]));
    r.expect(
        b"*5\r\n:1\r\n+PONG\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$1\r\n1\r\n",
    );
}

#[test]
fn flushes_and_dbsize_queued_in_multi_keep_their_place() {
    // A test fixture's reset: MULTI, FLUSHDB, then seed. The flush must run where it was
    // queued, not after the key-value commands (which it then wiped), and DBSIZE must count
    // what the commands before it left.
    let d = Daemon::start();
    let mut c = d.client();
    let _: () = redis::cmd("SET").arg("old").arg("1").query(&mut c).unwrap();
    let (a, flushed, b, size, flushed2, after): (i64, String, i64, i64, String, String) =
        redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("c")
            .cmd("FLUSHDB")
            .cmd("INCR")
            .arg("c")
            .cmd("DBSIZE")
            .cmd("FLUSHALL")
            .cmd("SET")
            .arg("seed")
            .arg("1")
            .query(&mut c)
            .unwrap();
    assert_eq!((a, flushed.as_str(), b, size), (1, "OK", 1, 1));
    assert_eq!((flushed2.as_str(), after.as_str()), ("OK", "OK"));
    let (old, cnt, seed, n): (Option<String>, Option<String>, String, i64) = redis::pipe()
        .cmd("GET")
        .arg("old")
        .cmd("GET")
        .arg("c")
        .cmd("GET")
        .arg("seed")
        .cmd("DBSIZE")
        .query(&mut c)
        .unwrap();
    assert_eq!((old, cnt, seed.as_str(), n), (None, None, "1", 1));
    // WATCH is still checked before anything runs, the flush included.
    let mut other = d.client();
    let _: () = redis::cmd("WATCH").arg("seed").query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg("seed")
        .arg("2")
        .query(&mut other)
        .unwrap();
    let r: Option<(String, String)> = redis::pipe()
        .atomic()
        .cmd("FLUSHALL")
        .cmd("SET")
        .arg("x")
        .arg("1")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None, "aborted");
    let seed: String = redis::cmd("GET").arg("seed").query(&mut c).unwrap();
    assert_eq!(seed, "2", "the queued FLUSHALL did not run");
}

#[test]
fn multi_errors() {
    let d = Daemon::start();
    let mut r = d.raw();
    let steps: &[(&[&[u8]], &[u8])] = &[
        (&[b"EXEC"], b"-ERR EXEC without MULTI\r\n"),
        (&[b"DISCARD"], b"-ERR DISCARD without MULTI\r\n"),
        (&[b"MULTI"], b"+OK\r\n"),
        (&[b"MULTI"], b"-ERR MULTI calls can not be nested\r\n"),
        (
            &[b"WATCH", b"x"],
            b"-ERR WATCH inside MULTI is not allowed\r\n",
        ),
        (&[b"INCR", b"q"], b"+QUEUED\r\n"),
        (
            &[b"NOSUCH"],
            b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n",
        ),
        (
            &[b"EXEC"],
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        ),
        (&[b"GET", b"q"], b"$-1\r\n"),
        (&[b"MULTI"], b"+OK\r\n"),
        (
            &[b"INCR"],
            b"-ERR wrong number of arguments for 'incr' command\r\n",
        ),
        (
            &[b"EXEC"],
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        ),
        (&[b"MULTI"], b"+OK\r\n"),
        (&[b"INCR", b"q"], b"+QUEUED\r\n"),
        (&[b"DISCARD"], b"+OK\r\n"),
        (&[b"GET", b"q"], b"$-1\r\n"),
        (&[b"MULTI"], b"+OK\r\n"),
        (&[b"EXEC"], b"*0\r\n"),
        // EXEC with an argument: EXECABORT, and the transaction is gone (as Redis).
        (&[b"MULTI"], b"+OK\r\n"),
        (&[b"INCR", b"q"], b"+QUEUED\r\n"),
        (
            &[b"EXEC", b"x"],
            b"-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n",
        ),
        (&[b"EXEC"], b"-ERR EXEC without MULTI\r\n"),
        (&[b"GET", b"q"], b"$-1\r\n"),
    ];
    for (args, want) in steps {
        r.send(&resp(args));
        r.expect(want);
    }
}

#[test]
fn watch_conflict_between_two_connections() {
    let d = Daemon::start();
    let mut a = d.client();
    let mut b = d.client();
    run::<String>(&mut a, &["SET", "w", "1"]).unwrap();
    run::<String>(&mut a, &["WATCH", "w", "absent"]).unwrap();
    // Another client changes the key between WATCH and EXEC.
    run::<i64>(&mut b, &["INCR", "w"]).unwrap();
    let v: Value = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("w")
        .query(&mut a)
        .unwrap();
    assert_eq!(v, Value::Nil, "EXEC aborts with a null array");
    assert_eq!(run::<String>(&mut a, &["GET", "w"]), Ok("2".into()));

    // Without interference the retry commits; creating a watched absent key counts as a change.
    run::<String>(&mut a, &["WATCH", "w", "absent"]).unwrap();
    let (n,): (i64,) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("w")
        .query(&mut a)
        .unwrap();
    assert_eq!(n, 3);
    run::<String>(&mut a, &["WATCH", "absent"]).unwrap();
    run::<i64>(&mut b, &["INCR", "absent"]).unwrap();
    let v: Value = redis::pipe()
        .atomic()
        .cmd("GET")
        .arg("absent")
        .query(&mut a)
        .unwrap();
    assert_eq!(v, Value::Nil);
    // UNWATCH forgets.
    run::<String>(&mut a, &["WATCH", "w"]).unwrap();
    run::<i64>(&mut b, &["INCR", "w"]).unwrap();
    run::<String>(&mut a, &["UNWATCH"]).unwrap();
    let (n,): (i64,) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("w")
        .query(&mut a)
        .unwrap();
    assert_eq!(n, 5);
}

#[test]
fn multi_incr_expire_is_atomic_under_concurrency() {
    let d = Daemon::start();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = d.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut firsts = 0;
                for _ in 0..50 {
                    let (_n, set): (i64, i64) = redis::pipe()
                        .atomic()
                        .cmd("INCR")
                        .arg("hot")
                        .cmd("EXPIRE")
                        .arg("hot")
                        .arg(60)
                        .arg("NX")
                        .query(&mut c)
                        .unwrap();
                    firsts += set;
                }
                firsts
            })
        })
        .collect();
    let firsts: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut c = d.client();
    assert_eq!(run::<i64>(&mut c, &["GET", "hot"]), Ok(400));
    assert_eq!(firsts, 1, "exactly one transaction set the window");
}

#[test]
fn command_reports_the_new_commands_and_flushall_drops_items() {
    let d = Daemon::start();
    let mut c = d.client();
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("incr")
        .arg("mget")
        .query(&mut c)
        .unwrap();
    let text = format!("{info:?}");
    assert!(text.contains("incr") && text.contains("mget"), "{text}");
    run::<i64>(&mut c, &["INCR", "x"]).unwrap();
    assert_eq!(run::<i64>(&mut c, &["DBSIZE"]), Ok(1));
    run::<String>(&mut c, &["FLUSHALL"]).unwrap();
    assert_eq!(run::<Option<String>>(&mut c, &["GET", "x"]), Ok(None));
}

#[test]
fn max_value_size_is_configurable_and_max_keys_refuses_new_keys() {
    let d = Daemon::start_with(&[
        "--max-value-size",
        "4",
        "--max-keys",
        "2",
        "--shards",
        "1",
        "--maxmemory-policy",
        "refuse-deny",
    ]);
    let mut c = d.client();
    assert_eq!(
        run::<String>(&mut c, &["SET", "a", "12345"]).map_err(strip),
        Err("ERR value is larger than max-value-size (4 bytes)".into())
    );
    assert_eq!(run::<i64>(&mut c, &["INCR", "a"]), Ok(1));
    assert_eq!(run::<i64>(&mut c, &["INCR", "b"]), Ok(1));
    assert_eq!(
        run::<i64>(&mut c, &["INCR", "c"]).map_err(strip),
        Err("OOM command not allowed when used memory > 'maxmemory'.".into())
    );
    assert_eq!(
        run::<i64>(&mut c, &["INCR", "a"]),
        Ok(2),
        "existing keys still update"
    );
}

/// The redis crate words errors its own way ("An error was signalled by the server -
/// ResponseError: syntax error"); rebuild the server's line from it.
fn strip(e: String) -> String {
    let rest = e.split_once(" - ").map_or(&e[..], |(_, r)| r);
    match rest.split_once(": ") {
        Some(("ResponseError", msg)) => format!("ERR {msg}"),
        Some((kind, msg)) if kind.chars().all(|c| c.is_ascii_uppercase()) => {
            format!("{kind} {msg}")
        }
        _ => rest.to_string(),
    }
}
