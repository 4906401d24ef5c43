//! The config file, environment precedence, preloaded limits, CONFIG GET/SET of the runtime
//! knobs, and clear refusals of bad configuration — against the real binary.

mod common;
use common::{run, temp_dir, Daemon};
use std::collections::HashMap;
use std::process::{Command, Stdio};

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("ratelimitd.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_string()
}

fn config_get(con: &mut redis::Connection, name: &str) -> String {
    let m: HashMap<String, String> = run(con, &["CONFIG", "GET", name]).unwrap();
    m.get(name).cloned().unwrap_or_default()
}

#[test]
fn the_file_sets_flags_and_preloads_limits_and_tiers_and_flags_win() {
    let dir = temp_dir("cfg");
    let cfg = write_config(
        &dir,
        r#"
maxclients = 77
save_interval = 9
log-level = "debug"

[[limit]]
scope = "ENDPOINT /login"
rate = ["5/1m"]
burst = 0

[[limit]]
scope = "TIER gold"
rate = ["100/1s", "10000/1h"]
burst = [10, 0]

[[tier]]
client = "acme"
tier = "gold"
"#,
    );
    let d = Daemon::start_with(&["--config", &cfg, "--save-interval", "30"]);
    let mut con = d.client();
    assert_eq!(config_get(&mut con, "maxclients"), "77", "from the file");
    assert_eq!(config_get(&mut con, "save-interval"), "30", "the flag wins");
    assert_eq!(config_get(&mut con, "loglevel"), "debug");
    let login: Vec<redis::Value> =
        run(&mut con, &["RL.LIMIT", "GET", "ENDPOINT", "/login"]).unwrap();
    assert!(!login.is_empty());
    let r: Vec<i64> = run(&mut con, &["RL.CHECK", "acme", "/x"]).unwrap();
    assert_eq!(r[1], 110, "acme is gold: 100/1s with burst 10");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn environment_beats_the_file_and_flags_beat_the_environment() {
    let dir = temp_dir("env");
    let cfg = write_config(&dir, "maxclients = 77\nsave-interval = 9\n");
    let data = dir.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_ratelimitd"))
        .args(["--config", &cfg, "--port", "0", "--dir"])
        .arg(&data)
        .args(["--save-interval", "5", "--version"])
        .env("RATELIMITD_MAXCLIENTS", "88")
        .output()
        .expect("run");
    assert!(out.status.success(), "--version works with a config file");
    let mut d = {
        // Start for real with the environment set.
        let mut child = Command::new(env!("CARGO_BIN_EXE_ratelimitd"))
            .args([
                "--config",
                &cfg,
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--dir",
            ])
            .arg(&data)
            .env("RATELIMITD_MAXCLIENTS", "88")
            .env("RATELIMITD_SAVE_INTERVAL", "6")
            .args(["--save-interval", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let port = {
            use std::io::BufRead;
            let mut port = 0;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(pos) = line.find("ready to accept connections on ") {
                    port = line[pos..]
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse().ok())
                        .unwrap_or(0);
                    break;
                }
            }
            port
        };
        (child, port)
    };
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", d.1)).unwrap();
    let mut con = client.get_connection().unwrap();
    assert_eq!(config_get(&mut con, "maxclients"), "88", "env beats file");
    assert_eq!(config_get(&mut con, "save-interval"), "5", "flag beats env");
    let _ = d.0.kill();
    let _ = d.0.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_runtime_delete_of_a_file_limit_survives_restart_and_compaction() {
    let dir = temp_dir("tomb");
    let cfg = write_config(
        &dir,
        "[[limit]]\nscope = \"ENDPOINT /a\"\nrate = \"1/1s\"\n[[limit]]\nscope = \"ENDPOINT /b\"\nrate = \"2/1s\"\n",
    );
    let data = dir.join("data");
    let data_s = data.to_str().unwrap().to_string();
    {
        let d = Daemon::start_with(&["--config", &cfg, "--dir", &data_s]);
        let mut con = d.client();
        assert_eq!(
            run::<i64>(&mut con, &["RL.LIMIT", "DEL", "ENDPOINT", "/a"]).unwrap(),
            1
        );
        run::<String>(
            &mut con,
            &["RL.LIMIT", "SET", "ENDPOINT", "/b", "RATE", "20/1s"],
        )
        .unwrap();
    }
    let d = Daemon::start_with(&["--config", &cfg, "--dir", &data_s]);
    let mut con = d.client();
    let list: Vec<(String, Vec<String>)> = run(&mut con, &["RL.LIMIT", "LIST"]).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].0, "ENDPOINT /b");
    assert_eq!(
        list[0].1[1], "20/1s",
        "the runtime change wins over the file"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run the daemon expecting it to refuse its configuration; return its stderr.
fn refused(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ratelimitd"))
        .args(["--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // A daemon that accepted the configuration would run forever: give up after 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} was accepted: the daemon started");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success(), "{args:?} must be refused");
    err
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = temp_dir("bad");
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    let cases = [
        ("port = \n", "not valid TOML"),
        ("prot = 6379\n", "unknown key 'prot'"),
        ("maxclients = \"abc\"\n", "invalid value 'abc'"),
        ("log-level = \"loud\"\n", "invalid log level 'loud'"),
        (
            "[[limit]]\nscope = \"ENDPOINT /x\"\nrate = \"5/1w\"\n",
            "invalid rate '5/1w'",
        ),
        (
            "[[limit]]\nscope = \"NOWHERE\"\nrate = \"5/1s\"\n",
            "unknown scope",
        ),
        (
            "[[tier]]\nclient = \"a\"\n",
            "'tier' (a string) is required",
        ),
    ];
    for (text, expected) in cases {
        let cfg = write_config(&dir, text);
        let err = refused(&["--config", &cfg, "--dir", data_s]);
        assert!(err.contains(expected), "{text:?}: {err}");
        // Every refusal names the file, the limits' included.
        assert!(
            err.contains(cfg.as_str()),
            "{text:?} does not name {cfg}: {err}"
        );
    }
    let err = refused(&["--config", "/nonexistent/x.toml"]);
    assert!(err.contains("cannot read config file"), "{err}");
    let err = refused(&["--log-level", "loud", "--dir", data_s]);
    assert!(err.contains("invalid log level"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_set_changes_runtime_knobs_and_refuses_others() {
    let d = Daemon::start();
    let mut con = d.client();
    assert_eq!(config_get(&mut con, "loglevel"), "info");
    assert_eq!(
        run::<String>(&mut con, &["CONFIG", "SET", "loglevel", "warning"]).unwrap(),
        "OK"
    );
    assert_eq!(config_get(&mut con, "loglevel"), "warn");
    let err = run::<String>(&mut con, &["CONFIG", "SET", "loglevel", "loud"]).unwrap_err();
    assert!(err.contains("invalid log level"), "{err}");
    assert_eq!(
        run::<String>(
            &mut con,
            &["CONFIG", "SET", "save-interval", "0", "loglevel", "debug"]
        )
        .unwrap(),
        "OK"
    );
    assert_eq!(config_get(&mut con, "save-interval"), "0");
    assert_eq!(config_get(&mut con, "save"), "");
    let err = run::<String>(&mut con, &["CONFIG", "SET", "nosuch", "1"]).unwrap_err();
    assert!(err.contains("Unknown option"), "{err}");
    let err = run::<String>(&mut con, &["CONFIG", "SET", "dir", "/tmp"]).unwrap_err();
    assert!(
        err.contains("Unknown option"),
        "read-only knobs cannot be set: {err}"
    );
    let err = run::<String>(&mut con, &["CONFIG", "SET", "loglevel"]).unwrap_err();
    assert!(err.contains("wrong number of arguments"), "{err}");
    assert!(!config_get(&mut con, "dir").is_empty());
}
