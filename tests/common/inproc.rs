//! The daemon in-process, on a fake clock: the library's own `server::prepare` and
//! `Prepared::serve`, on a runtime of its own thread, with the engine reading a [`FakeClock`]
//! the test moves. Real sockets and real clients still talk to it; only time is the test's.
//!
//! Why: a test about time (a window refilling, a TTL running out, a delayed memcached
//! `flush_all`) would otherwise sleep for as long as the time it is about, and be as slow and
//! as flaky as the machine's timing. Here it calls [`InProcess::advance`] and goes on at once.
//! Tests that need the process itself (signals, a crash, its log, several daemons replicating)
//! keep the binary (`common::Daemon`).

use ratelimitd::state::{Ports, Shared};
use ratelimitd_engine::FakeClock;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A daemon served in this process; dropping it shuts the server down and removes its
/// directory.
pub struct InProcess {
    pub ports: Ports,
    pub clock: FakeClock,
    pub shared: Arc<Shared>,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// Serve with these flags (plus `--port 0` and a fresh `--dir`), the clock starting at the
    /// wall clock's now (so memcached's absolute exptimes mean what they say), in whole
    /// seconds: the engine keeps a GCRA key's TAT in whole microseconds, rounded up, so two
    /// checks at one and the same instant that is not a whole microsecond would see the first
    /// one's rounding (a real clock never stands still long enough for that to show).
    pub fn start(args: &[&str]) -> InProcess {
        let dir = ratelimitd_testkit::temp_dir("inproc");
        let mut argv: Vec<std::ffi::OsString> = ["ratelimitd", "--port", "0", "--dir"]
            .iter()
            .map(Into::into)
            .collect();
        argv.push(dir.clone().into());
        argv.extend(args.iter().map(Into::into));
        let settings = ratelimitd::settings::load_from(argv).expect("valid flags");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            * 1_000_000_000;
        let clock = FakeClock::new(now);
        let engine_clock = clock.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let prepared = ratelimitd::server::prepare(settings, engine_clock.into())
                    .await
                    .expect("the daemon starts");
                let _ = ready_tx.send(prepared.shared.clone());
                let _ = prepared
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let shared = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the daemon is ready");
        InProcess {
            ports: shared.ports,
            clock,
            shared,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Move the daemon's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The daemon's clock, in whole Unix seconds.
    pub fn clock_secs(&self) -> u64 {
        use ratelimitd_engine::Clock;
        self.clock.now() / 1_000_000_000
    }

    /// A `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports.resp))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect")
    }

    /// Base URL of the HTTP listener (started with --http-port).
    pub fn http_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.ports.http.expect("started with --http-port")
        )
    }

    /// A raw socket to the memcached listener (started with --memcached-port).
    pub fn mc_raw(&self) -> super::Raw {
        super::Raw::connect(self.ports.memcached.expect("started with --memcached-port"))
    }

    /// One field of INFO.
    pub fn info_field(&self, con: &mut redis::Connection, field: &str) -> String {
        super::info_field(con, field)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
