//! The registry of connected clients: what CLIENT LIST, CLIENT KILL, INFO's
//! `connected_clients` and `--maxclients` see of every RESP and memcached connection.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What CLIENT LIST shows of one connection. Shared between the connection (which updates it)
/// and the registry (which reads it).
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: Option<SocketAddr>,
    pub created: Instant,
    pub name: Mutex<Option<Bytes>>,
    /// Last command name, lowercased (CLIENT LIST's cmd=).
    pub last_cmd: Mutex<String>,
    /// The user the connection runs as (CLIENT LIST's user=).
    pub user: Mutex<String>,
    /// Milliseconds since `created` at the last complete request (CLIENT LIST's idle=, and
    /// what the idle timeout measures).
    pub last_active_ms: AtomicU64,
    /// Waiting in WAIT: a blocked client is not idle, as in Redis.
    pub blocked: AtomicBool,
    /// Signed in (AUTH, HELLO AUTH, memcached's credentials): the sign-in timeout no longer
    /// applies.
    pub signed_in: AtomicBool,
    /// 2 or 3.
    pub resp: AtomicU8,
    /// Channel and pattern subscriptions (CLIENT LIST's sub= and psub=; a client with any is
    /// a "pubsub" client for CLIENT KILL TYPE).
    pub sub: AtomicU32,
    pub psub: AtomicU32,
    /// True once the connection serves a replica's stream (PSYNC): CLIENT KILL TYPE replica
    /// reaches it, TYPE normal does not.
    pub replica_link: AtomicBool,
    /// The kill switch (CLIENT KILL, a pub/sub client that stopped reading): set the flag, then
    /// wake the connection loop, which closes the connection. Notify keeps a permit when the
    /// loop is not waiting, so a kill between two waits is not lost.
    pub killed: AtomicBool,
    pub kill_notify: tokio::sync::Notify,
}

impl ClientHandle {
    /// The connection now runs as `name`.
    pub fn set_user(&self, name: &str) {
        if let Ok(mut u) = self.user.lock() {
            name.clone_into(&mut u);
        }
    }

    /// Ask the connection to close (it finishes nothing further; its peer sees EOF).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill_notify.notify_one();
    }

    /// Record a complete request now (CLIENT LIST's idle=, the idle timeout).
    pub fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last complete request (or since the connection opened).
    pub fn idle(&self) -> std::time::Duration {
        let ms = (self.created.elapsed().as_millis() as u64)
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        std::time::Duration::from_millis(ms)
    }

    /// What CLIENT KILL TYPE calls this client: "normal", "pubsub" or "replica".
    pub fn kind(&self) -> &'static str {
        if self.replica_link.load(Ordering::Relaxed) {
            "replica"
        } else if self.sub.load(Ordering::Relaxed) + self.psub.load(Ordering::Relaxed) > 0 {
            "pubsub"
        } else {
            "normal"
        }
    }

    /// One CLIENT LIST line (without the trailing newline), in Redis's field order.
    pub fn describe(&self) -> String {
        let age = self.created.elapsed();
        let idle_ms = self.idle().as_millis() as u64;
        let name = self
            .name
            .lock()
            .map(|n| {
                n.as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let cmd = self.last_cmd.lock().map(|c| c.clone()).unwrap_or_default();
        let user = self.user.lock().map(|u| u.clone()).unwrap_or_default();
        let laddr = self.laddr.map(|a| a.to_string()).unwrap_or_default();
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db=0 sub={} psub={} ssub=0 multi=-1 cmd={} user={} redir=-1 resp={}",
            self.id,
            self.addr,
            laddr,
            name,
            age.as_secs(),
            idle_ms / 1000,
            match self.kind() {
                "replica" => "S",
                "pubsub" => "P",
                _ => "N",
            },
            self.sub.load(Ordering::Relaxed),
            self.psub.load(Ordering::Relaxed),
            if cmd.is_empty() { "NULL".to_string() } else { cmd },
            user,
            self.resp.load(Ordering::Relaxed)
        )
    }
}

/// All connected clients, by id. Locked only on connect, disconnect and CLIENT LIST.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    count: AtomicU64,
}

impl ClientRegistry {
    pub fn register(&self, addr: SocketAddr, laddr: Option<SocketAddr>) -> Arc<ClientHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(None),
            last_cmd: Mutex::new(String::new()),
            user: Mutex::new("default".to_string()),
            last_active_ms: AtomicU64::new(0),
            blocked: AtomicBool::new(false),
            signed_in: AtomicBool::new(false),
            resp: AtomicU8::new(2),
            sub: AtomicU32::new(0),
            psub: AtomicU32::new(0),
            replica_link: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            kill_notify: tokio::sync::Notify::new(),
        });
        if let Ok(mut map) = self.clients.lock() {
            map.insert(id, handle.clone());
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        handle
    }

    pub fn unregister(&self, id: u64) {
        if let Ok(mut map) = self.clients.lock() {
            if map.remove(&id).is_some() {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> Vec<Arc<ClientHandle>> {
        self.clients
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}
