//! [`Node`]: how the caller describes one daemon of the ring — fixed addresses (a primary and
//! its replicas) or the Redis Sentinels that name its primary — and the name the ring hashes
//! for it. A `Node` is only a description: [`Client::with_config`] checks it and builds the
//! node's runtime state (`client.rs`, `sentinel.rs`) from it.

#[cfg(doc)]
use crate::{Client, Config};

/// One daemon in the ring: a primary address and optional replica addresses — or, with
/// [`Node::sentinel`], a set of Redis Sentinels that name the current primary.
///
/// The node's *name* is what the ring hashes (docs/HASHING.md); it defaults to the primary
/// address as written (the master name for a Sentinel node). Give nodes explicit names when
/// addresses may change (a replica promoted in place, a host renumbered) so that keys do not
/// move with them.
#[derive(Clone, PartialEq, Eq)]
pub struct Node {
    pub(crate) name: Option<String>,
    pub(crate) primary: String,
    pub(crate) replicas: Vec<String>,
    pub(crate) sentinel: Option<SentinelSpec>,
    pub(crate) password: Option<String>,
}

/// Where a Sentinel node finds its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelSpec {
    pub(crate) sentinels: Vec<String>,
    pub(crate) master_name: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Node");
        d.field("name", &self.name);
        match &self.sentinel {
            Some(s) => d
                .field("sentinels", &s.sentinels)
                .field("master_name", &s.master_name),
            None => d
                .field("primary", &self.primary)
                .field("replicas", &self.replicas),
        };
        // Never print the password itself.
        d.field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Node {
    /// A node whose primary listens at `primary` (`host:port` or a `redis://` URL).
    pub fn new(primary: impl Into<String>) -> Node {
        Node {
            name: None,
            primary: primary.into(),
            replicas: Vec::new(),
            sentinel: None,
            password: None,
        }
    }

    /// A node whose primary is whatever the Redis Sentinels at `sentinels` (`host:port` or
    /// `redis://` URLs, e.g. `redis://:pw@host:26379` for a Sentinel with a password) name for
    /// `master_name` (`SENTINEL get-master-addr-by-name`).
    ///
    /// The Sentinels are asked in turn (the last one that answered first) on the first call,
    /// and again whenever the primary refuses the connection, times out, drops it or answers
    /// `-READONLY` — at most once per [`Config::rediscover_interval`], each Sentinel within
    /// [`Config::sentinel_timeout`]. While no primary answers, the node's keys are in degraded
    /// mode as for any unreachable node.
    ///
    /// The ring hashes the master name (or [`Node::name`]), never the primary's address, so
    /// keys stay on this node across failovers. A Sentinel node takes no
    /// [`Node::replica`]: Sentinel knows the replicas ([`Client::with_config`] refuses one).
    pub fn sentinel<S: Into<String>>(
        sentinels: impl IntoIterator<Item = S>,
        master_name: impl Into<String>,
    ) -> Node {
        Node {
            name: None,
            primary: String::new(),
            replicas: Vec::new(),
            sentinel: Some(SentinelSpec {
                sentinels: sentinels.into_iter().map(Into::into).collect(),
                master_name: master_name.into(),
            }),
            password: None,
        }
    }

    /// Adds a replica address, tried when the primary does not answer.
    pub fn replica(mut self, addr: impl Into<String>) -> Node {
        self.replicas.push(addr.into());
        self
    }

    /// Sets the name the ring hashes (default: the primary address; for a Sentinel node, the
    /// master name).
    pub fn name(mut self, name: impl Into<String>) -> Node {
        self.name = Some(name.into());
        self
    }

    /// The password sent with `AUTH` to this node's daemons (their `requirepass`): to the
    /// primary Sentinel names, or to every address of a fixed node that does not carry its own
    /// in a `redis://:pw@host:port` URL. Not sent to the Sentinels (put theirs in their URLs).
    pub fn password(mut self, password: impl Into<String>) -> Node {
        self.password = Some(password.into());
        self
    }

    /// The name the ring hashes.
    pub fn ring_name(&self) -> &str {
        match (&self.name, &self.sentinel) {
            (Some(name), _) => name,
            (None, Some(s)) => &s.master_name,
            (None, None) => &self.primary,
        }
    }
}
