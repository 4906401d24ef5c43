//! A hostile or broken primary must not be able to harm a replica. Here: a primary's address
//! that is not a host name or an IP address is refused (REPLICAOF, --replicaof, the config
//! file's `replicaof`), so nothing can inject lines into INFO, ROLE or the config file.

mod common;
use common::{run, temp_dir, Daemon};

fn info(con: &mut redis::Connection, section: &str) -> String {
    run(con, &["INFO", section]).expect("INFO")
}

fn field(con: &mut redis::Connection, section: &str, name: &str) -> String {
    info(con, section)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
        .unwrap_or_default()
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
