//! Test harness: start real `ratelimitd` daemons on loopback for the client's tests.
//!
//! `CARGO_BIN_EXE_ratelimitd` exists only in the root package's tests, so the binary is found
//! via `RATELIMITD_BIN`, else `$CARGO_TARGET_DIR/debug/ratelimitd`, else the workspace's
//! `target/debug/ratelimitd` (built by `cargo build -p ratelimitd`, which `cargo test
//! --workspace` does anyway). A missing binary fails the test with that instruction: it never
//! skips. Dropping a [`Daemon`] kills it and removes its data directory, so a test, failing or
//! not, leaves nothing behind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("RATELIMITD_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/ratelimitd");
    assert!(
        bin.exists(),
        "ratelimitd binary not found at {}: run `cargo build -p ratelimitd` first or set \
         RATELIMITD_BIN",
        bin.display()
    );
    bin
}

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    /// Its `--dir`, removed on drop.
    dir: PathBuf,
}

impl Daemon {
    /// A daemon on a free port (`--port 0`; the port is read from its ready line).
    pub fn start() -> Daemon {
        Daemon::start_on(0)
    }

    /// A daemon on `port` (0 = any free port).
    pub fn start_on(port: u16) -> Daemon {
        Daemon::start_on_with(port, &[])
    }

    /// A daemon on a free port with `extra` arguments appended (e.g. `--replicaof host:port`).
    pub fn start_with(extra: &[&str]) -> Daemon {
        Daemon::start_on_with(0, extra)
    }

    /// A daemon on `port` (0 = any free port) with `extra` arguments appended.
    pub fn start_on_with(port: u16, extra: &[&str]) -> Daemon {
        // Each daemon gets its own data directory: the daemon locks it, and limits persisted
        // by one test must not leak into another.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rld-client-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut child = Command::new(binary())
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--threads",
                "1",
                "--dir",
            ])
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ratelimitd");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep draining so the daemon never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("ratelimitd did not report that it is ready");
            let marker = "ready to accept connections on ";
            if let Some(pos) = line.find(marker) {
                let port = line[pos + marker.len()..]
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse().ok());
                break port.expect("port in the ready line");
            }
        };
        Daemon {
            child: Some(child),
            port,
            dir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait for the process to be gone (its port is closed afterwards).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A plain synchronous connection, to look at the daemon directly.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.addr()))
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect")
    }

    pub fn dbsize(&self) -> i64 {
        redis::cmd("DBSIZE")
            .query(&mut self.conn())
            .expect("DBSIZE")
    }

    /// RL.PEEK's `remaining` for a pair.
    pub fn peek_remaining(&self, client: &str, endpoint: &str) -> i64 {
        let r: Vec<i64> = redis::cmd("RL.PEEK")
            .arg(client)
            .arg(endpoint)
            .query(&mut self.conn())
            .expect("RL.PEEK");
        r[2]
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
