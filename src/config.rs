//! Command-line flags (and their `RATELIMITD_*` environment variables).
//!
//! Every flag has a default that makes `ratelimitd` with no arguments a working local daemon on
//! 127.0.0.1:6379, so the first run needs no configuration at all.

pub use crate::size::{parse_memory, Memory};
use clap::Parser;
use std::net::{IpAddr, Ipv6Addr};

/// ratelimitd: an in-memory rate-limit daemon that speaks the Redis protocol.
///
/// Any Redis client can ask "may client C call endpoint E now?" with RL.CHECK, manage limits
/// with RL.LIMIT, or use CL.THROTTLE exactly as with the redis-cell module.
#[derive(Debug, Clone, Parser)]
#[command(name = "ratelimitd", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on. Use 0.0.0.0 to accept connections from other hosts (and set
    /// --requirepass then).
    #[arg(long, env = "RATELIMITD_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// TCP port for the Redis protocol (RESP2/RESP3). 0 picks a free port, printed at start.
    #[arg(long, env = "RATELIMITD_PORT", default_value_t = 6379)]
    pub port: u16,

    /// Worker threads serving connections (default: one per CPU core).
    #[arg(long, env = "RATELIMITD_THREADS")]
    pub threads: Option<usize>,

    /// The default user's password (as Redis's requirepass): clients must AUTH, or name
    /// another user (AUTH user pass). Users and their rules are set with ACL SETUSER.
    #[arg(long, env = "RATELIMITD_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,

    /// An ACL file in Redis's format (`user <name> <rule> ...` per line): its users are loaded
    /// at start, ACL LOAD reloads it and ACL SAVE writes it. Users set at runtime are kept in
    /// --dir either way.
    #[arg(long, env = "RATELIMITD_ACLFILE")]
    pub aclfile: Option<std::path::PathBuf>,

    /// Protected mode, as Redis's: while the default user has no password, clients from other
    /// hosts than this one are refused (`-DENIED`), whatever --bind says. yes or no (also
    /// CONFIG SET protected-mode).
    #[arg(long, env = "RATELIMITD_PROTECTED_MODE", default_value = "yes", value_parser = ["yes", "no"])]
    pub protected_mode: String,

    // --- TLS, with Redis's flag names. See docs/OPERATIONS.md, "TLS".
    /// Port of a TLS listener for the Redis protocol, beside the plain --port; off unless
    /// given. 6380 is a usual choice; 0 picks a free port (logged), as --port 0 does (Redis
    /// reads tls-port 0 as "off"). Needs --tls-cert-file and --tls-key-file.
    #[arg(long, env = "RATELIMITD_TLS_PORT")]
    pub tls_port: Option<u16>,

    /// Whether --port serves plain-text RESP: yes, or no to serve RESP on --tls-port alone
    /// (what Redis spells `port 0`; here --port 0 picks a free port).
    #[arg(long, env = "RATELIMITD_PLAIN_PORT", default_value = "yes", value_parser = ["yes", "no"])]
    pub plain_port: String,

    /// PEM file with the server's certificate chain, its own certificate first. Also the
    /// client certificate a replica shows its primary. CONFIG SET tls-cert-file reloads it
    /// for new connections.
    #[arg(long, env = "RATELIMITD_TLS_CERT_FILE")]
    pub tls_cert_file: Option<std::path::PathBuf>,

    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1). Also CONFIG SET
    /// tls-key-file.
    #[arg(long, env = "RATELIMITD_TLS_KEY_FILE")]
    pub tls_key_file: Option<std::path::PathBuf>,

    /// PEM file of CA certificates: those that sign the client certificates TLS listeners
    /// accept, and the one that signs the primary's certificate (--tls-replication). Also
    /// CONFIG SET tls-ca-cert-file.
    #[arg(long, env = "RATELIMITD_TLS_CA_CERT_FILE")]
    pub tls_ca_cert_file: Option<std::path::PathBuf>,

    /// Client certificates on TLS connections: yes (required, signed by --tls-ca-cert-file;
    /// the default, as in Redis), optional (checked when a client shows one) or no. yes and
    /// optional need --tls-ca-cert-file: without it the daemon does not start.
    #[arg(long, env = "RATELIMITD_TLS_AUTH_CLIENTS", default_value = "yes", value_parser = ["yes", "no", "optional"])]
    pub tls_auth_clients: String,

    /// Port of a TLS listener for the memcached protocol, beside --memcached-port (which may be
    /// left off); off unless given; 0 picks a free port (logged). Same certificates as RESP.
    #[arg(long, env = "RATELIMITD_MEMCACHED_TLS_PORT")]
    pub memcached_tls_port: Option<u16>,

    /// yes: the HTTP listener (--http-port) serves HTTPS, with the TLS certificates and
    /// --tls-auth-clients of the other listeners.
    #[arg(long, env = "RATELIMITD_HTTP_TLS", default_value = "no", value_parser = ["yes", "no"])]
    pub http_tls: String,

    /// yes: a replica connects to its primary's TLS port (what --replicaof names) over TLS,
    /// checking the primary's certificate against --tls-ca-cert-file. Also CONFIG SET
    /// tls-replication (from the next connection).
    #[arg(long, env = "RATELIMITD_TLS_REPLICATION", default_value = "no", value_parser = ["yes", "no"])]
    pub tls_replication: String,

    /// Milliseconds a client has to complete its TLS handshake before it is disconnected.
    #[arg(
        long,
        env = "RATELIMITD_TLS_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub tls_handshake_timeout_ms: u64,

    /// Maximum simultaneous client connections; more are answered
    /// "-ERR max number of clients reached" and closed.
    #[arg(long, env = "RATELIMITD_MAXCLIENTS", default_value_t = 10_000)]
    pub maxclients: usize,

    /// Largest bulk string accepted in a request, in bytes (as Redis's proto-max-bulk-len).
    #[arg(long, env = "RATELIMITD_MAX_BULK_LEN", default_value_t = 512 * 1024)]
    pub max_bulk_len: usize,

    /// Largest number of arguments accepted in one request.
    #[arg(long, env = "RATELIMITD_MAX_ARGS", default_value_t = 64 * 1024)]
    pub max_args: usize,

    /// Largest request in total (the sum of its arguments), in bytes, as Redis's
    /// client-query-buffer-limit: a larger one is refused with an error and the connection
    /// carries on.
    #[arg(long, env = "RATELIMITD_CLIENT_QUERY_BUFFER_LIMIT", default_value = "16mb", value_parser = parse_memory)]
    pub client_query_buffer_limit: Memory,

    /// Seconds a client may go without sending a complete request before it is closed (as
    /// Redis's timeout); 0: never. Subscribers and replicas are exempt. Also CONFIG SET timeout.
    #[arg(long, env = "RATELIMITD_TIMEOUT", default_value_t = 0)]
    pub timeout: u64,

    /// Seconds a connection has to sign in (AUTH, HELLO AUTH, memcached's credentials) while
    /// the default user needs a password; it is closed after that. 0: no bound. Also CONFIG SET
    /// auth-timeout.
    #[arg(long, env = "RATELIMITD_AUTH_TIMEOUT", default_value_t = 10)]
    pub auth_timeout: u64,

    /// Output-buffer limits by client class, in Redis's format: `<class> <hard> <soft>
    /// <seconds>` for any of normal, replica and pubsub. A client over its hard limit, or over
    /// its soft limit for that many seconds, is disconnected. Also CONFIG SET.
    #[arg(long, env = "RATELIMITD_CLIENT_OUTPUT_BUFFER_LIMIT", default_value = crate::bounds::DEFAULT_OUTPUT_LIMITS, value_parser = parse_output_limits)]
    pub client_output_buffer_limit: String,

    /// Keep the large rate-state tables (32 KiB and up per shard, from about 350k keys) in
    /// transparent huge pages: yes (fewer TLB misses, ~11 % faster checks at 1M keys, ~27 % at
    /// 10M) or no (plain malloc, as on hosts where huge pages are unwanted).
    #[arg(long, env = "RATELIMITD_HUGE_PAGES", default_value = "yes", value_parser = ["yes", "no"])]
    pub huge_pages: String,

    /// Number of engine shards (rounded up to a power of two). More shards mean less lock
    /// contention between worker threads.
    #[arg(long, env = "RATELIMITD_SHARDS", default_value_t = 256)]
    pub shards: usize,

    /// Most rate-limit keys held (each window of an RL key and each CL.THROTTLE key is one).
    /// Unbounded if not given or 0. At the bound, --maxmemory-policy decides.
    #[arg(long, env = "RATELIMITD_MAX_KEYS")]
    pub max_keys: Option<u64>,

    /// Most memory for rate-limit state (tables and timing wheels), e.g. 256mb, 2gb or bytes.
    /// Unbounded if not given or 0 (as in Redis). At the bound, --maxmemory-policy decides.
    #[arg(long, env = "RATELIMITD_MAXMEMORY", value_parser = parse_memory)]
    pub maxmemory: Option<Memory>,

    /// What to do with a new key at the bound: evict-nearest (drop the keys nearest to
    /// decaying back to full: their loss changes the fewest answers), refuse-allow (fail-open:
    /// admit without tracking) or refuse-deny (fail-closed: deny).
    #[arg(long, env = "RATELIMITD_MAXMEMORY_POLICY", default_value = "evict-nearest", value_parser = parse_policy)]
    pub maxmemory_policy: Policy,

    /// Largest value the key-value commands store, in bytes (RESP SET/SETEX/..., memcached
    /// set/add/append/...; larger values are refused with a clear error).
    #[arg(long, env = "RATELIMITD_MAX_VALUE_SIZE", default_value_t = 1024)]
    pub max_value_size: usize,

    /// TCP port of the memcached text/meta protocol listener, sharing the key-value space with
    /// RESP; off unless given. 11211 is the usual choice; 0 picks a free port (logged).
    #[arg(long, env = "RATELIMITD_MEMCACHED_PORT")]
    pub memcached_port: Option<u16>,

    // --- operations: config file, logs, persistence, HTTP. See docs/OPERATIONS.md.
    /// TOML file with any of these flags (same names) and preloaded [[limit]] / [[tier]]
    /// tables. Precedence: flags > RATELIMITD_* environment > file > defaults.
    #[arg(long, env = "RATELIMITD_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Log level: trace, debug, info, warn, error or off (also CONFIG SET loglevel).
    #[arg(long, env = "RATELIMITD_LOG_LEVEL", default_value = "info", value_parser = parse_level)]
    pub log_level: String,

    /// Data directory: the limits log (every RL.LIMIT / RL.TIER change, fsynced) and the
    /// rate-state snapshot. Relative paths are relative to the working directory.
    #[arg(long, env = "RATELIMITD_DIR", default_value = crate::persist::DEFAULT_DIR)]
    pub dir: std::path::PathBuf,

    /// Snapshot the rate state every this many seconds (0: only on SAVE, BGSAVE and
    /// shutdown). Also CONFIG SET save-interval.
    #[arg(long, env = "RATELIMITD_SAVE_INTERVAL", default_value_t = 60)]
    pub save_interval: u64,

    /// Port of the HTTP listener (/metrics, /healthz, /readyz, /v1/check, /v1/forward-auth);
    /// off unless given. 8080 is the usual choice; 0 picks a free port.
    #[arg(long, env = "RATELIMITD_HTTP_PORT")]
    pub http_port: Option<u16>,

    /// Most simultaneous HTTP connections; more are closed as soon as they are accepted.
    #[arg(long, env = "RATELIMITD_HTTP_MAXCLIENTS", default_value_t = 4096)]
    pub http_maxclients: usize,

    /// Address of the HTTP listener (default: the same as --bind).
    #[arg(long, env = "RATELIMITD_HTTP_BIND")]
    pub http_bind: Option<IpAddr>,

    /// Which HTTP routes need credentials (Basic, or Bearer): none, checks (/v1/check,
    /// /v1/forward-auth) or all (those and /metrics); /healthz and /readyz never do. Default:
    /// all while the default user has a password, none while it has not.
    #[arg(long, env = "RATELIMITD_HTTP_AUTH", value_parser = ["none", "checks", "all"])]
    pub http_auth: Option<String>,

    /// Request header that names the client in forward-auth mode; the peer address (or
    /// --http-ip-header) is used when it is absent.
    #[arg(
        long,
        env = "RATELIMITD_HTTP_CLIENT_HEADER",
        default_value = "X-Api-Key"
    )]
    pub http_client_header: String,

    /// Header holding the original client address, set by a trusted proxy (e.g. X-Real-IP).
    /// Unset: the TCP peer address. Set it only when ratelimitd's HTTP port is reachable
    /// solely through that proxy, or clients can pick their own address.
    #[arg(long, env = "RATELIMITD_HTTP_IP_HEADER")]
    pub http_ip_header: Option<String>,

    /// How forward-auth names the endpoint: `method-path` ("GET /api/users") or `path`
    /// ("/api/users"). The query string is always dropped.
    #[arg(long, env = "RATELIMITD_FORWARD_AUTH_ENDPOINT", default_value = "method-path",
          value_parser = ["method-path", "path"])]
    pub forward_auth_endpoint: String,

    // --- replication. See docs/DESIGN.md, "Replication".
    /// Start as a replica of this primary (`host:port`); also REPLICAOF host port at runtime.
    #[arg(long, env = "RATELIMITD_REPLICAOF", value_parser = parse_master)]
    pub replicaof: Option<MasterAddr>,

    /// Password this replica sends (AUTH) to a primary that has --requirepass or users.
    #[arg(long, env = "RATELIMITD_MASTERAUTH", hide_env_values = true)]
    pub masterauth: Option<String>,

    /// The user this replica signs in as on its primary (`AUTH <masteruser> <masterauth>`),
    /// as Redis's masteruser; without it, the primary's default user.
    #[arg(long, env = "RATELIMITD_MASTERUSER")]
    pub masteruser: Option<String>,

    /// Bytes of the replication stream kept for replicas that reconnect (partial resync), e.g.
    /// 1mb. A replica that missed more than this gets a full resync.
    #[arg(long, env = "RATELIMITD_REPL_BACKLOG_SIZE", default_value = "1mb", value_parser = parse_memory)]
    pub repl_backlog_size: Memory,

    /// Largest full-sync payload this replica accepts from its primary, e.g. 512mb or 4gb, when
    /// --maxmemory is unbounded (with --maxmemory, that bound applies: a larger payload could
    /// not be held). A larger one is refused from its length header, before any of it is read;
    /// the link is dropped and retried.
    #[arg(long, env = "RATELIMITD_REPL_MAX_SYNC_SIZE", default_value = "1gb", value_parser = parse_sync_size)]
    pub repl_max_sync_size: Memory,

    /// Replica priority for failover tools (INFO's slave_priority; lower is preferred, 0 never).
    #[arg(long, env = "RATELIMITD_REPLICA_PRIORITY", default_value_t = 100)]
    pub replica_priority: u32,

    /// A primary refuses writes (checks, counters, limit changes) with `-NOREPLICAS` unless at
    /// least this many replicas acknowledged within --min-replicas-max-lag seconds (Redis's
    /// min-replicas-to-write; 0 = off). It bounds what a primary cut off from its replicas —
    /// one that Sentinel has already replaced, say — can admit before it is demoted.
    #[arg(long, env = "RATELIMITD_MIN_REPLICAS_TO_WRITE", default_value_t = 0)]
    pub min_replicas_to_write: u32,

    /// Seconds since a replica's last acknowledgement (replicas acknowledge every second)
    /// within which it counts for --min-replicas-to-write.
    #[arg(long, env = "RATELIMITD_MIN_REPLICAS_MAX_LAG", default_value_t = 10)]
    pub min_replicas_max_lag: u64,
}

