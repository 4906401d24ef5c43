//! Persistence against the real binary: limits and tiers survive restarts and `kill -9` at any
//! moment; SAVE/BGSAVE/LASTSAVE and the shutdown snapshot carry rate state across a restart;
//! a corrupt snapshot or a torn log tail is reported and the daemon still starts.

mod common;
use common::{check_distinct_keys, resp, run, temp_dir, Daemon};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn limit_list(con: &mut redis::Connection) -> Vec<(String, Vec<String>)> {
    run(con, &["RL.LIMIT", "LIST"]).expect("RL.LIMIT LIST")
}

#[test]
fn limits_and_tiers_survive_a_restart_binary_ids_included() {
    let dir = temp_dir("restart");
    let dir_s = dir.to_str().expect("utf-8 path");
    let before;
    {
        let mut d = Daemon::start_with(&["--dir", dir_s]);
        let mut con = d.client();
        for args in [
            &[
                "RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1s", "RATE", "1000/1h",
            ][..],
            &[
                "RL.LIMIT", "SET", "ENDPOINT", "/login", "RATE", "5/1m", "BURST", "2",
            ],
            &["RL.LIMIT", "SET", "TIER", "gold", "RATE", "100/1s"],
            &["RL.LIMIT", "SET", "CLIENT", "gone", "RATE", "1/1s"],
            &["RL.TIER", "SET", "acme", "gold"],
            &["RL.TIER", "SET", "old", "gold"],
        ] {
            assert_eq!(run::<String>(&mut con, args).unwrap(), "OK", "{args:?}");
        }
        assert_eq!(
            run::<i64>(&mut con, &["RL.LIMIT", "DEL", "CLIENT", "gone"]).unwrap(),
            1
        );
        assert_eq!(run::<i64>(&mut con, &["RL.TIER", "DEL", "old"]).unwrap(), 1);
        // A client id with CR, LF and NUL in it: the log is binary safe.
        let mut raw = d.raw();
        raw.send(&resp(&[
            b"RL.LIMIT",
            b"SET",
            b"CLIENT",
            b"a\r\nb\0c",
            b"RATE",
            b"3/1s",
        ]));
        raw.expect(b"+OK\r\n");
        before = limit_list(&mut con);
        d.signal("TERM");
        assert!(d.wait_exit(10).success());
    }
    let d = Daemon::start_with(&["--dir", dir_s]);
    let mut con = d.client();
    assert_eq!(limit_list(&mut con), before);
    assert_eq!(
        run::<Option<String>>(&mut con, &["RL.TIER", "GET", "acme"]).unwrap(),
        Some("gold".into())
    );
    assert_eq!(
        run::<Option<String>>(&mut con, &["RL.TIER", "GET", "old"]).unwrap(),
        None
    );
    let mut raw = d.raw();
    raw.send(&resp(&[b"RL.LIMIT", b"GET", b"CLIENT", b"a\r\nb\0c"]));
    raw.expect(b"*6\r\n$4\r\nRATE\r\n$4\r\n3/1s\r\n");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stream RL.LIMIT SETs (pipelined in small batches) until the daemon dies; return how many
/// were acknowledged with +OK. `progress` follows the count as it goes.
fn stream_until_killed(port: u16, round: usize, progress: &AtomicUsize) -> usize {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut acked = 0;
    let mut i = 0;
    loop {
        let mut batch = Vec::new();
        for _ in 0..8 {
            batch.extend(resp(&[
                b"RL.LIMIT",
                b"SET",
                b"CLIENT",
                format!("r{round}-c{i}").as_bytes(),
                b"RATE",
                format!("{}/1s", i + 1).as_bytes(),
            ]));
            i += 1;
        }
        if s.write_all(&batch).is_err() {
            return acked;
        }
        for _ in 0..8 {
            let mut reply = [0u8; 5];
            match s.read_exact(&mut reply) {
                Ok(()) if &reply == b"+OK\r\n" => {
                    acked += 1;
                    progress.store(acked, Ordering::Relaxed);
                }
                _ => return acked,
            }
        }
    }
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_limit() {
    let dir = temp_dir("kill9");
    let dir_s = dir.to_str().expect("utf-8 path");
    let mut acked_per_round = Vec::new();
    for round in 0..3 {
        let mut d = Daemon::start_with(&["--dir", dir_s]);
        let port = d.port;
        let progress = Arc::new(AtomicUsize::new(0));
        let seen = progress.clone();
        let writer = std::thread::spawn(move || stream_until_killed(port, round, &seen));
        // Kill once some changes are through (each is an fsync: a busy machine may take a
        // while), then at a different moment each round.
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.load(Ordering::Relaxed) < 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20 + 70 * round as u64));
        d.child.kill().expect("kill -9");
        let _ = d.child.wait();
        let acked = writer.join().expect("writer");
        assert!(
            acked > 0,
            "round {round}: nothing acknowledged before the kill"
        );
        acked_per_round.push(acked);
        // Restart on the same directory: it must load, with every acknowledged SET.
        let d = Daemon::start_with(&["--dir", dir_s]);
        let mut con = d.client();
        for (r, &acked) in acked_per_round.iter().enumerate() {
            for i in 0..acked {
                let got: Option<Vec<String>> = run(
                    &mut con,
                    &["RL.LIMIT", "GET", "CLIENT", &format!("r{r}-c{i}")],
                )
                .expect("GET");
                assert_eq!(
                    got.as_ref().and_then(|g| g.get(1)).map(String::as_str),
                    Some(format!("{}/1s", i + 1).as_str()),
                    "round {r} change {i} of {acked} acknowledged was lost"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_log_tail_is_reported_truncated_and_the_rest_loads() {
    let dir = temp_dir("torn");
    let dir_s = dir.to_str().expect("utf-8 path");
    {
        let d = Daemon::start_with(&["--dir", dir_s]);
        let mut con = d.client();
        run::<String>(
            &mut con,
            &["RL.LIMIT", "SET", "ENDPOINT", "/a", "RATE", "1/1s"],
        )
        .unwrap();
        run::<String>(
            &mut con,
            &["RL.LIMIT", "SET", "ENDPOINT", "/b", "RATE", "2/1s"],
        )
        .unwrap();
    }
    // Half a record, as a crash in the middle of an append leaves.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("limits.log"))
        .expect("log");
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'*', b'3'])
        .expect("write");
    drop(f);
    let d = Daemon::start_with(&["--dir", dir_s]);
    let mut con = d.client();
    assert_eq!(limit_list(&mut con).len(), 2);
    let info: String = run(&mut con, &["INFO", "persistence"]).unwrap();
    assert!(info.contains("dropped"), "{info}");
    // And the log is usable again: a new change survives the next restart.
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "ENDPOINT", "/c", "RATE", "3/1s"],
    )
    .unwrap();
    drop(con);
    drop(d);
    let d = Daemon::start_with(&["--dir", dir_s]);
    let mut con = d.client();
    assert_eq!(limit_list(&mut con).len(), 3);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn save_lastsave_and_the_shutdown_snapshot_keep_rate_state_across_a_restart() {
    let dir = temp_dir("snap");
    let dir_s = dir.to_str().expect("utf-8 path");
    {
        let mut d = Daemon::start_with(&["--dir", dir_s, "--save-interval", "0"]);
        let mut con = d.client();
        run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1h"]).unwrap();
        let before: i64 = run(&mut con, &["LASTSAVE"]).unwrap();
        assert_eq!(run::<String>(&mut con, &["SAVE"]).unwrap(), "OK");
        let after: i64 = run(&mut con, &["LASTSAVE"]).unwrap();
        assert!(after >= before && after > 1_600_000_000, "{before} {after}");
        assert_eq!(
            run::<String>(&mut con, &["BGSAVE"]).unwrap(),
            "Background saving started"
        );
        for _ in 0..3 {
            let r: Vec<i64> = run(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
            assert_eq!(r[0], 1);
        }
        // Clean shutdown writes the final snapshot.
        d.signal("TERM");
        assert!(d.wait_exit(10).success());
    }
    assert!(dir.join("state.snap").exists());
    let d = Daemon::start_with(&["--dir", dir_s]);
    let mut con = d.client();
    let r: Vec<i64> = run(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
    assert_eq!(
        r[0], 0,
        "alice spent her allowance before the restart: {r:?}"
    );
    let r: Vec<i64> = run(&mut con, &["RL.CHECK", "bob", "/x"]).unwrap();
    assert_eq!(r[0], 1);
    let info: String = run(&mut con, &["INFO", "persistence"]).unwrap();
    assert!(info.contains("rl_snapshot_load_status:ok"), "{info}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_snapshot_is_reported_and_the_daemon_starts_with_limits_intact() {
    let dir = temp_dir("badsnap");
    let dir_s = dir.to_str().expect("utf-8 path");
    {
        let d = Daemon::start_with(&["--dir", dir_s]);
        let mut con = d.client();
        run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1h"]).unwrap();
        run::<Vec<i64>>(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
        assert_eq!(run::<String>(&mut con, &["SAVE"]).unwrap(), "OK");
    }
    for garbage in [&b"definitely not a snapshot"[..], b""] {
        let snap = dir.join("state.snap");
        if garbage.is_empty() {
            // Truncated: the first half of a real snapshot.
            let d = Daemon::start_with(&["--dir", dir_s]);
            let mut con = d.client();
            run::<Vec<i64>>(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
            assert_eq!(run::<String>(&mut con, &["SAVE"]).unwrap(), "OK");
            drop(d);
            let bytes = std::fs::read(&snap).expect("snapshot");
            std::fs::write(&snap, &bytes[..bytes.len() / 2]).expect("truncate");
        } else {
            std::fs::write(&snap, garbage).expect("corrupt");
        }
        let d = Daemon::start_with(&["--dir", dir_s]);
        let mut con = d.client();
        let info: String = run(&mut con, &["INFO", "persistence"]).unwrap();
        assert!(info.contains("rl_snapshot_load_status:err"), "{info}");
        assert!(info.contains("snapshot rejected"), "{info}");
        assert_eq!(limit_list(&mut con).len(), 1, "limits are intact");
        let r: Vec<i64> = run(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
        assert_eq!(r[..3], [1, 3, 2], "rate state starts empty");
        let aside = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.snap.corrupt-")
            });
        assert!(aside, "the bad snapshot is kept aside for inspection");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_daemons_cannot_share_a_data_directory() {
    let dir = temp_dir("shared");
    let dir_s = dir.to_str().expect("utf-8 path");
    let _first = Daemon::start_with(&["--dir", dir_s]);
    let started = Instant::now();
    let second = Daemon::try_start_with(&["--dir", dir_s]);
    let lines = second
        .err()
        .expect("the second daemon must refuse to start");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("in use by another ratelimitd")),
        "{lines:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(_first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn periodic_snapshots_follow_save_interval() {
    let dir = temp_dir("interval");
    let dir_s = dir.to_str().expect("utf-8 path");
    let d = Daemon::start_with(&["--dir", dir_s, "--save-interval", "1"]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "3/1h"]).unwrap();
    run::<Vec<i64>>(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("state.snap").exists() {
        assert!(
            Instant::now() < deadline,
            "no snapshot after 10 s with --save-interval 1"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The nice value of the daemon's thread named `name`, if such a thread exists right now
/// (field 19 of /proc/<pid>/task/<tid>/stat, counted after the parenthesised name).
#[cfg(target_os = "linux")]
fn nice_of_thread(pid: u32, name: &str) -> Option<i64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        // Fields from the state (field 3) on; nice is field 19.
        return after_name.split(' ').nth(16)?.parse().ok();
    }
    None
}

#[cfg(target_os = "linux")]
#[test]
fn background_saves_run_on_a_low_priority_thread() {
    // No timed saves: only this test's BGSAVEs, so none is ever refused as "in progress".
    let d = Daemon::start_with(&["--save-interval", "0"]);
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1h"]).unwrap();
    check_distinct_keys(&mut con, "k", 20);
    // A save of 200k keys lasts long enough to be seen most times; try until it is.
    let pid = d.child.id();
    let mut seen = None;
    for _ in 0..20 {
        assert_eq!(
            run::<String>(&mut con, &["BGSAVE"]).unwrap(),
            "Background saving started"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.is_none() && Instant::now() < deadline {
            seen = nice_of_thread(pid, "ratelimitd-save");
            let info: String = run(&mut con, &["INFO", "persistence"]).unwrap();
            if info.contains("rdb_bgsave_in_progress:0") {
                break;
            }
        }
        if seen.is_some() {
            break;
        }
    }
    assert_eq!(seen, Some(19), "the save thread's nice value");
}
