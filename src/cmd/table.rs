//! The command table: every command the daemon knows, one row each (see [`CommandSpec`] for
//! what a row says). Sorted by family, as in docs/API.md.

use super::spec::Flag::*;
use super::spec::Run::{Change, Container, Kv, Plain};
use super::spec::{cmd, Channels, CommandSpec, Commands, Keys, Prefetch};
use super::{
    acl, cell, client, command, config, connection, info, kv, limits, multi, persistence, pubsub,
    replication, rl, server,
};
use crate::acl::Category as C;
use crate::counters::Family::{Cell, RlAdmin, RlCheck};

/// Every command.
pub static COMMANDS: Commands = Commands::new(ROWS);

static ROWS: &[CommandSpec] = &[
    // Connection.
    cmd(
        "ping",
        -1,
        Plain(connection::ping),
        "Returns the server's liveliness response.",
    )
    .flags(&[Fast, Stale, Subscribed])
    .acl(&[C::Connection]),
    cmd(
        "echo",
        2,
        Plain(connection::echo),
        "Returns the given string.",
    )
    .flags(&[Fast, Stale])
    .acl(&[C::Connection]),
    cmd(
        "hello",
        -1,
        Plain(connection::hello),
        "Handshakes with the server: protocol version, authentication, client name.",
    )
    .flags(&[Noscript, Loading, Stale, Fast, NoAuth])
    .acl(&[C::Connection]),
    cmd(
        "auth",
        -2,
        Plain(connection::auth),
        "Authenticates the connection.",
    )
    .flags(&[Noscript, Loading, Stale, Fast, NoAuth])
    .acl(&[C::Connection]),
    cmd(
        "quit",
        -1,
        Plain(connection::quit),
        "Closes the connection.",
    )
    .flags(&[
        Noscript, Loading, Stale, Fast, NoAuth, TxControl, Subscribed,
    ])
    .acl(&[C::Connection]),
    cmd(
        "select",
        2,
        Plain(connection::select),
        "Selects the database; only 0 exists.",
    )
    .flags(&[Loading, Stale, Fast])
    .acl(&[C::Connection]),
    cmd(
        "client",
        -2,
        Container(None),
        "Connection management: SETNAME, GETNAME, ID, LIST, INFO, KILL, SETINFO.",
    )
    .flags(&[Noscript, Loading, Stale])
    .subcommands(CLIENT),
    // Server.
    cmd(
        "command",
        -1,
        Container(Some(command::all)),
        "Describes the server's commands: COUNT, DOCS, INFO, LIST.",
    )
    .flags(&[Loading, Stale])
    .subcommands(COMMAND),
    cmd(
        "info",
        -1,
        Plain(info::info),
        "Server information and statistics.",
    )
    .flags(&[Loading, Stale])
    .acl(&[C::Dangerous]),
    cmd(
        "dbsize",
        1,
        Plain(server::dbsize),
        "Number of live rate-limit keys.",
    )
    .flags(&[Readonly, Fast, WholeKeyspace])
    .acl(&[C::Keyspace]),
    cmd(
        "flushall",
        -1,
        Plain(server::flush),
        "Drops all rate state (limits and tiers are kept).",
    )
    .flags(&[Write, WholeKeyspace])
    .acl(&[C::Keyspace, C::Dangerous]),
    cmd(
        "flushdb",
        -1,
        Plain(server::flush),
        "Same as FLUSHALL: there is one database.",
    )
    .flags(&[Write, WholeKeyspace])
    .acl(&[C::Keyspace, C::Dangerous]),
    cmd(
        "time",
        1,
        Plain(server::time),
        "The server's time as [seconds, microseconds].",
    )
    .flags(&[Loading, Stale, Fast]),
    cmd(
        "config",
        -2,
        Container(None),
        "CONFIG GET, SET, RESETSTAT, REWRITE.",
    )
    .flags(&[Admin, Noscript, Loading, Stale])
    .subcommands(CONFIG),
    // The rate-limit API.
    cmd(
        "rl.limit",
        -2,
        Container(None),
        "Sets, reads, deletes and lists limits: RL.LIMIT SET|GET|DEL|LIST|HELP.",
    )
    .flags(&[Write])
    .family(RlAdmin)
    .subcommands(RL_LIMIT),
    cmd(
        "rl.tier",
        -2,
        Container(None),
        "Assigns a client to a tier: RL.TIER SET|GET|DEL|HELP.",
    )
    .flags(&[Write])
    .family(RlAdmin)
    .subcommands(RL_TIER),
    cmd(
        "rl.check",
        -3,
        Plain(rl::check),
        "Checks and consumes: may this client call this endpoint now?",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .family(RlCheck)
    .prefetch(Prefetch::ClientEndpoint)
    .acl(&[C::RateLimit]),
    cmd(
        "rl.peek",
        3,
        Plain(rl::peek),
        "Like RL.CHECK, consuming nothing.",
    )
    .flags(&[Readonly, Fast])
    .keys(Keys::ONE)
    .family(RlCheck)
    .acl(&[C::RateLimit]),
    cmd(
        "rl.reset",
        3,
        Plain(rl::reset),
        "Restores the full allowance of a client and endpoint.",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .family(RlAdmin)
    .acl(&[C::Limits]),
    cmd(
        "rl.explain",
        3,
        Plain(rl::explain),
        "Which limit applies to a client and endpoint, and its windows' state.",
    )
    .flags(&[Readonly])
    .keys(Keys::ONE)
    .family(RlAdmin)
    .acl(&[C::RateLimit]),
    cmd(
        "cl.throttle",
        -1,
        Plain(cell::throttle),
        "redis-cell compatible GCRA throttle.",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .family(Cell)
    .prefetch(Prefetch::Throttle)
    .acl(&[C::RateLimit]),
    // Snapshots.
    cmd(
        "save",
        1,
        Plain(persistence::save),
        "Writes a snapshot of the rate state to --dir, synchronously.",
    )
    .flags(&[Admin, Noscript, NoAsyncLoading]),
    cmd(
        "bgsave",
        -1,
        Plain(persistence::bgsave),
        "Writes a snapshot of the rate state to --dir in the background.",
    )
    .flags(&[Admin, Noscript, NoAsyncLoading]),
    cmd(
        "lastsave",
        1,
        Plain(persistence::lastsave),
        "Unix time of the last successful snapshot.",
    )
    .flags(&[Loading, Stale, Fast])
    .acl(&[C::Admin, C::Dangerous]),
    // The key-value space.
    cmd("get", 2, Kv(kv::get), "Returns the value of a key.")
        .flags(&[Readonly, Fast])
        .keys(Keys::ONE)
        .acl(&[C::String]),
    cmd(
        "set",
        -3,
        Kv(kv::set),
        "Sets a key's value: EX/PX/EXAT/PXAT, NX/XX, KEEPTTL, GET.",
    )
    .flags(&[Write, Denyoom])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "setex",
        4,
        Kv(kv::setex),
        "Sets a value with a TTL in seconds.",
    )
    .flags(&[Write, Denyoom])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "psetex",
        4,
        Kv(kv::psetex),
        "Sets a value with a TTL in milliseconds.",
    )
    .flags(&[Write, Denyoom])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "setnx",
        3,
        Kv(kv::setnx),
        "Sets a value only if the key does not exist.",
    )
    .flags(&[Write, Denyoom, Fast])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "getdel",
        2,
        Kv(kv::getdel),
        "Returns a key's value and deletes the key.",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd("del", -2, Kv(kv::del), "Deletes keys.")
        .flags(&[Write])
        .keys(Keys::ALL)
        .acl(&[C::Keyspace]),
    cmd(
        "unlink",
        -2,
        Kv(kv::del),
        "Deletes keys (same as DEL: values are small).",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ALL)
    .acl(&[C::Keyspace]),
    cmd(
        "exists",
        -2,
        Kv(kv::exists),
        "Counts how many of the keys exist.",
    )
    .flags(&[Readonly, Fast])
    .keys(Keys::ALL)
    .acl(&[C::Keyspace]),
    cmd(
        "incr",
        2,
        Kv(kv::incr),
        "Adds 1 to a counter (created at 0).",
    )
    .flags(&[Write, Denyoom, Fast])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "incrby",
        3,
        Kv(kv::incrby),
        "Adds an integer to a counter (created at 0).",
    )
    .flags(&[Write, Denyoom, Fast])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "decr",
        2,
        Kv(kv::decr),
        "Subtracts 1 from a counter (created at 0).",
    )
    .flags(&[Write, Denyoom, Fast])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "decrby",
        3,
        Kv(kv::decrby),
        "Subtracts an integer from a counter (created at 0).",
    )
    .flags(&[Write, Denyoom, Fast])
    .keys(Keys::ONE)
    .acl(&[C::String]),
    cmd(
        "expire",
        -3,
        Kv(kv::expire),
        "Sets a key's TTL in seconds: NX, XX, GT, LT.",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .acl(&[C::Keyspace]),
    cmd(
        "pexpire",
        -3,
        Kv(kv::pexpire),
        "Sets a key's TTL in milliseconds: NX, XX, GT, LT.",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .acl(&[C::Keyspace]),
    cmd(
        "expireat",
        -3,
        Kv(kv::expireat),
        "Sets a key's expiry as a Unix time in seconds.",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .acl(&[C::Keyspace]),
    cmd(
        "pexpireat",
        -3,
        Kv(kv::pexpireat),
        "Sets a key's expiry as a Unix time in milliseconds.",
    )
    .flags(&[Write, Fast])
    .keys(Keys::ONE)
    .acl(&[C::Keyspace]),
    cmd(
        "ttl",
        2,
        Kv(kv::ttl),
        "Seconds until a key expires (-1 none, -2 no key).",
    )
    .flags(&[Readonly, Fast])
    .keys(Keys::ONE)
    .acl(&[C::Keyspace]),
    cmd(
        "pttl",
        2,
        Kv(kv::pttl),
        "Milliseconds until a key expires (-1 none, -2 no key).",
    )
    .flags(&[Readonly, Fast])
    .keys(Keys::ONE)
    .acl(&[C::Keyspace]),
    cmd("persist", 2, Kv(kv::persist), "Removes a key's TTL.")
        .flags(&[Write, Fast])
        .keys(Keys::ONE)
        .acl(&[C::Keyspace]),
    cmd(
        "type",
        2,
        Kv(kv::type_of),
        "The type of a key: string or none.",
    )
    .flags(&[Readonly, Fast])
    .keys(Keys::ONE)
    .acl(&[C::Keyspace]),
    cmd(
        "mget",
        -2,
        Kv(kv::mget),
        "Returns the values of several keys.",
    )
    .flags(&[Readonly, Fast])
    .keys(Keys::ALL)
    .acl(&[C::String]),
    // Transactions.
    cmd("multi", 1, Plain(multi::multi), "Starts a transaction.")
        .flags(&[Noscript, Loading, Stale, Fast, AllowBusy, TxControl])
        .acl(&[C::Transaction]),
    cmd(
        "exec",
        1,
        Plain(multi::exec),
        "Runs the queued commands; the key-value ones atomically.",
    )
    .flags(&[Noscript, Loading, Stale, SkipSlowlog, TxControl, EndsTx])
    .acl(&[C::Transaction]),
    cmd(
        "discard",
        1,
        Plain(multi::discard),
        "Drops the queued commands.",
    )
    .flags(&[Noscript, Loading, Stale, Fast, AllowBusy, TxControl])
    .acl(&[C::Transaction]),
    cmd(
        "watch",
        -2,
        Plain(multi::watch),
        "EXEC fails if one of these keys changes first.",
    )
    .flags(&[Noscript, Loading, Stale, Fast, AllowBusy, TxControl])
    .keys(Keys::ALL)
    .acl(&[C::Transaction]),
    cmd(
        "unwatch",
        1,
        Plain(multi::unwatch),
        "Forgets the watched keys.",
    )
    .flags(&[Noscript, Loading, Stale, Fast, AllowBusy])
    .acl(&[C::Transaction]),
    // Replication.
    cmd(
        "replicaof",
        3,
        Plain(replication::replicaof),
        "Makes this node a replica of another (REPLICAOF host port), or a primary (NO ONE).",
    )
    .flags(&[Admin, Noscript, Stale, NoAsyncLoading]),
    cmd(
        "slaveof",
        3,
        Plain(replication::replicaof),
        "Same as REPLICAOF.",
    )
    .flags(&[Admin, Noscript, Stale, NoAsyncLoading]),
    cmd(
        "role",
        1,
        Plain(replication::role),
        "This node's replication role, offset and replicas.",
    )
    .flags(&[Noscript, Loading, Stale, Fast])
    .acl(&[C::Admin, C::Dangerous]),
    cmd(
        "wait",
        3,
        Plain(replication::wait),
        "Waits until this many replicas acknowledged every write made so far, or the timeout.",
    )
    .flags(&[Noscript])
    .acl(&[C::Connection]),
    cmd(
        "replconf",
        -1,
        Plain(replication::replconf),
        "Replication handshake options (sent by replicas).",
    )
    .flags(&[Admin, Noscript, Loading, Stale, AllowBusy]),
    cmd(
        "psync",
        -3,
        Plain(replication::psync),
        "Starts a partial or full resync (sent by replicas).",
    )
    .flags(&[Admin, Noscript, NoAsyncLoading, NoMulti]),
    cmd(
        "sync",
        1,
        Plain(replication::sync),
        "Starts a full sync (old replicas).",
    )
    .flags(&[Admin, Noscript, NoAsyncLoading, NoMulti]),
    // Pub/sub, for Redis Sentinel's discovery.
    cmd(
        "subscribe",
        -2,
        Plain(pubsub::subscribe),
        "Listens for messages published to channels.",
    )
    .flags(&[Pubsub, Noscript, Loading, Stale, NoMulti, Subscribed])
    .channels(Channels::All),
    cmd(
        "unsubscribe",
        -1,
        Plain(pubsub::unsubscribe),
        "Stops listening to channels (all of them without arguments).",
    )
    .flags(&[Pubsub, Noscript, Loading, Stale, NoMulti, Subscribed]),
    cmd(
        "psubscribe",
        -2,
        Plain(pubsub::psubscribe),
        "Listens for messages published to channels that match glob patterns.",
    )
    .flags(&[Pubsub, Noscript, Loading, Stale, NoMulti, Subscribed])
    .channels(Channels::AllPatterns),
    cmd(
        "punsubscribe",
        -1,
        Plain(pubsub::punsubscribe),
        "Stops listening to patterns (all of them without arguments).",
    )
    .flags(&[Pubsub, Noscript, Loading, Stale, NoMulti, Subscribed]),
    // Not "write": replicas accept PUBLISH (Sentinel publishes hellos through them too).
    cmd(
        "publish",
        3,
        Plain(pubsub::publish),
        "Posts a message to a channel; the number of subscribers that received it.",
    )
    .flags(&[Pubsub, Loading, Stale, Fast, MayReplicate])
    .channels(Channels::First),
    cmd(
        "pubsub",
        -2,
        Container(None),
        "Inspects pub/sub state: CHANNELS [pattern], NUMSUB [channel ...], NUMPAT.",
    )
    .flags(&[Pubsub, Loading, Stale])
    .subcommands(PUBSUB),
    // Users and what they may do.
    cmd(
        "acl",
        -2,
        Container(None),
        "Users and their permissions: SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT, LOG, SAVE, LOAD.",
    )
    .flags(&[Noscript, Loading, Stale])
    .subcommands(ACL),
];

static CLIENT: &[CommandSpec] = &[
    cmd(
        "setname",
        3,
        Plain(client::setname),
        "Names the connection.",
    )
    .flags(&[Noscript, Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "getname",
        2,
        Plain(client::getname),
        "The connection's name.",
    )
    .flags(&[Noscript, Loading, Stale])
    .acl(&[C::Connection]),
    cmd("id", 2, Plain(client::id), "The connection's id.")
        .flags(&[Noscript, Loading, Stale])
        .acl(&[C::Connection]),
    cmd(
        "info",
        2,
        Plain(client::info),
        "This connection, as CLIENT LIST shows it.",
    )
    .flags(&[Noscript, Loading, Stale])
    .acl(&[C::Connection]),
    cmd("list", -2, Plain(client::list), "Every connection.")
        .flags(&[Admin, Noscript, Loading, Stale])
        .acl(&[C::Connection]),
    cmd(
        "kill",
        -3,
        Plain(client::kill),
        "Closes connections by id, type, user, address or age.",
    )
    .flags(&[Admin, Noscript, Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "setinfo",
        4,
        Plain(client::setinfo),
        "Library name and version (not stored).",
    )
    .flags(&[Noscript, Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "no-evict",
        3,
        Plain(client::on_off),
        "Accepted for compatibility.",
    )
    .flags(&[Admin, Noscript, Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "no-touch",
        3,
        Plain(client::on_off),
        "Accepted for compatibility.",
    )
    .flags(&[Noscript, Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "help",
        2,
        Plain(client::help),
        "Lists CLIENT's subcommands.",
    )
    .flags(&[Loading, Stale])
    .acl(&[C::Connection]),
];

static COMMAND: &[CommandSpec] = &[
    cmd("count", 2, Plain(command::count), "The number of commands.")
        .flags(&[Loading, Stale])
        .acl(&[C::Connection]),
    cmd(
        "list",
        -2,
        Plain(command::list),
        "The names of the commands.",
    )
    .flags(&[Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "info",
        -2,
        Plain(command::info),
        "Details of the given commands.",
    )
    .flags(&[Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "docs",
        -2,
        Plain(command::docs),
        "Documentation of the given commands.",
    )
    .flags(&[Loading, Stale])
    .acl(&[C::Connection]),
    cmd(
        "help",
        2,
        Plain(command::help),
        "Lists COMMAND's subcommands.",
    )
    .flags(&[Loading, Stale])
    .acl(&[C::Connection]),
];

static CONFIG: &[CommandSpec] = &[
    cmd(
        "get",
        -3,
        Plain(config::get),
        "Reads parameters matching glob patterns.",
    )
    .flags(&[Admin, Noscript, Loading, Stale]),
    cmd("set", -4, Plain(config::set), "Changes runtime parameters.")
        .flags(&[Admin, Noscript, Loading, Stale]),
    cmd(
        "resetstat",
        2,
        Plain(config::resetstat),
        "Resets INFO's statistics.",
    )
    .flags(&[Admin, Noscript, Loading, Stale]),
    cmd(
        "rewrite",
        2,
        Plain(config::rewrite),
        "Writes the replication role into the --config file.",
    )
    .flags(&[Admin, Noscript, Loading, Stale]),
    cmd(
        "help",
        2,
        Plain(config::help),
        "Lists CONFIG's subcommands.",
    )
    .flags(&[Loading, Stale]),
];

static RL_LIMIT: &[CommandSpec] = &[
    cmd(
        "set",
        -3,
        Change(limits::limit_set),
        "Sets the limit of a scope.",
    )
    .flags(&[Write])
    .family(RlAdmin)
    .acl(&[C::Limits, C::Admin, C::Dangerous]),
    cmd(
        "get",
        -3,
        Plain(limits::limit_get),
        "The limit of a scope, as SET takes it.",
    )
    .flags(&[Readonly])
    .family(RlAdmin)
    .acl(&[C::Limits]),
    cmd(
        "del",
        -3,
        Change(limits::limit_del),
        "Deletes the limit of a scope.",
    )
    .flags(&[Write])
    .family(RlAdmin)
    .acl(&[C::Limits, C::Admin, C::Dangerous]),
    cmd(
        "list",
        -2,
        Plain(limits::limit_list),
        "Every scope and its limit.",
    )
    .flags(&[Readonly])
    .family(RlAdmin)
    .acl(&[C::Limits]),
    cmd(
        "help",
        2,
        Plain(limits::limit_help),
        "Lists RL.LIMIT's subcommands.",
    )
    .flags(&[Loading, Stale])
    .family(RlAdmin)
    .acl(&[C::Limits]),
];

static RL_TIER: &[CommandSpec] = &[
    cmd(
        "set",
        4,
        Change(limits::tier_set),
        "Puts a client in a tier.",
    )
    .flags(&[Write])
    .family(RlAdmin)
    .acl(&[C::Limits, C::Admin, C::Dangerous]),
    cmd("get", 3, Plain(limits::tier_get), "The tier of a client.")
        .flags(&[Readonly])
        .family(RlAdmin)
        .acl(&[C::Limits]),
    cmd(
        "del",
        3,
        Change(limits::tier_del),
        "Takes a client out of its tier.",
    )
    .flags(&[Write])
    .family(RlAdmin)
    .acl(&[C::Limits, C::Admin, C::Dangerous]),
    cmd(
        "help",
        2,
        Plain(limits::tier_help),
        "Lists RL.TIER's subcommands.",
    )
    .flags(&[Loading, Stale])
    .family(RlAdmin)
    .acl(&[C::Limits]),
];

static ACL: &[CommandSpec] = &[
    cmd(
        "setuser",
        -3,
        Change(acl::setuser),
        "Creates or changes a user.",
    )
    .flags(&[Write, Admin, Noscript, Loading, Stale]),
    cmd("deluser", -3, Change(acl::deluser), "Deletes users.")
        .flags(&[Write, Admin, Noscript, Loading, Stale]),
    cmd("getuser", 3, Plain(acl::getuser), "A user's rules.")
        .flags(&[Admin, Noscript, Loading, Stale]),
    cmd(
        "list",
        2,
        Plain(acl::list),
        "Every user, as ACL file lines.",
    )
    .flags(&[Admin, Noscript, Loading, Stale]),
    cmd("users", 2, Plain(acl::users), "The users' names.")
        .flags(&[Admin, Noscript, Loading, Stale]),
    cmd("whoami", 2, Plain(acl::whoami), "The connection's user.")
        .flags(&[Noscript, Loading, Stale]),
    cmd(
        "cat",
        -2,
        Plain(acl::cat),
        "The categories, or the commands of one.",
    )
    .flags(&[Noscript, Loading, Stale]),
    cmd(
        "log",
        -2,
        Plain(acl::log),
        "Refused commands, keys, channels and logins.",
    )
    .flags(&[Admin, Noscript, Loading, Stale]),
    cmd(
        "save",
        2,
        Plain(acl::save),
        "Writes the users to --aclfile.",
    )
    .flags(&[Admin, Noscript, Loading, Stale]),
    cmd(
        "load",
        2,
        Plain(acl::load),
        "Replaces the users with --aclfile's.",
    )
    .flags(&[Write, Admin, Noscript, Loading, Stale]),
    cmd("genpass", -2, Plain(acl::genpass), "A random password.")
        .flags(&[Noscript, Loading, Stale]),
    cmd(
        "dryrun",
        -4,
        Plain(acl::dryrun),
        "Whether a user may run a command.",
    )
    .flags(&[Admin, Noscript, Loading, Stale]),
    cmd("help", 2, Plain(acl::help), "Lists ACL's subcommands.").flags(&[Loading, Stale]),
];

static PUBSUB: &[CommandSpec] = &[
    cmd(
        "channels",
        -2,
        Plain(pubsub::channels),
        "The active channels.",
    )
    .flags(&[Pubsub, Loading, Stale]),
    cmd(
        "numsub",
        -2,
        Plain(pubsub::numsub),
        "Subscribers of the given channels.",
    )
    .flags(&[Pubsub, Loading, Stale]),
    cmd("numpat", 2, Plain(pubsub::numpat), "Pattern subscriptions.")
        .flags(&[Pubsub, Loading, Stale]),
    cmd(
        "help",
        2,
        Plain(pubsub::help),
        "Lists PUBSUB's subcommands.",
    )
    .flags(&[Loading, Stale]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::spec::Run;

    #[test]
    fn lookup_is_case_insensitive_and_rejects_unknown_and_long_names() {
        let name = |n: &[u8]| COMMANDS.lookup(n).map(|f| f.spec.name);
        assert_eq!(name(b"PING"), Some("ping"));
        assert_eq!(name(b"Rl.Check"), Some("rl.check"));
        assert!(COMMANDS.lookup(b"nope").is_none());
        assert!(COMMANDS.lookup(&[b'a'; 100]).is_none());
        assert!(COMMANDS.lookup(b"").is_none());
    }

    #[test]
    fn names_are_unique_lowercase_and_index_their_rows() {
        let mut names = COMMANDS.names();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(*n, n.to_ascii_lowercase());
            assert_eq!(COMMANDS.lookup(n.as_bytes()).map(|f| f.index), Some(i));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.rows().len());
        for row in COMMANDS.rows() {
            let mut subs: Vec<_> = row.subcommands.iter().map(|s| s.name).collect();
            subs.sort();
            subs.dedup();
            assert_eq!(subs.len(), row.subcommands.len(), "{}", row.name);
            // A container answers HELP, which its unknown-subcommand error points at.
            if matches!(row.run, Run::Container(_)) {
                assert!(row.subcommand(b"help").is_some(), "{}", row.name);
            }
        }
    }

    /// The row that decides a request: its subcommand's for a container.
    fn row_of(args: &[&str]) -> &'static CommandSpec {
        let found = COMMANDS.lookup(args[0].as_bytes()).expect("known");
        match (found.spec.run, args.get(1)) {
            (Run::Container(_), Some(sub)) => found
                .spec
                .subcommand(sub.as_bytes())
                .expect("known subcommand"),
            _ => found.spec,
        }
    }

    #[test]
    fn writes_are_what_a_replica_refuses() {
        let cases = [
            (&["RL.CHECK", "a", "b"][..], true),
            (&["RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1s"], true),
            (&["rl.limit", "get", "DEFAULT"], false),
            (&["RL.LIMIT", "LIST"], false),
            (&["RL.TIER", "GET", "a"], false),
            (&["RL.TIER", "HELP"], false),
            (&["RL.LIMIT", "HELP"], false),
            (&["RL.TIER", "DEL", "a"], true),
            (&["RL.PEEK", "a", "b"], false),
            (&["CL.THROTTLE", "k", "1", "1", "1"], true),
            (&["FLUSHALL"], true),
            (&["INFO"], false),
            (&["ROLE"], false),
            (&["INCR", "x"], true),
            (&["GET", "x"], false),
            (&["PUBLISH", "c", "m"], false),
        ];
        for (args, want) in cases {
            assert_eq!(row_of(args).flags.has(Write), want, "{args:?}");
        }
    }

    #[test]
    fn configuration_changes_are_the_replayable_rows() {
        for args in [
            &["RL.LIMIT", "SET"][..],
            &["RL.LIMIT", "DEL"],
            &["RL.TIER", "SET"],
            &["RL.TIER", "DEL"],
            &["ACL", "SETUSER"],
            &["ACL", "DELUSER"],
        ] {
            assert!(matches!(row_of(args).run, Run::Change(_)), "{args:?}");
        }
        let changes = COMMANDS
            .rows()
            .iter()
            .flat_map(|r| std::iter::once(r).chain(r.subcommands))
            .filter(|r| matches!(r.run, Run::Change(_)))
            .count();
        assert_eq!(changes, 6);
    }

    #[test]
    fn only_checks_prefetch_and_keyed_rows_name_their_keys() {
        for row in COMMANDS.rows() {
            if row.prefetch.is_some() {
                assert_eq!(row.keys, Keys::ONE, "{}", row.name);
            }
            if matches!(row.run, Run::Kv(_)) {
                assert!(row.keys.first > 0, "{}", row.name);
            }
        }
    }
}

#[cfg(test)]
mod acl_tests {
    use super::*;
    use crate::acl::{Category, Users};

    /// The categories the roles of docs/SECURITY.md are built on hold what they promise.
    #[test]
    fn categories_come_from_the_table() {
        let catalog = COMMANDS.catalog();
        let names = |c: Category| -> Vec<String> {
            catalog
                .in_category(c)
                .filter_map(|id| catalog.entry(id))
                .map(|e| e.name.clone())
                .collect()
        };
        assert_eq!(
            names(Category::RateLimit),
            ["rl.check", "rl.peek", "rl.explain", "cl.throttle"]
        );
        let limits = names(Category::Limits);
        for n in ["rl.limit|set", "rl.limit|get", "rl.tier|del", "rl.reset"] {
            assert!(limits.contains(&n.to_string()), "{n} in {limits:?}");
        }
        let admin = names(Category::Admin);
        for n in [
            "config|set",
            "replicaof",
            "rl.limit|set",
            "acl|setuser",
            "save",
            "client|kill",
        ] {
            assert!(admin.contains(&n.to_string()), "{n} in {admin:?}");
        }
        let dangerous = names(Category::Dangerous);
        assert!(dangerous.contains(&"flushall".to_string()));
        // Every command and subcommand has at least one category (so +@all is not the only
        // way to allow it).
        for id in 0..catalog.len() {
            let e = catalog.entry(id).expect("entry");
            assert!(
                e.categories != crate::acl::Categories::NONE || !e.subs.is_empty(),
                "{} has no category",
                e.name
            );
        }
        // A checker may check and nothing else that changes state.
        let users = Users::new(catalog.clone());
        let checker = users
            .set_user(b"checker", &[b"on", b">pw", b"+@rate_limit", b"~*"])
            .expect("valid rules");
        let may = |name: &[u8]| catalog.find(name).is_some_and(|id| checker.may_run(id));
        assert!(may(b"rl.check") && may(b"cl.throttle"));
        for n in [
            &b"rl.limit|set"[..],
            b"flushall",
            b"config|set",
            b"replicaof",
            b"set",
        ] {
            assert!(!may(n), "{}", String::from_utf8_lossy(n));
        }
    }
}
