//! The command table: every command the daemon knows, with Redis-style arity, flags and key
//! positions. Dispatch uses it to check arity and authentication uniformly; COMMAND reports it,
//! so redis-cli and client libraries see accurate metadata.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Identifies a command for dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmdId {
    Ping,
    Echo,
    Hello,
    Auth,
    Quit,
    Select,
    Client,
    Command,
    Info,
    Dbsize,
    Flushall,
    Flushdb,
    Time,
    Config,
    RlLimit,
    RlTier,
    RlCheck,
    RlPeek,
    RlReset,
    RlExplain,
    ClThrottle,
    Save,
    Bgsave,
    Lastsave,
    // The key-value space (src/cmd/counter.rs) and transactions (src/cmd/multi.rs).
    Get,
    Set,
    Setex,
    Psetex,
    Setnx,
    Getdel,
    Del,
    Unlink,
    Exists,
    Incr,
    Incrby,
    Decr,
    Decrby,
    Expire,
    Pexpire,
    Expireat,
    Pexpireat,
    Ttl,
    Pttl,
    Persist,
    Type,
    Mget,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    // Replication (src/cmd/replication.rs).
    Replicaof,
    Slaveof,
    Role,
    Wait,
    Replconf,
    Psync,
    Sync,
    // Pub/sub (src/cmd/pubsub.rs), for Redis Sentinel's discovery.
    Subscribe,
    Unsubscribe,
    Psubscribe,
    Punsubscribe,
    Publish,
    Pubsub,
}

/// One command's metadata, as Redis's COMMAND INFO describes it.
#[derive(Debug)]
pub struct CommandSpec {
    pub id: CmdId,
    /// Lowercase name.
    pub name: &'static str,
    /// Redis arity: N means exactly N arguments including the name; -N means at least N.
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    /// Allowed before AUTH when a password is set.
    pub no_auth: bool,
    /// One-line summary for COMMAND DOCS.
    pub summary: &'static str,
}

const fn row(
    id: CmdId,
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    no_auth: bool,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        id,
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        no_auth,
        summary,
    }
}

