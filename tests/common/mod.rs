//! Test harness: start the real `ratelimitd` binary on a free port and talk to it.
//!
//! The daemon is started with `--port 0`; it picks a free port and prints it in its
//! "ready to accept connections" line, which we read from its stderr. Dropping a [`Daemon`]
//! kills the process, so a failing test never leaves one behind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    /// Lines the daemon logged after it became ready.
    pub log: mpsc::Receiver<String>,
    /// The data directory (--dir): a fresh temporary one unless the test passed its own, and
    /// then removed when the daemon is dropped.
    pub dir: std::path::PathBuf,
    own_dir: bool,
    /// The HTTP port, when the test passed --http-port (read from the daemon's log).
    pub http_port: Option<u16>,
    /// The memcached port, when the test passed --memcached-port (read from the daemon's log).
    pub memcached_port: Option<u16>,
}

/// A fresh, empty temporary directory for a test's --dir.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
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

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Daemon {
        Daemon::try_start_with(args).expect("ratelimitd did not report that it is ready")
    }

    /// Start the daemon; Err(lines it logged) if it exited or never became ready (for tests
    /// of refused configurations).
    pub fn try_start_with(args: &[&str]) -> Result<Daemon, Vec<String>> {
        // Every daemon gets its own data directory unless the test chose one: tests run in
        // parallel, and a shared ./data would be locked by the first.
        let own_dir = !args.contains(&"--dir");
        let dir = match args.iter().position(|a| *a == "--dir") {
            Some(i) => std::path::PathBuf::from(args.get(i + 1).copied().unwrap_or("")),
            None => temp_dir("daemon"),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_ratelimitd"));
        command.args(["--port", "0", "--bind", "127.0.0.1"]);
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
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let mut http_port = None;
        let mut memcached_port = None;
        let port = loop {
            let Ok(line) =
                rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            else {
                let _ = child.kill();
                let _ = child.wait();
                if own_dir {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(seen);
            };
            if let Some(pos) = line.find("HTTP listening on ") {
                let addr = &line[pos + "HTTP listening on ".len()..];
                http_port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
            }
            if let Some(pos) = line.find("memcached listener on ") {
                let addr = &line[pos + "memcached listener on ".len()..];
                memcached_port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
            }
            if let Some(pos) = line.find("ready to accept connections on ") {
                let addr = &line[pos + "ready to accept connections on ".len()..];
                let port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
                break port.expect("port in the ready line");
            }
            seen.push(line);
        };
        Ok(Daemon {
            child,
            port,
            log: rx,
            dir,
            own_dir,
            http_port,
            memcached_port,
        })
    }

    /// Base URL of the HTTP listener (the daemon must have been started with --http-port).
    pub fn http_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.http_port.expect("started with --http-port")
        )
    }

    /// Log lines that arrive within `secs` seconds, stopping early at one containing `until`.
    pub fn log_until(&self, until: &str, secs: u64) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            let done = line.contains(until);
            out.push(line);
            if done {
                break;
            }
        }
        out
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect")
    }

    /// A raw socket for byte-exact tests.
    pub fn raw(&self) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Raw { s }
    }

    /// A raw socket to the memcached listener (the daemon must have been started with
    /// --memcached-port).
    pub fn mc_raw(&self) -> Raw {
        let port = self.memcached_port.expect("started with --memcached-port");
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Raw { s }
    }

    /// Send a signal with the system's `kill` (no libc dependency in tests).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Wait for the process to exit, at most `secs` seconds.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "daemon did not exit in {secs}s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A plain TCP connection for sending exact bytes and reading exact replies.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Read until `expected.len()` bytes arrived and compare them exactly.
    pub fn expect(&mut self, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        self.s
            .read_exact(&mut got)
            .unwrap_or_else(|e| panic!("reading {:?}: {e}", String::from_utf8_lossy(expected)));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "exact reply bytes"
        );
    }

    /// Read one CRLF-terminated line (without the CRLF).
    pub fn line(&mut self) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        loop {
            self.s.read_exact(&mut b).expect("read line");
            out.push(b[0]);
            if out.ends_with(b"\r\n") {
                out.truncate(out.len() - 2);
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
    }

    /// True when the server closed the connection (read returns 0 bytes).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0))
    }
}

/// Encode a command as a RESP array of bulk strings.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Run a command through the redis crate, returning its value or the error text.
pub fn run<T: redis::FromRedisValue>(
    con: &mut redis::Connection,
    args: &[&str],
) -> Result<T, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<T>(con).map_err(|e| e.to_string())
}

/// `batches` pipelines of 10,000 RL.CHECKs of distinct clients `<prefix><batch>-<i>` on `/e`.
pub fn check_distinct_keys(con: &mut redis::Connection, prefix: &str, batches: usize) {
    for batch in 0..batches {
        let mut pipe = redis::pipe();
        for i in 0..10_000 {
            pipe.cmd("RL.CHECK")
                .arg(format!("{prefix}{batch}-{i}"))
                .arg("/e")
                .ignore();
        }
        let () = pipe.query(con).unwrap();
    }
}

/// Flood the listener at `port` with `n` requests (`request(i)` for i = 0..n, then `quit`)
/// written by one thread while another drains the replies, as `redis-cli --pipe` does: a
/// connection that always has requests waiting. Meanwhile `progress` (how many requests the
/// daemon has run, read over another connection) is called until it passes 10,000 and then 21
/// times in a row, all while the flood is still running (asserted). Returns the 20 differences
/// between consecutive readings: the number of flood requests run while each reading waited
/// its turn.
pub fn flood_and_watch(
    port: u16,
    request: fn(u64) -> Vec<u8>,
    quit: &'static [u8],
    n: u64,
    mut progress: impl FnMut() -> u64,
) -> Vec<u64> {
    let flood = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    flood
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut replies = flood.try_clone().expect("clone");
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match replies.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(got) => total += got,
            }
        }
    });
    let mut requests = flood;
    let send = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for i in 0..n {
            buf.extend(request(i));
            if buf.len() >= 1 << 20 {
                requests.write_all(&buf).expect("write");
                buf.clear();
            }
        }
        buf.extend_from_slice(quit);
        requests.write_all(&buf).expect("write");
    });
    while progress() < 10_000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut last = progress();
    let mut gaps = Vec::new();
    for _ in 0..20 {
        let now = progress();
        gaps.push(now - last);
        last = now;
    }
    send.join().expect("sender");
    assert!(drain.join().expect("drain") > 0, "the flood got replies");
    assert!(
        last < n,
        "the flood ended during the readings ({last} of {n} run): make it longer"
    );
    gaps
}
