//! What Redis Sentinel 7.0 sends a monitored node and parses from it, byte for byte
//! against the real binary: pub/sub as its hello discovery uses it, the failover MULTI pipeline
//! (SLAVEOF, CONFIG REWRITE, CLIENT KILL TYPE normal/pubsub), INFO's fields, HELLO's role.
//!
//! The drill with real Sentinels, redis-py's Sentinel client and a `kill -9` is
//! tests/python/test_sentinel.py (run by scripts/test) and scripts/sentinel-drill.

mod common;

use common::{resp, temp_dir, Daemon};
use std::time::{Duration, Instant};

fn info_field(d: &Daemon, section: &str, field: &str) -> Option<String> {
    let mut con = d.client();
    let text: String = common::run(&mut con, &["INFO", section]).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(str::to_string))
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn subscribe_publish_unsubscribe_with_redis_reply_shapes() {
    let d = Daemon::start();
    let mut sub = d.raw();
    sub.send(&resp(&[b"SUBSCRIBE", b"__sentinel__:hello", b"other"]));
    sub.expect(b"*3\r\n$9\r\nsubscribe\r\n$18\r\n__sentinel__:hello\r\n:1\r\n");
    sub.expect(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:2\r\n");
    // Subscribed RESP2 mode: PING answers ["pong", msg]; other commands are refused.
    sub.send(&resp(&[b"PING"]));
    sub.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    sub.send(&resp(&[b"GET", b"x"]));
    sub.expect(b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");

    let mut publisher = d.raw();
    publisher.send(&resp(&[
        b"PUBLISH",
        b"__sentinel__:hello",
        b"127.0.0.1,26379,abc,0",
    ]));
    publisher.expect(b":1\r\n");
    sub.expect(
        b"*3\r\n$7\r\nmessage\r\n$18\r\n__sentinel__:hello\r\n$21\r\n127.0.0.1,26379,abc,0\r\n",
    );

    sub.send(&resp(&[b"UNSUBSCRIBE"]));
    sub.expect(b"*3\r\n$11\r\nunsubscribe\r\n$18\r\n__sentinel__:hello\r\n:1\r\n");
    sub.expect(b"*3\r\n$11\r\nunsubscribe\r\n$5\r\nother\r\n:0\r\n");
    // Out of subscribed mode: ordinary commands again.
    sub.send(&resp(&[b"PING"]));
    sub.expect(b"+PONG\r\n");
    publisher.send(&resp(&[b"PUBLISH", b"__sentinel__:hello", b"x"]));
    publisher.expect(b":0\r\n");
}

#[test]
fn resp3_gets_pushes_and_its_own_messages_before_the_count() {
    let d = Daemon::start();
    let mut c = d.raw();
    c.send(&resp(&[b"HELLO", b"3"]));
    // Skip HELLO's map: read lines until its last value (the empty modules array).
    while c.line() != "*0" {}
    c.send(&resp(&[b"PSUBSCRIBE", b"ch*"]));
    c.expect(b">3\r\n$10\r\npsubscribe\r\n$3\r\nch*\r\n:1\r\n");
    c.send(&resp(&[b"PUBLISH", b"ch1", b"me"]));
    c.expect(b">4\r\n$8\r\npmessage\r\n$3\r\nch*\r\n$3\r\nch1\r\n$2\r\nme\r\n:1\r\n");
    // RESP3 has no subscribed mode: any command works.
    c.send(&resp(&[b"PING"]));
    c.expect(b"+PONG\r\n");
}

#[test]
fn replicas_accept_publish_and_hello_reports_the_role() {
    let p = Daemon::start();
    let target = format!("127.0.0.1:{}", p.port);
    let r = Daemon::start_with(&["--replicaof", &target]);
    let mut c = r.raw();
    c.send(&resp(&[b"PUBLISH", b"__sentinel__:hello", b"x"]));
    c.expect(b":0\r\n");
    c.send(&resp(&[b"RL.CHECK", b"a", b"b"]));
    c.expect(b"-READONLY You can't write against a read only replica.\r\n");
    let mut con = r.client();
    let hello: Vec<redis::Value> = redis::cmd("HELLO").arg(2).query(&mut con).expect("hello");
    let text = format!("{hello:?}");
    assert!(text.contains("replica"), "{text}");
}

#[test]
fn sentinel_failover_pipeline_gets_one_reply_each_and_kills_the_others() {
    let p = Daemon::start();
    let dir = temp_dir("sentinel-conf");
    let conf = dir.join("node.toml");
    std::fs::write(&conf, "# a node under Sentinel\nsave-interval = 0\n").expect("write conf");
    let conf_s = conf.to_string_lossy().into_owned();
    let n = Daemon::start_with(&["--config", &conf_s]);

    let mut normal = n.raw();
    normal.send(&resp(&[b"PING"]));
    normal.expect(b"+PONG\r\n");
    let mut subscriber = n.raw();
    subscriber.send(&resp(&[b"SUBSCRIBE", b"__sentinel__:hello"]));
    subscriber.expect(b"*3\r\n$9\r\nsubscribe\r\n$18\r\n__sentinel__:hello\r\n:1\r\n");

    let port = p.port.to_string();
    let mut s = n.raw();
    let mut pipeline = Vec::new();
    for cmd in [
        &[&b"MULTI"[..]][..],
        &[b"SLAVEOF", b"127.0.0.1", port.as_bytes()],
        &[b"CONFIG", b"REWRITE"],
        &[b"CLIENT", b"KILL", b"TYPE", b"normal"],
        &[b"CLIENT", b"KILL", b"TYPE", b"pubsub"],
        &[b"EXEC"],
    ] {
        pipeline.extend(resp(cmd));
    }
    s.send(&pipeline);
    s.expect(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n");
    s.expect(b"*4\r\n+OK\r\n+OK\r\n:1\r\n:1\r\n");
    // The caller survives; the other two were dropped.
    s.send(&resp(&[b"PING"]));
    s.expect(b"+PONG\r\n");
    assert!(normal.closed(), "the normal client was killed");
    assert!(subscriber.closed(), "the pub/sub client was killed");

    let text = std::fs::read_to_string(&conf).expect("read conf");
    assert_eq!(
        text,
        format!("# a node under Sentinel\nsave-interval = 0\nreplicaof = \"127.0.0.1:{port}\"\n")
    );
    wait_for("the link to the new primary", 20, || {
        info_field(&n, "replication", "master_link_status").as_deref() == Some("up")
    });
    assert_eq!(
        info_field(&n, "replication", "role").as_deref(),
        Some("slave")
    );
    assert_eq!(
        info_field(&n, "replication", "master_host").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        info_field(&n, "replication", "master_port"),
        Some(port.clone())
    );
    assert_eq!(
        info_field(&n, "replication", "slave_priority").as_deref(),
        Some("100")
    );
    // The primary lists it with its client port, as Sentinel discovers replicas from INFO.
    wait_for("the primary's slave0 line", 10, || {
        info_field(&p, "replication", "slave0").is_some_and(|l| {
            l.starts_with(&format!(
                "ip=127.0.0.1,port={},state=online,offset=",
                n.port
            )) && l.contains(",lag=")
        })
    });

    // Promoted back: SLAVEOF NO ONE, CONFIG REWRITE removes the key, writes work.
    let mut pipeline = Vec::new();
    for cmd in [
        &[&b"MULTI"[..]][..],
        &[b"SLAVEOF", b"NO", b"ONE"],
        &[b"CONFIG", b"REWRITE"],
        &[b"CLIENT", b"KILL", b"TYPE", b"normal"],
        &[b"CLIENT", b"KILL", b"TYPE", b"pubsub"],
        &[b"EXEC"],
    ] {
        pipeline.extend(resp(cmd));
    }
    s.send(&pipeline);
    s.expect(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n");
    s.expect(b"*4\r\n+OK\r\n+OK\r\n:0\r\n:0\r\n");
    assert_eq!(
        std::fs::read_to_string(&conf).expect("read conf"),
        "# a node under Sentinel\nsave-interval = 0\n"
    );
    s.send(&resp(&[b"INCR", b"k"]));
    s.expect(b":1\r\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_rewrite_without_a_config_file_is_ok_and_unknown_subcommands_do_not_abort_exec() {
    let d = Daemon::start();
    let mut c = d.raw();
    let mut pipeline = Vec::new();
    for cmd in [
        &[&b"MULTI"[..]][..],
        &[b"CONFIG", b"REWRITE"],
        &[b"CLIENT", b"NOPE"],
        &[b"PING"],
        &[b"EXEC"],
    ] {
        pipeline.extend(resp(cmd));
    }
    c.send(&pipeline);
    c.expect(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.\r\n+PONG\r\n");
    c.send(&resp(&[b"MULTI"]));
    c.expect(b"+OK\r\n");
    c.send(&resp(&[b"SUBSCRIBE", b"x"]));
    c.expect(b"-ERR Command not allowed inside a transaction: subscribe\r\n");
    c.send(&resp(&[b"DISCARD"]));
    c.expect(b"+OK\r\n");
}
