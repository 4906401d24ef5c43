//! Test harness: real `ratelimitd` daemons on loopback for the client's tests.
//!
//! The launcher is the workspace's `ratelimitd-testkit` crate. `CARGO_BIN_EXE_ratelimitd`
//! exists only in the root package's tests, so the binary is found by
//! [`ratelimitd_testkit::binary`] (`RATELIMITD_BIN`, else `$CARGO_TARGET_DIR/debug/ratelimitd`,
//! else the workspace's `target/debug/ratelimitd`); a missing binary fails the test with the
//! command that builds it, never skips. Each daemon runs with one worker thread. Dropping a
//! [`Daemon`] kills it and removes its data directory, so a test, failing or not, leaves
//! nothing behind.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};

/// A running daemon: [`ratelimitd_testkit::Daemon`] (which this derefs to: `port`, `addr()`,
/// `client()`, `kill()`, ...) in a newtype that adds the starts these tests use and two
/// look-ups of the daemon's state.
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
        let port = port.to_string();
        let mut args = vec!["--port", &port, "--threads", "1"];
        args.extend_from_slice(extra);
        Daemon(ratelimitd_testkit::Daemon::start(
            ratelimitd_testkit::binary(),
            &args,
        ))
    }

    pub fn dbsize(&self) -> i64 {
        redis::cmd("DBSIZE")
            .query(&mut self.client())
            .expect("DBSIZE")
    }

    /// RL.PEEK's `remaining` for a pair.
    pub fn peek_remaining(&self, client: &str, endpoint: &str) -> i64 {
        let r: Vec<i64> = redis::cmd("RL.PEEK")
            .arg(client)
            .arg(endpoint)
            .query(&mut self.client())
            .expect("RL.PEEK");
        r[2]
    }
}
