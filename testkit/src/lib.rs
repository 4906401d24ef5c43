//! ratelimitd-testkit: start the real `ratelimitd` binary for a test, and stop it afterwards.
//!
//! Tests of this workspace talk to the daemon as its users do, over a socket, so they need the
//! real process: [`Daemon::start`] runs it on loopback with `--port 0` (the daemon picks a free
//! port and prints it in its "ready to accept connections" line, read from its stderr), in a
//! fresh data directory, and returns once it is ready. Dropping a [`Daemon`] kills the process
//! and removes that directory, so a test, failing or not, leaves nothing behind — in particular
//! no `./data` (the daemon's default `--dir`) in the directory the test runs in.
//!
//! The binary is the caller's to name: the root package's tests pass
//! `env!("CARGO_BIN_EXE_ratelimitd")`, which cargo builds for them; other packages' tests, which
//! cargo gives no such path, use [`binary`].
//!
//! # Layout
//! - [`Daemon`] — one running daemon: start, ports, log, connections, signals, stop on drop.
//! - [`binary`] — where the daemon binary is when cargo does not say.
//! - [`temp_dir`] — a fresh directory for a daemon's `--dir` (or anything else a test writes).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the daemon logs when it accepts connections, followed by its address.
const READY: &str = "ready to accept connections on ";
/// How long a daemon has to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The daemon binary for tests outside the root package: `$RATELIMITD_BIN`, else
/// `$CARGO_TARGET_DIR/debug/ratelimitd`, else the workspace's `target/debug/ratelimitd` (built
/// by `cargo build -p ratelimitd`, which `cargo test --workspace` does anyway).
///
/// # Panics
/// When the binary is not there, with that instruction: a test never skips for it.
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

/// A fresh, empty temporary directory, its name starting with `ratelimitd-test-<tag>-`.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "ratelimitd-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// One running `ratelimitd` on 127.0.0.1, killed (and its own data directory removed) on drop.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// The RESP port, read from the ready line.
    pub port: u16,
    /// Lines the daemon logged after it became ready (its stderr is drained into this
    /// channel for the daemon's whole life, so it never blocks on a full pipe).
    pub log: mpsc::Receiver<String>,
    /// The lines it logged before it became ready (start-up warnings, what it loaded).
    pub startup_log: Vec<String>,
    /// The data directory (`--dir`): a fresh temporary one unless the caller passed its own,
    /// and then removed on drop.
    pub dir: PathBuf,
    own_dir: bool,
    /// The HTTP port, when started with `--http-port` (read from the daemon's log; HTTPS
    /// with `--http-tls yes`).
    pub http_port: Option<u16>,
    /// The memcached port, when started with `--memcached-port` (read from the daemon's log).
    pub memcached_port: Option<u16>,
    /// The TLS RESP port, when started with `--tls-port` (read from the daemon's log).
    pub tls_port: Option<u16>,
    /// The TLS memcached port, when started with `--memcached-tls-port`.
    pub memcached_tls_port: Option<u16>,
}

impl Daemon {
    /// Starts `bin` with `--bind 127.0.0.1`, `--port 0` and a fresh `--dir` (each unless `args`
    /// has its own), then `args`, and waits until it is ready.
    ///
    /// # Panics
    /// When the daemon exits or does not report that it is ready within 20 s.
    pub fn start(bin: impl AsRef<OsStr>, args: &[&str]) -> Daemon {
        Daemon::try_start(bin, args).expect("ratelimitd did not report that it is ready")
    }

    /// [`Daemon::start`], returning the lines the daemon logged if it exited or never became
    /// ready (for tests of configurations it must refuse).
    pub fn try_start(bin: impl AsRef<OsStr>, args: &[&str]) -> Result<Daemon, Vec<String>> {
        // Every daemon gets its own data directory unless the test chose one: tests run in
        // parallel, the daemon locks its directory, and state persisted by one test must not
        // leak into another.
        let own_dir = !args.contains(&"--dir");
        let dir = match args.iter().position(|a| *a == "--dir") {
            Some(i) => PathBuf::from(args.get(i + 1).copied().unwrap_or("")),
            None => temp_dir("daemon"),
        };
        let mut command = Command::new(bin);
        if !args.contains(&"--port") {
            command.args(["--port", "0"]);
        }
        if !args.contains(&"--bind") {
            command.args(["--bind", "127.0.0.1"]);
        }
        if own_dir {
            command.arg("--dir").arg(&dir);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ratelimitd");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Once the receiver is gone, keep reading anyway: the daemon must never block
                // on a full pipe.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        let mut http_port = None;
        let mut memcached_port = None;
        let mut tls_port = None;
        let mut memcached_tls_port = None;
        let port = loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                let _ = child.kill();
                let _ = child.wait();
                if own_dir {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(seen);
            };
            if let Some(port) = port_after(&line, "HTTP listening on ")
                .or_else(|| port_after(&line, "HTTPS listening on "))
            {
                http_port = Some(port);
            }
            if let Some(port) = port_after(&line, "TLS listening on ") {
                tls_port = Some(port);
            }
            if let Some(port) = port_after(&line, "memcached TLS listener on ") {
                memcached_tls_port = Some(port);
            }
            if let Some(port) = port_after(&line, "memcached listener on ") {
                memcached_port = Some(port);
            }
            if line.contains(READY) {
                break port_after(&line, READY).expect("port in the ready line");
            }
            seen.push(line);
        };
        Ok(Daemon {
            child,
            port,
            log: rx,
            startup_log: seen,
            dir,
            own_dir,
            http_port,
            memcached_port,
            tls_port,
            memcached_tls_port,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Base URL of the HTTP listener (the daemon must have been started with --http-port).
    pub fn http_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.http_port.expect("started with --http-port")
        )
    }

    /// Base URL of the HTTPS listener (started with --http-port and --http-tls yes).
    pub fn https_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}",
            self.http_port.expect("started with --http-port")
        )
    }

    /// A plain synchronous connection, to look at the daemon directly.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect")
    }

    /// Log lines that arrive within `secs` seconds, stopping early at one containing `until`.
    pub fn log_until(&self, until: &str, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let done = line.contains(until);
            out.push(line);
            if done {
                break;
            }
        }
        out
    }

    /// SIGKILL, and wait for the process to be gone (its port is closed afterwards).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal with the system's `kill` (no libc dependency in tests).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `secs` seconds.
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon did not exit in {secs}s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The port after `marker` in `line` (`... <marker>127.0.0.1:6379`, perhaps followed by a
/// remark such as ` (TLS only)`).
fn port_after(line: &str, marker: &str) -> Option<u16> {
    let pos = line.find(marker)?;
    let addr = line[pos + marker.len()..].split(' ').next()?;
    addr.rsplit(':').next().and_then(|p| p.trim().parse().ok())
}
