//! The real redis-cli against the real daemon. redis-cli must be installed (scripts/test
//! installs it); a missing redis-cli fails the test rather than skipping it.

mod common;
use common::Daemon;
use std::process::Command;

fn cli(d: &Daemon, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &d.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (scripts/test installs redis-tools)");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_ping_info_and_a_limit_round_trip() {
    let d = Daemon::start();
    assert_eq!(cli(&d, &["PING"]).trim(), "PONG");
    let info = cli(&d, &["INFO", "server"]);
    assert!(
        info.contains("redis_version:") && info.contains("run_id:"),
        "{info}"
    );
    assert_eq!(
        cli(
            &d,
            &["RL.LIMIT", "SET", "ENDPOINT", "/login", "RATE", "2/1m"]
        )
        .trim(),
        "OK"
    );
    let first = cli(&d, &["RL.CHECK", "ip:10.0.0.1", "/login"]);
    assert_eq!(
        first.lines().take(3).collect::<Vec<_>>(),
        ["1", "2", "1"],
        "{first}"
    );
    cli(&d, &["RL.CHECK", "ip:10.0.0.1", "/login"]);
    let denied = cli(&d, &["RL.CHECK", "ip:10.0.0.1", "/login"]);
    let lines: Vec<&str> = denied.lines().collect();
    assert_eq!(&lines[..3], ["0", "2", "0"], "{denied}");
    let retry: i64 = lines[3].parse().unwrap();
    assert!((29_000..=30_000).contains(&retry), "retry_after_ms {retry}");
    let limit = cli(&d, &["RL.LIMIT", "GET", "ENDPOINT", "/login"]);
    assert_eq!(
        limit.lines().collect::<Vec<_>>(),
        ["RATE", "2/1m", "BURST", "0", "ALGO", "gcra"]
    );
    // Interactive-style use through stdin, as a person would type it.
    let mut child = Command::new("redis-cli")
        .args(["-p", &d.port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"DBSIZE\nRL.PEEK ip:10.0.0.1 /login\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("1\n0\n2\n0\n"), "{text}");
}