/// Where a replica's link points (`--replicaof host:port`, `REPLICAOF host port`): a host
/// name or an IP address (an IPv6 one without its brackets), and a port. [`MasterAddr::new`]
/// and [`parse_master`] make one only from a valid host, so the host can be printed into INFO,
/// ROLE and the config file without quoting: it holds no control character, space or quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddr {
    pub host: String,
    pub port: u16,
}

/// A primary's host that is neither a host name nor an IP address (the text is escaped and
/// cut short, so the message is one line whatever was given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid master host \"{0}\": expected a host name (letters, digits, '-' and '.') or an IP address")]
pub struct HostError(String);

/// Longest host name (RFC 1035: 253 characters in text form, without a final dot).
const MAX_HOST_NAME: usize = 253;
/// Longest label of a host name (the parts between dots).
const MAX_LABEL: usize = 63;

impl MasterAddr {
    /// `host` (a host name, an IPv4 address, or an IPv6 address, bracketed or not) and `port`.
    pub fn new(host: &str, port: u16) -> Result<MasterAddr, HostError> {
        let host = valid_host(host).ok_or_else(|| {
            HostError(host.chars().take(64).flat_map(char::escape_debug).collect())
        })?;
        Ok(MasterAddr {
            host: host.to_string(),
            port,
        })
    }
}

