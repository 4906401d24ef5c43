//! What one RESP connection remembers between its requests: protocol version,
//! authentication, a MULTI in progress and its WATCHed keys, replication handshake options,
//! and subscriptions.

use crate::acl::User;
use crate::clients::ClientHandle;
use crate::pubsub::Subscriber;
use crate::repl::PsyncRequest;
use bytes::Bytes;
use ratelimitd_protocol::{ProtoVersion, Reply};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Per-connection state that commands read and change.
pub struct Session {
    pub handle: Arc<ClientHandle>,
    pub proto: ProtoVersion,
    /// Signed in by AUTH or HELLO. Until then the connection is the default user's, which
    /// serves only while that user is `on` and `nopass`.
    pub authenticated: bool,
    /// The user the connection runs as, as of [`Session::user_generation`].
    pub user: Arc<User>,
    /// The registry's generation when `user` was taken (see `acl::Users::generation`).
    pub user_generation: u64,
    /// Set by QUIT: the connection writes the reply and closes.
    pub quit: bool,
    /// MULTI queue and WATCHed keys (src/cmd/multi.rs).
    pub tx: TxState,
    /// REPLCONF options and a pending WAIT/PSYNC (src/cmd/replication.rs).
    pub repl: ReplSession,
    /// Subscriptions and the outbox, from the first (P)SUBSCRIBE on (src/pubsub.rs); None for
    /// the connections that never subscribe, which then pay nothing for pub/sub.
    pub pubsub: Option<Box<Subscriber>>,
    /// The name of the command run last, for CLIENT LIST's `cmd=`.
    pub(super) last_cmd: Option<&'static str>,
}

impl Session {
    pub fn new(handle: Arc<ClientHandle>, user: Arc<User>, user_generation: u64) -> Session {
        Session {
            handle,
            proto: ProtoVersion::Resp2,
            authenticated: false,
            user,
            user_generation,
            quit: false,
            tx: TxState::default(),
            repl: ReplSession::default(),
            pubsub: None,
            last_cmd: None,
        }
    }

    /// Record activity for CLIENT LIST (idle= and cmd=); called once per batch, not per command.
    pub fn touch(&mut self) {
        self.handle.touch();
        if let Some(name) = self.last_cmd.take() {
            if let Ok(mut c) = self.handle.last_cmd.lock() {
                c.clear();
                c.push_str(name);
            }
        }
    }

    /// Run as `user` from now on (AUTH, HELLO AUTH).
    pub fn sign_in(&mut self, user: Arc<User>, generation: u64) {
        self.handle.set_user(&user.name);
        self.handle.signed_in.store(true, Ordering::Relaxed);
        self.user = user;
        self.user_generation = generation;
        self.authenticated = true;
    }

    /// True when the connection is in RESP2 subscribed mode, where Redis allows only the
    /// subscription commands, PING, QUIT and RESET (RESP3 multiplexes replies and pushes, so
    /// it has no such mode).
    pub fn in_subscribed_mode(&self) -> bool {
        self.proto == ProtoVersion::Resp2 && self.pubsub.as_ref().is_some_and(|s| s.count() > 0)
    }
}

/// More queued commands than this in one MULTI is refused at EXEC (it bounds the memory a
/// client can make the server hold, like the other input limits).
pub const MAX_QUEUED: usize = 100_000;

/// A connection's transaction state.
#[derive(Debug, Default)]
pub struct TxState {
    /// The queued requests while in MULTI; None outside.
    pub(super) queue: Option<Vec<Vec<Bytes>>>,
    /// A queuing-time error happened: EXEC must abort.
    pub(super) failed: bool,
    /// WATCHed keys and the CAS each had (None: absent) when watched.
    pub(super) watched: Vec<(Bytes, Option<u64>)>,
}

impl TxState {
    /// True between MULTI and EXEC/DISCARD.
    pub fn queuing(&self) -> bool {
        self.queue.is_some()
    }

    /// Record a queuing-time error (a no-op outside MULTI).
    pub fn flag_error(&mut self) {
        if self.queuing() {
            self.failed = true;
        }
    }

    /// Queue a request (already checked for name, arity and authentication): `+QUEUED`.
    pub fn queue(&mut self, args: &[&[u8]]) -> Reply {
        if let Some(q) = self.queue.as_mut() {
            if q.len() >= MAX_QUEUED {
                self.failed = true;
                return Reply::error(format!(
                    "ERR too many commands in a transaction (limit {MAX_QUEUED})"
                ));
            }
            q.push(crate::args::owned(args));
        }
        Reply::simple("QUEUED")
    }
}

/// Replication state of one connection.
#[derive(Debug, Default)]
pub struct ReplSession {
    /// From `REPLCONF listening-port`.
    pub listening_port: u16,
    /// Set by WAIT or PSYNC: the connection finishes it after the command returns.
    pub blocking: Option<Blocking>,
}

/// Work a command hands to its connection because it needs to wait or take over the socket.
#[derive(Debug, Clone)]
pub enum Blocking {
    Wait { numreplicas: u64, timeout_ms: u64 },
    Psync(PsyncRequest),
}
