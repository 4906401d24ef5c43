//! Command-line flags (and their `RATELIMITD_*` environment variables).
//!
//! Every flag has a default that makes `ratelimitd` with no arguments a working local daemon on
//! 127.0.0.1:6379, so the first run needs no configuration at all.

use clap::Parser;
use std::net::IpAddr;

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

    /// Require clients to AUTH with this password (as Redis's requirepass).
    #[arg(long, env = "RATELIMITD_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,

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

    /// Number of engine shards (rounded up to a power of two). More shards mean less lock
    /// contention between worker threads.
    #[arg(long, env = "RATELIMITD_SHARDS", default_value_t = 256)]
    pub shards: usize,
}