/// `text` as a primary's host (brackets dropped from an IPv6 address), or None when it is
/// neither an IP address nor a host name: labels of letters, digits and '-' (not first or
/// last), 1 to 63 bytes each, separated by single dots, 253 bytes at most (a final dot is
/// allowed, as in `example.com.`).
fn valid_host(text: &str) -> Option<&str> {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        return inner.parse::<Ipv6Addr>().is_ok().then_some(inner);
    }
    if text.parse::<IpAddr>().is_ok() {
        return Some(text);
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        (1..=MAX_LABEL).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first() != Some(&b'-')
            && b.last() != Some(&b'-')
    };
    (name.len() <= MAX_HOST_NAME && name.split('.').all(label_ok)).then_some(text)
}

/// `host:port` (or `host port`, or `[v6]:port`) of a primary, for --replicaof and the config
/// file's `replicaof`.
pub fn parse_master(text: &str) -> Result<MasterAddr, String> {
    let t = text.trim();
    let (host, port) = t
        .rsplit_once(' ')
        .or_else(|| t.rsplit_once(':'))
        .ok_or_else(|| format!("'{}' is not host:port", t.escape_debug()))?;
    let port = port
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("'{}': invalid port", t.escape_debug()))?;
    MasterAddr::new(host.trim(), port).map_err(|e| e.to_string())
}

