//! Test harness: start the real `ratelimitd` binary on a free port and talk to it.
//!
//! The launcher is the workspace's `ratelimitd-testkit` crate (shared with the client's tests);
//! this file gives it the binary cargo built for these tests and adds what only these tests
//! use: raw sockets for byte-exact replies, RESP encoding, and the flood helper.

#![allow(dead_code)]

pub mod inproc;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

// Each test file compiles this module on its own, and not every one makes a temp dir.
#[allow(unused_imports)]
pub use ratelimitd_testkit::temp_dir;

/// A running daemon started from this package's binary: [`ratelimitd_testkit::Daemon`] (which
/// this derefs to: `port`, `child`, `dir`, `http_port`, `client()`, `log_until()`, `signal()`,
/// `wait_exit()`, ...) in a newtype, so that tests write `Daemon::start()` and get
/// `CARGO_BIN_EXE_ratelimitd`. Dropping it kills the process, so a failing test never leaves
/// one behind.
pub struct Daemon(ratelimitd_testkit::Daemon);

impl Deref for Daemon {
    type Target = ratelimitd_testkit::Daemon;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Daemon {
        Daemon(ratelimitd_testkit::Daemon::start(
            env!("CARGO_BIN_EXE_ratelimitd"),
            args,
        ))
    }

    /// Start the daemon; Err(lines it logged) if it exited or never became ready (for tests
    /// of refused configurations).
    pub fn try_start_with(args: &[&str]) -> Result<Daemon, Vec<String>> {
        ratelimitd_testkit::Daemon::try_start(env!("CARGO_BIN_EXE_ratelimitd"), args).map(Daemon)
    }

    /// A raw socket for byte-exact tests.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }

    /// A raw socket to the memcached listener (the daemon must have been started with
    /// --memcached-port).
    pub fn mc_raw(&self) -> Raw {
        Raw::connect(self.memcached_port.expect("started with --memcached-port"))
    }
}

/// A plain TCP connection for sending exact bytes and reading exact replies.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    /// Connect to a port on loopback, with a 5 s read timeout.
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Raw { s }
    }

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

/// Wait until `f` holds, or fail after `secs` (what the daemon does in the background runs on
/// real time: a test waits for it to happen instead of sleeping a fixed time).
pub fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One field of INFO (all sections), trimmed.
pub fn info_field(con: &mut redis::Connection, field: &str) -> String {
    let text: String = run(con, &["INFO", "everything"]).expect("INFO");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO has no {field}"))
        .trim()
        .to_string()
}
