//! One client connection: read, decode every complete request, execute, write all replies once.
//!
//! Pipelining is real: a read that brings 16 requests produces 16 replies and one `write`. A
//! request refused for its size gets its error in its place in the pipeline and the connection
//! carries on; bytes that are not RESP at all get `-ERR Protocol error` and a close (the stream
//! cannot be resynchronised), exactly as Redis does.

use crate::bounds::OutputClass;
use crate::cmd::{self, Blocking, Ctx, Found, Prefetch, Session, COMMANDS};
use crate::counters::Family;
use crate::fair_share::FairShare;
use crate::state::Shared;
use crate::stream::Stream;
use bytes::BytesMut;
use ratelimitd_engine::Prefetched;
use ratelimitd_protocol::{compose, Decoder, Limits, Reply, Request};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Initial read buffer; it grows only for requests that need more.
const READ_BUF: usize = 16 * 1024;

/// One RESP client connection.
pub struct Connection {
    socket: Stream,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    session: Session,
}

impl Connection {
    pub fn new(
        socket: Stream,
        peer: SocketAddr,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> Connection {
        let handle = shared.clients.register(peer, socket.local_addr().ok());
        let session = Session::new(
            handle,
            shared.users.default_user(),
            shared.users.generation(),
        );
        Connection {
            socket,
            shared,
            shutdown,
            session,
        }
    }

    /// Serve the connection until the client leaves, sends QUIT, breaks the protocol, or the
    /// daemon shuts down. Errors are the client's business (a vanished peer is normal), so they
    /// end the connection quietly.
    pub async fn run(mut self) {
        let _ = self.serve().await;
        if let Some(sub) = self.session.pubsub.as_mut() {
            sub.clear(&self.shared.pubsub);
        }
        self.shared.clients.unregister(self.session.handle.id);
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        let config = &self.shared.config;
        let limits = Limits {
            max_bulk_len: config.max_bulk_len,
            max_array_len: config.max_args,
            max_request_len: usize::try_from(config.client_query_buffer_limit.0)
                .unwrap_or(usize::MAX),
            ..Limits::default()
        };
        let mut decoder = Decoder::new(limits);
        let mut input = BytesMut::with_capacity(READ_BUF);
        let mut output = BytesMut::with_capacity(READ_BUF);
        let mut counters = self.shared.counters.local();
        let mut ahead = Lookahead::default();
        let mut share = FairShare::default();
        loop {
            share.take_turns().await;
            if input.capacity() - input.len() < 1024 {
                input.reserve(READ_BUF);
            }
            if self.session.handle.killed.load(Ordering::Acquire) {
                return Ok(()); // CLIENT KILL: drop the connection, as Redis does
            }
            let n = tokio::select! {
                read = self.socket.read_buf(&mut input) => read?,
                _ = self.shutdown.changed() => return Ok(()),
                _ = self.session.handle.kill_notify.notified() => return Ok(()),
                // Only a connection that subscribed has an outbox; for the others this branch
                // is a future that never completes.
                msg = next_message(&mut self.session.pubsub) => {
                    if let Some(msg) = msg {
                        crate::pubsub::message_frame(&msg, self.session.proto, &mut output);
                    }
                    if let Some(sub) = self.session.pubsub.as_mut() {
                        sub.drain_ready(self.session.proto, &mut output);
                    }
                    self.send(&output).await?;
                    output.clear();
                    continue;
                }
            };
            if n == 0 {
                return Ok(());
            }
            // Until it signs in (while the daemon requires it), a connection's requests are
            // held to Redis's unauthenticated bounds.
            decoder.set_unauthenticated(
                !self.session.authenticated && !self.shared.users.default_open(),
            );
            let mut close = false;
            let mut served = false;
            loop {
                match ahead.next(&mut decoder, &mut input, &self.shared) {
                    Ok(Some((Request::Command(args), found, prefetched))) => {
                        share.ran();
                        served = true;
                        let now = self.shared.engine.now();
                        counters.begin(now);
                        let mut ctx = Ctx {
                            shared: &self.shared,
                            session: &mut self.session,
                            counters: &mut counters,
                            now: Some(now),
                            prefetched,
                            commands: &COMMANDS,
                        };
                        let mut reply =
                            args.with_slices(|argv| cmd::execute(&mut ctx, argv, found));
                        counters.timed(found.map_or(Family::Server, |f| f.spec.family));
                        decoder.recycle(args);
                        if self.session.authenticated {
                            decoder.set_unauthenticated(false);
                        }
                        // WAIT blocks this connection only; PSYNC turns it into a replica's
                        // stream (src/primary.rs).
                        match self.session.repl.blocking.take() {
                            Some(Blocking::Wait {
                                numreplicas,
                                timeout_ms,
                            }) => {
                                let handle = &self.session.handle;
                                handle.blocked.store(true, Ordering::Relaxed);
                                let n = crate::primary::wait(&self.shared, numreplicas, timeout_ms)
                                    .await;
                                handle.blocked.store(false, Ordering::Relaxed);
                                reply = Reply::Integer(n);
                            }
                            Some(Blocking::Psync(req)) => {
                                self.session
                                    .handle
                                    .replica_link
                                    .store(true, Ordering::Relaxed);
                                // The batch's counts and latencies, PSYNC's included, before
                                // the connection becomes a replica stream for good.
                                counters.close(self.shared.engine.now());
                                self.shared.flush(&mut counters);
                                self.socket.write_all(&output).await?;
                                let rest = input.split();
                                return crate::primary::serve_replica(
                                    &mut self.socket,
                                    rest,
                                    &self.shared,
                                    req,
                                    self.session.handle.addr,
                                    self.shutdown.clone(),
                                )
                                .await;
                            }
                            None => {}
                        }
                        if let Some(sub) = self.session.pubsub.as_mut() {
                            // Messages first (a RESP3 client publishing to itself gets the
                            // message before the count, as from Redis), then the reply, or the
                            // (un)subscribe confirmations that stand in for it.
                            sub.drain_ready(self.session.proto, &mut output);
                            if std::mem::take(&mut sub.replied) {
                                output.extend_from_slice(&sub.frames);
                                sub.frames.clear();
                            } else {
                                compose(&reply, self.session.proto, &mut output);
                            }
                        } else {
                            compose(&reply, self.session.proto, &mut output);
                        }
                        if self.session.quit {
                            close = true;
                            break;
                        }
                    }
                    Ok(Some((Request::Rejected(reason), _, _))) => {
                        served = true;
                        counters.protocol_error();
                        compose(
                            &Reply::error(reason.to_string()),
                            self.session.proto,
                            &mut output,
                        );
                    }
                    Ok(None) => break,
                    Err(e) => {
                        counters.protocol_error();
                        compose(
                            &Reply::error(e.to_string()),
                            self.session.proto,
                            &mut output,
                        );
                        close = true;
                        break;
                    }
                }
            }
            if counters.is_open() {
                counters.close(self.shared.engine.now());
            }
            self.shared.flush(&mut counters);
            // Only a complete request counts as activity: a client that trickles half a
            // request in forever is idle.
            if served {
                self.session.touch();
            }
            if !output.is_empty() {
                self.send(&output).await?;
                output.clear();
            }
            if close {
                let _ = self.socket.shutdown().await;
                return Ok(());
            }
        }
    }
}

impl Connection {
    /// Write a batch of replies (or messages). A kill (CLIENT KILL, the idle timeout, an
    /// output limit) ends a write that a client which stopped reading keeps waiting; a batch
    /// over the normal class's hard limit is not sent at all, and one over its soft limit has
    /// the soft limit's seconds to go out.
    async fn send(&mut self, output: &[u8]) -> std::io::Result<()> {
        let bounds = &self.shared.bounds;
        let limit = bounds.output_limit(OutputClass::Normal);
        let len = output.len() as u64;
        let over = |what: &str| {
            tracing::warn!(
                "client {} ({}) has {len} bytes of replies, over its {what} \
                 client-output-buffer-limit; disconnecting it",
                self.session.handle.id,
                self.session.handle.addr
            );
            bounds.disconnected.output.fetch_add(1, Ordering::Relaxed);
            Err(std::io::Error::other("client-output-buffer-limit"))
        };
        if limit.hard > 0 && len > limit.hard {
            return over("hard");
        }
        let deadline = (limit.soft > 0 && len > limit.soft)
            .then(|| tokio::time::Instant::now() + Duration::from_secs(limit.soft_secs));
        let handle = &self.session.handle;
        tokio::select! {
            biased;
            written = self.socket.write_all(output) => written,
            _ = handle.kill_notify.notified() => {
                Err(std::io::Error::other("killed while writing"))
            }
            _ = sleep_until(deadline) => over("soft"),
        }
    }
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How many pipelined checks are decoded before the first of them runs.
const AHEAD: usize = 16;

/// Requests decoded ahead of execution. A pipeline of checks (the rows with a [`Prefetch`]:
/// RL.CHECK, CL.THROTTLE) is decoded as a run (up to [`AHEAD`]) and every check's key is
/// prefetched before the first one runs, so that with millions of keys their cache misses
/// overlap instead of queueing one behind another. The run stops right after the first
/// request that is not a check: everything after it stays undecoded in the input buffer,
/// where a PSYNC (which takes the rest of the buffer over) or a QUIT expects it. Execution
/// order and replies are exactly those of one-at-a-time decoding.
///
/// Each request is looked up in the command table once, here, and its row goes with it to
/// dispatch.
#[derive(Default)]
struct Lookahead {
    queue: std::collections::VecDeque<Decoded>,
    /// A framing error met while decoding ahead: it surfaces after the requests before it.
    error: Option<ratelimitd_protocol::FrameError>,
}

/// A decoded request, its row (None: not a command, or an unknown one), and its key's
/// fingerprint if it was prefetched: the check takes it instead of hashing its key again.
type Decoded = (Request, Option<Found>, Option<Prefetched>);

impl Lookahead {
    fn next(
        &mut self,
        decoder: &mut Decoder,
        input: &mut BytesMut,
        shared: &Shared,
    ) -> Result<Option<Decoded>, ratelimitd_protocol::FrameError> {
        if let Some(next) = self.queue.pop_front() {
            return Ok(Some(next));
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        while self.queue.len() < AHEAD {
            match decoder.decode(input) {
                Ok(Some(req)) => {
                    // Each check's key is prefetched as soon as it is decoded, so the miss
                    // overlaps with decoding the rest; but not a lone request's, which runs at
                    // once (its prefetch could overlap with nothing): the first check is
                    // prefetched when a second request follows it.
                    let found = match &req {
                        Request::Command(args) => args.get(0).and_then(|n| COMMANDS.lookup(n)),
                        Request::Rejected(_) => None,
                    };
                    let check = found.is_some_and(|f| f.spec.prefetch.is_some());
                    let mut hint = None;
                    if !self.queue.is_empty() {
                        if self.queue.len() == 1 {
                            if let Some((first, first_found, first_hint)) = self.queue.front_mut() {
                                *first_hint = prefetch(shared, first, *first_found);
                            }
                        }
                        hint = prefetch(shared, &req, found);
                    }
                    self.queue.push_back((req, found, hint));
                    if !check {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if self.queue.is_empty() {
                        return Err(e);
                    }
                    self.error = Some(e);
                    break;
                }
            }
        }
        Ok(self.queue.pop_front())
    }
}

/// Prefetch the key of a request whose row names one, from the row's argument positions.
fn prefetch(shared: &Shared, req: &Request, found: Option<Found>) -> Option<Prefetched> {
    let Request::Command(args) = req else {
        return None;
    };
    match found?.spec.prefetch? {
        Prefetch::ClientEndpoint => Some(shared.engine.prefetch_check(args.get(1)?, args.get(2)?)),
        Prefetch::Throttle => Some(shared.engine.prefetch_throttle(args.get(1)?)),
    }
}

/// The next message from the connection's pub/sub outbox, or never if it has none.
async fn next_message(
    sub: &mut Option<Box<crate::pubsub::Subscriber>>,
) -> Option<Arc<crate::pubsub::Message>> {
    match sub {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}