/// A log level, ours or Redis's (`warning`, `verbose`, ...), as its canonical name.
pub fn parse_level(text: &str) -> Result<String, String> {
    crate::logging::canonical_level(text)
        .map(str::to_string)
        .map_err(|e| e.to_string())
}

/// A `client-output-buffer-limit` value, checked as CONFIG SET checks it.
pub fn parse_output_limits(text: &str) -> Result<String, String> {
    crate::bounds::ClientBounds::new(0, 0)
        .set_output_limits(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// [`parse_memory`], above zero (a bound of 0 would refuse every full sync).
pub fn parse_sync_size(text: &str) -> Result<Memory, String> {
    match parse_memory(text)? {
        Memory(0) => Err(format!("'{text}': the full-sync bound must be above 0")),
        m => Ok(m),
    }
}

/// The eviction policy flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy(pub ratelimitd_engine::EvictionPolicy);

pub fn parse_policy(text: &str) -> Result<Policy, String> {
    ratelimitd_engine::EvictionPolicy::from_name(text)
        .map(Policy)
        .ok_or_else(|| {
            format!("unknown policy '{text}': use evict-nearest, refuse-allow or refuse-deny")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("100"), Ok(Memory(100)));
        assert_eq!(parse_memory("64kb"), Ok(Memory(65_536)));
        assert_eq!(parse_memory("256MB"), Ok(Memory(256 << 20)));
        assert_eq!(parse_memory("2g"), Ok(Memory(2 << 30)));
        assert!(parse_memory("12tb").is_err());
        assert!(parse_memory("mb").is_err());
        assert!(parse_memory("99999999999999999999gb").is_err());
        assert_eq!(parse_sync_size("1gb"), Ok(Memory(1 << 30)));
        assert!(parse_sync_size("0").is_err());
    }

    fn m(host: &str, port: u16) -> Result<MasterAddr, String> {
        Ok(MasterAddr {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn master_addresses() {
        assert_eq!(parse_master("127.0.0.1:6380"), m("127.0.0.1", 6380));
        assert_eq!(
            parse_master(" redis-1.dc.example 6380 "),
            m("redis-1.dc.example", 6380)
        );
        assert_eq!(parse_master("example.com.:1"), m("example.com.", 1));
        assert_eq!(parse_master("::1 6380"), m("::1", 6380));
        assert_eq!(parse_master("::1:6380"), m("::1", 6380));
        assert_eq!(parse_master("[::1]:6380"), m("::1", 6380));
        assert_eq!(parse_master("[fe80::1:2] 7"), m("fe80::1:2", 7));
        assert_eq!(
            parse_master(&format!("{}:1", "a".repeat(63))),
            m(&"a".repeat(63), 1)
        );
        let longest = [
            "x".repeat(63),
            "x".repeat(63),
            "x".repeat(63),
            "x".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        assert_eq!(parse_master(&format!("{longest}:1")), m(&longest, 1));
        for bad in [
            "evil\r\nrole:master:6379",
            "a\tb:1",
            "a\0b:1",
            "two words 1",
            "under_score:1",
            "-dash:1",
            "dash-.x:1",
            "a..b:1",
            ".a:1",
            "a..:1",
            "quote\"d:1",
            "back\\slash:1",
            "[127.0.0.1]:1",
            "[::1:1",
            "[[::1]]:1",
            "fe80::1%eth0 1",
            "h\u{e9}te:1",
            ":1",
            &format!("{}:1", "a".repeat(64)),
            &format!("{longest}x:1"),
        ] {
            let err = parse_master(bad).expect_err(bad);
            assert!(err.contains("invalid master host"), "{bad:?}: {err}");
            assert!(
                !err.contains(['\r', '\n', '\0']),
                "{bad:?}: one line: {err:?}"
            );
        }
        assert!(parse_master("h:99999")
            .expect_err("port")
            .contains("invalid port"));
        assert!(parse_master("h")
            .expect_err("no port")
            .contains("not host:port"));
    }
}