const NOKEYS: (i64, i64, i64) = (0, 0, 0);
/// The first argument is the key.
const ONEKEY: (i64, i64, i64) = (1, 1, 1);
/// Every argument is a key.
const ALLKEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command. Keep sorted by family, as in docs/API.md.
pub static COMMANDS: &[CommandSpec] = &[
    row(
        CmdId::Ping,
        "ping",
        -1,
        &["fast", "stale"],
        NOKEYS,
        false,
        "Returns the server's liveliness response.",
    ),
    row(
        CmdId::Echo,
        "echo",
        2,
        &["fast", "stale"],
        NOKEYS,
        false,
        "Returns the given string.",
    ),
    row(
        CmdId::Hello,
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NOKEYS,
        true,
        "Handshakes with the server: protocol version, authentication, client name.",
    ),
    row(
        CmdId::Auth,
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NOKEYS,
        true,
        "Authenticates the connection.",
    ),
    row(
        CmdId::Quit,
        "quit",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NOKEYS,
        true,
        "Closes the connection.",
    ),
    row(
        CmdId::Select,
        "select",
        2,
        &["loading", "stale", "fast"],
        NOKEYS,
        false,
        "Selects the database; only 0 exists.",
    ),
    row(
        CmdId::Client,
        "client",
        -2,
        &["noscript", "loading", "stale"],
        NOKEYS,
        false,
        "Connection management: SETNAME, GETNAME, ID, LIST, INFO, SETINFO.",
    ),
    row(
        CmdId::Command,
        "command",
        -1,
        &["loading", "stale"],
        NOKEYS,
        false,
        "Describes the server's commands: COUNT, DOCS, INFO, LIST.",
    ),
    row(
        CmdId::Info,
        "info",
        -1,
        &["loading", "stale"],
        NOKEYS,
        false,
        "Server information and statistics.",
    ),
    row(
        CmdId::Dbsize,
        "dbsize",
        1,
        &["readonly", "fast"],
        NOKEYS,
        false,
        "Number of live rate-limit keys.",
    ),
    row(
        CmdId::Flushall,
        "flushall",
        -1,
        &["write"],
        NOKEYS,
        false,
        "Drops all rate state (limits and tiers are kept).",
    ),
    row(
        CmdId::Flushdb,
        "flushdb",
        -1,
        &["write"],
        NOKEYS,
        false,
        "Same as FLUSHALL: there is one database.",
    ),
    row(
        CmdId::Time,
        "time",
        1,
        &["loading", "stale", "fast"],
        NOKEYS,
        false,
        "The server's time as [seconds, microseconds].",
    ),
    row(
        CmdId::Config,
        "config",
        -2,
        &["admin", "noscript", "loading", "stale"],
        NOKEYS,
        false,
        "CONFIG GET, RESETSTAT.",
    ),
    row(
        CmdId::RlLimit,
        "rl.limit",
        -2,
        &["write"],
        NOKEYS,
        false,
        "Sets, reads, deletes and lists limits: RL.LIMIT SET|GET|DEL|LIST|HELP.",
    ),
    row(
        CmdId::RlTier,
        "rl.tier",
        -2,
        &["write"],
        NOKEYS,
        false,
        "Assigns a client to a tier: RL.TIER SET|GET|DEL|HELP.",
    ),
    row(
        CmdId::RlCheck,
        "rl.check",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        false,
        "Checks and consumes: may this client call this endpoint now?",
    ),
    row(
        CmdId::RlPeek,
        "rl.peek",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        false,
        "Like RL.CHECK, consuming nothing.",
    ),
    row(
        CmdId::RlReset,
        "rl.reset",
        3,
        &["write", "fast"],
        (1, 1, 1),
        false,
        "Restores the full allowance of a client and endpoint.",
    ),
    row(
        CmdId::RlExplain,
        "rl.explain",
        3,
        &["readonly"],
        (1, 1, 1),
        false,
        "Which limit applies to a client and endpoint, and its windows' state.",
    ),
    row(
        CmdId::ClThrottle,
        "cl.throttle",
        -1,
        &["write", "fast"],
        (1, 1, 1),
        false,
        "redis-cell compatible GCRA throttle.",
    ),
    row(
        CmdId::Save,
        "save",
        1,
        &["admin", "noscript", "no_async_loading"],
        NOKEYS,
        false,
        "Writes a snapshot of the rate state to --dir, synchronously.",
    ),
    row(
        CmdId::Bgsave,
        "bgsave",
        -1,
        &["admin", "noscript", "no_async_loading"],
        NOKEYS,
        false,
        "Writes a snapshot of the rate state to --dir in the background.",
    ),
    row(
        CmdId::Lastsave,
        "lastsave",
        1,
        &["loading", "stale", "fast"],
        NOKEYS,
        false,
        "Unix time of the last successful snapshot.",
    ),
    row(
        CmdId::Get,
        "get",
        2,
        &["readonly", "fast"],
        ONEKEY,
        false,
        "Returns the value of a key.",
    ),
    row(
        CmdId::Set,
        "set",
        -3,
        &["write", "denyoom"],
        ONEKEY,
        false,
        "Sets a key's value: EX/PX/EXAT/PXAT, NX/XX, KEEPTTL, GET.",
    ),
    row(
        CmdId::Setex,
        "setex",
        4,
        &["write", "denyoom"],
        ONEKEY,
        false,
        "Sets a value with a TTL in seconds.",
    ),
    row(
        CmdId::Psetex,
        "psetex",
        4,
        &["write", "denyoom"],
        ONEKEY,
        false,
        "Sets a value with a TTL in milliseconds.",
    ),
    row(
        CmdId::Setnx,
        "setnx",
        3,
        &["write", "denyoom", "fast"],
        ONEKEY,
        false,
        "Sets a value only if the key does not exist.",
    ),
    row(
        CmdId::Getdel,
        "getdel",
        2,
        &["write", "fast"],
        ONEKEY,
        false,
        "Returns a key's value and deletes the key.",
    ),
    row(
        CmdId::Del,
        "del",
        -2,
        &["write"],
        ALLKEYS,
        false,
        "Deletes keys.",
    ),
    row(
        CmdId::Unlink,
        "unlink",
        -2,
        &["write", "fast"],
        ALLKEYS,
        false,
        "Deletes keys (same as DEL: values are small).",
    ),
    row(
        CmdId::Exists,
        "exists",
        -2,
        &["readonly", "fast"],
        ALLKEYS,
        false,
        "Counts how many of the keys exist.",
    ),
    row(
        CmdId::Incr,
        "incr",
        2,
        &["write", "denyoom", "fast"],
        ONEKEY,
        false,
        "Adds 1 to a counter (created at 0).",
    ),
    row(
        CmdId::Incrby,
        "incrby",
        3,
        &["write", "denyoom", "fast"],
        ONEKEY,
        false,
        "Adds an integer to a counter (created at 0).",
    ),
    row(
        CmdId::Decr,
        "decr",
        2,
        &["write", "denyoom", "fast"],
        ONEKEY,
        false,
        "Subtracts 1 from a counter (created at 0).",
    ),
    row(
        CmdId::Decrby,
        "decrby",
        3,
        &["write", "denyoom", "fast"],
        ONEKEY,
        false,
        "Subtracts an integer from a counter (created at 0).",
    ),
    row(
        CmdId::Expire,
        "expire",
        -3,
        &["write", "fast"],
        ONEKEY,
        false,
        "Sets a key's TTL in seconds: NX, XX, GT, LT.",
    ),
    row(
        CmdId::Pexpire,
        "pexpire",
        -3,
        &["write", "fast"],
        ONEKEY,
        false,
        "Sets a key's TTL in milliseconds: NX, XX, GT, LT.",
    ),
    row(
        CmdId::Expireat,
        "expireat",
        -3,
        &["write", "fast"],
        ONEKEY,
        false,
        "Sets a key's expiry as a Unix time in seconds.",
    ),
    row(
        CmdId::Pexpireat,
        "pexpireat",
        -3,
        &["write", "fast"],
        ONEKEY,
        false,
        "Sets a key's expiry as a Unix time in milliseconds.",
    ),
    row(
        CmdId::Ttl,
        "ttl",
        2,
        &["readonly", "fast"],
        ONEKEY,
        false,
        "Seconds until a key expires (-1 none, -2 no key).",
    ),
    row(
        CmdId::Pttl,
        "pttl",
        2,
        &["readonly", "fast"],
        ONEKEY,
        false,
        "Milliseconds until a key expires (-1 none, -2 no key).",
    ),
    row(
        CmdId::Persist,
        "persist",
        2,
        &["write", "fast"],
        ONEKEY,
        false,
        "Removes a key's TTL.",
    ),
    row(
        CmdId::Type,
        "type",
        2,
        &["readonly", "fast"],
        ONEKEY,
        false,
        "The type of a key: string or none.",
    ),
    row(
        CmdId::Mget,
        "mget",
        -2,
        &["readonly", "fast"],
        ALLKEYS,
        false,
        "Returns the values of several keys.",
    ),
    row(
        CmdId::Multi,
        "multi",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NOKEYS,
        false,
        "Starts a transaction.",
    ),
    row(
        CmdId::Exec,
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        NOKEYS,
        false,
        "Runs the queued commands; the key-value ones atomically.",
    ),
    row(
        CmdId::Discard,
        "discard",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NOKEYS,
        false,
        "Drops the queued commands.",
    ),
    row(
        CmdId::Watch,
        "watch",
        -2,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        ALLKEYS,
        false,
        "EXEC fails if one of these keys changes first.",
    ),
    row(
        CmdId::Unwatch,
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NOKEYS,
        false,
        "Forgets the watched keys.",
    ),
    row(
        CmdId::Replicaof,
        "replicaof",
        3,
        &["admin", "noscript", "stale", "no_async_loading"],
        NOKEYS,
        false,
        "Makes this node a replica of another (REPLICAOF host port), or a primary (NO ONE).",
    ),
    row(
        CmdId::Slaveof,
        "slaveof",
        3,
        &["admin", "noscript", "stale", "no_async_loading"],
        NOKEYS,
        false,
        "Same as REPLICAOF.",
    ),
    row(
        CmdId::Role,
        "role",
        1,
        &["noscript", "loading", "stale", "fast"],
        NOKEYS,
        false,
        "This node's replication role, offset and replicas.",
    ),
    row(
        CmdId::Wait,
        "wait",
        3,
        &["noscript"],
        NOKEYS,
        false,
        "Waits until this many replicas acknowledged every write made so far, or the timeout.",
    ),
    row(
        CmdId::Replconf,
        "replconf",
        -1,
        &["admin", "noscript", "loading", "stale", "allow_busy"],
        NOKEYS,
        false,
        "Replication handshake options (sent by replicas).",
    ),
    row(
        CmdId::Psync,
        "psync",
        -3,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        NOKEYS,
        false,
        "Starts a partial or full resync (sent by replicas).",
    ),
    row(
        CmdId::Sync,
        "sync",
        1,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        NOKEYS,
        false,
        "Starts a full sync (old replicas).",
    ),
    row(
        CmdId::Subscribe,
        "subscribe",
        -2,
        &["pubsub", "noscript", "loading", "stale"],
        NOKEYS,
        false,
        "Listens for messages published to channels.",
    ),
    row(
        CmdId::Unsubscribe,
        "unsubscribe",
        -1,
        &["pubsub", "noscript", "loading", "stale"],
        NOKEYS,
        false,
        "Stops listening to channels (all of them without arguments).",
    ),
    row(
        CmdId::Psubscribe,
        "psubscribe",
        -2,
        &["pubsub", "noscript", "loading", "stale"],
        NOKEYS,
        false,
        "Listens for messages published to channels that match glob patterns.",
    ),
    row(
        CmdId::Punsubscribe,
        "punsubscribe",
        -1,
        &["pubsub", "noscript", "loading", "stale"],
        NOKEYS,
        false,
        "Stops listening to patterns (all of them without arguments).",
    ),
    // Not "write": replicas accept PUBLISH (Sentinel publishes hellos through them too).
    row(
        CmdId::Publish,
        "publish",
        3,
        &["pubsub", "loading", "stale", "fast", "may_replicate"],
        NOKEYS,
        false,
        "Posts a message to a channel; the number of subscribers that received it.",
    ),
    row(
        CmdId::Pubsub,
        "pubsub",
        -2,
        &["pubsub", "loading", "stale"],
        NOKEYS,
        false,
        "Inspects pub/sub state: CHANNELS [pattern], NUMSUB [channel ...], NUMPAT.",
    ),
];

/// Name → spec, hashed with ahash: every request looks its command up here, and SipHash (std's
/// default) was ~1.3 % of a pipelined check. The names are ours, so there is nothing to defend
/// against hash flooding.
type Index = HashMap<&'static [u8], &'static CommandSpec, ahash::RandomState>;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| COMMANDS.iter().map(|c| (c.name.as_bytes(), c)).collect())
}

/// Find a command by name, ASCII case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    index().get(&*lower).copied()
}

/// The spec of a known id.
pub fn spec_of(id: CmdId) -> &'static CommandSpec {
    // Every CmdId has exactly one row in COMMANDS (checked by a test), so the fallback is never
    // taken; it exists so that this cannot panic.
    COMMANDS.iter().find(|c| c.id == id).unwrap_or(&COMMANDS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_rejects_unknown_and_long_names() {
        assert_eq!(lookup(b"PING").map(|c| c.id), Some(CmdId::Ping));
        assert_eq!(lookup(b"Rl.Check").map(|c| c.id), Some(CmdId::RlCheck));
        assert!(lookup(b"nope").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
        assert!(lookup(b"").is_none());
    }

    #[test]
    fn every_id_has_one_row() {
        let mut names: Vec<_> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
        for c in COMMANDS {
            assert_eq!(spec_of(c.id).name, c.name);
        }
    }
}
