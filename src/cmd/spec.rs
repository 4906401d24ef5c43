//! What a command is: the row type of the command table ([`CommandSpec`]), the context a
//! handler runs with ([`Ctx`]), and the table's lookup ([`Commands`]).
//!
//! A row names everything about a command in one place: its name, Redis arity, flags, ACL
//! categories, key positions, the handler that runs it, which key a pipelined request may
//! prefetch, the latency family it is timed under, and its subcommands. Dispatch
//! (src/cmd/dispatch.rs), COMMAND INFO, the connection's look-ahead and the metrics all read
//! the row; nothing else matches on a command's name.

use super::session::Session;
use crate::acl::catalog::Described;
use crate::acl::{Catalog, Categories, Category};
use crate::counters::{Family, LocalCounters};
use crate::state::Shared;
use ratelimitd_engine::{KvTxn, Nanos, Prefetched};
use ratelimitd_protocol::{ParseError, Reply};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The context one request runs in.
pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub session: &'a mut Session,
    /// What this connection counted since its last flush.
    pub counters: &'a mut LocalCounters,
    /// When the request started (engine clock), if the connection read it: one reading
    /// serves both the check's "now" and the latency metric (a TSC read costs ~20 ns on a VM,
    /// a tenth of a pipelined check). None: the engine reads its own clock.
    pub now: Option<Nanos>,
    /// The fingerprint of the request's key, if the connection prefetched it (a pipelined
    /// check, see [`Prefetch`]): the check takes it instead of hashing the key again.
    pub prefetched: Option<Prefetched>,
    /// The command table: COMMAND describes it, EXEC looks its queued commands up in it.
    pub commands: &'static Commands,
}

/// A command's handler: validates its arguments and answers. `Err` becomes `-ERR ...`.
pub type Handler = fn(&mut Ctx<'_>, &[&[u8]]) -> Result<Reply, ParseError>;

/// A key-value command's handler: it runs inside a transaction that holds its keys, so that
/// EXEC can run several of them atomically together. `max_value` is `--max-value-size`.
pub type KvHandler = fn(&mut KvTxn<'_>, &[&[u8]], usize) -> Reply;

/// A change to the limits or tiers: it needs only the shared state, so that the limits log
/// at start, the config file's tables and a primary's replication stream apply it through
/// the code that serves the live command (`dispatch::replay`).
pub type ChangeHandler = fn(&Shared, &[&[u8]]) -> Result<Reply, ParseError>;

/// How a command runs.
#[derive(Clone, Copy)]
pub enum Run {
    Plain(Handler),
    /// A limit or tier change, which can also be replayed.
    Change(ChangeHandler),
    /// Inside an engine transaction over the row's keys.
    Kv(KvHandler),
    /// A container: `args[1]` names one of the row's subcommands. The handler, if any, answers
    /// the bare form (COMMAND with no subcommand).
    Container(Option<Handler>),
}

/// One command flag: Redis's (reported by COMMAND INFO) or one of ours, which dispatch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Write,
    Readonly,
    Denyoom,
    Admin,
    Pubsub,
    Noscript,
    Loading,
    Stale,
    SkipSlowlog,
    Fast,
    NoAuth,
    MayReplicate,
    NoMulti,
    AllowBusy,
    NoAsyncLoading,
    /// Ours: runs at once inside MULTI instead of being queued (MULTI, EXEC, DISCARD, WATCH,
    /// QUIT).
    TxControl,
    /// Ours: allowed on a RESP2 connection in subscribed mode.
    Subscribed,
    /// Ours: acts on the whole key space, so EXEC runs it between the transactions over keys
    /// (FLUSHALL, FLUSHDB, DBSIZE).
    WholeKeyspace,
    /// Ours: an arity error discards the transaction with EXECABORT (EXEC).
    EndsTx,
}

impl Flag {
    /// The flag's name in COMMAND INFO, or None for ours.
    pub fn redis_name(self) -> Option<&'static str> {
        Some(match self {
            Flag::Write => "write",
            Flag::Readonly => "readonly",
            Flag::Denyoom => "denyoom",
            Flag::Admin => "admin",
            Flag::Pubsub => "pubsub",
            Flag::Noscript => "noscript",
            Flag::Loading => "loading",
            Flag::Stale => "stale",
            Flag::SkipSlowlog => "skip_slowlog",
            Flag::Fast => "fast",
            Flag::NoAuth => "no_auth",
            Flag::MayReplicate => "may_replicate",
            Flag::NoMulti => "no_multi",
            Flag::AllowBusy => "allow_busy",
            Flag::NoAsyncLoading => "no_async_loading",
            Flag::TxControl | Flag::Subscribed | Flag::WholeKeyspace | Flag::EndsTx => return None,
        })
    }
}

/// A set of [`Flag`]s; [`Flags::of`] builds one in a `static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    bits: u32,
    /// As written in the row, for COMMAND INFO's order.
    list: &'static [Flag],
}

impl Flags {
    pub const NONE: Flags = Flags::of(&[]);

    pub const fn of(list: &'static [Flag]) -> Flags {
        let mut bits = 0;
        let mut i = 0;
        while i < list.len() {
            bits |= 1 << list[i] as u32;
            i += 1;
        }
        Flags { bits, list }
    }

    #[inline]
    pub fn has(self, flag: Flag) -> bool {
        self.bits & (1 << flag as u32) != 0
    }

    /// The flags COMMAND INFO reports, in the row's order.
    pub fn redis_names(self) -> impl Iterator<Item = &'static str> {
        self.list.iter().filter_map(|f| f.redis_name())
    }
}

/// Key positions as Redis's legacy key spec: first and last key argument (negative: from the
/// end) and the step between keys. (0, 0, 0): no keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub first: i64,
    pub last: i64,
    pub step: i64,
}

impl Keys {
    pub const NONE: Keys = Keys {
        first: 0,
        last: 0,
        step: 0,
    };
    /// The first argument is the key.
    pub const ONE: Keys = Keys {
        first: 1,
        last: 1,
        step: 1,
    };
    /// Every argument is a key.
    pub const ALL: Keys = Keys {
        first: 1,
        last: -1,
        step: 1,
    };

    /// The keys a request names.
    pub fn of<'a>(self, args: &'a [&'a [u8]]) -> Vec<&'a [u8]> {
        self.iter(args).collect()
    }

    /// The keys a request names, without collecting them.
    pub fn iter<'a>(self, args: &'a [&'a [u8]]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let argc = args.len() as i64;
        let last = if self.first <= 0 || self.step <= 0 {
            -1
        } else if self.last < 0 {
            argc + self.last
        } else {
            self.last.min(argc - 1)
        };
        (self.first.max(1)..=last)
            .step_by(self.step.max(1) as usize)
            .filter_map(|i| args.get(i as usize).copied())
    }
}

/// Which arguments of a pub/sub command are channels (checked against a user's `&patterns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    None,
    /// Every argument is a channel name (SUBSCRIBE).
    All,
    /// Every argument is a pattern, which must be one of the user's as written (PSUBSCRIBE).
    AllPatterns,
    /// The first argument is a channel name (PUBLISH).
    First,
}

/// Which key of a pipelined request the connection prefetches before running it (so that
/// with millions of keys the cache misses of a pipeline overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// An RL.CHECK key: the client (argument 1) and the endpoint (argument 2).
    ClientEndpoint,
    /// A CL.THROTTLE key (argument 1).
    Throttle,
}

/// One command's row.
pub struct CommandSpec {
    /// Lowercase name (for a subcommand, without its container's: `get` of `config`).
    pub name: &'static str,
    /// Redis arity: N means exactly N arguments including the name (and, for a subcommand,
    /// the container's name); -N means at least N.
    pub arity: i32,
    pub flags: Flags,
    /// ACL categories beyond those the flags imply (see [`CommandSpec::categories`]).
    pub acl: Categories,
    pub keys: Keys,
    pub channels: Channels,
    pub run: Run,
    pub prefetch: Option<Prefetch>,
    /// The latency histogram it is timed under.
    pub family: Family,
    /// One line for COMMAND DOCS.
    pub summary: &'static str,
    pub subcommands: &'static [CommandSpec],
}

/// A row with no flags, keys, prefetch or subcommands, timed as a server command; the
/// builder methods below add the rest.
pub const fn cmd(name: &'static str, arity: i32, run: Run, summary: &'static str) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: Flags::NONE,
        acl: Categories::NONE,
        keys: Keys::NONE,
        channels: Channels::None,
        run,
        prefetch: None,
        family: Family::Server,
        summary,
        subcommands: &[],
    }
}

impl CommandSpec {
    pub const fn flags(mut self, list: &'static [Flag]) -> CommandSpec {
        self.flags = Flags::of(list);
        self
    }

    /// ACL categories of its own, beyond those its flags imply.
    pub const fn acl(mut self, list: &'static [Category]) -> CommandSpec {
        self.acl = Categories::of(list);
        self
    }

    pub const fn channels(mut self, channels: Channels) -> CommandSpec {
        self.channels = channels;
        self
    }

    pub const fn keys(mut self, keys: Keys) -> CommandSpec {
        self.keys = keys;
        self
    }

    pub const fn family(mut self, family: Family) -> CommandSpec {
        self.family = family;
        self
    }

    pub const fn prefetch(mut self, prefetch: Prefetch) -> CommandSpec {
        self.prefetch = Some(prefetch);
        self
    }

    pub const fn subcommands(mut self, subs: &'static [CommandSpec]) -> CommandSpec {
        self.subcommands = subs;
        self
    }

    /// Whether `argc` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        (arity > 0 && argc == arity) || (arity < 0 && argc >= -arity)
    }

    /// The subcommand named `name` (ASCII case-insensitively), if this is a container.
    pub fn subcommand(&'static self, name: &[u8]) -> Option<&'static CommandSpec> {
        self.subcommand_at(name).map(|(_, s)| s)
    }

    /// The subcommand named `name` and its position among the container's.
    pub fn subcommand_at(&'static self, name: &[u8]) -> Option<(usize, &'static CommandSpec)> {
        self.subcommands
            .iter()
            .enumerate()
            .find(|(_, s)| s.name.as_bytes().eq_ignore_ascii_case(name))
    }

    /// Its ACL categories: those its flags imply, as Redis derives them (`write` → `@write`,
    /// `readonly` → `@read`, `admin` → `@admin @dangerous`, `pubsub` → `@pubsub`, `fast` →
    /// `@fast`, otherwise `@slow`), and its own. A container has none: its subcommands do.
    pub fn categories(&self) -> Categories {
        if matches!(self.run, Run::Container(_)) {
            return self.acl;
        }
        let mut list = Vec::new();
        let implied = [
            (Flag::Write, Category::Write),
            (Flag::Readonly, Category::Read),
            (Flag::Admin, Category::Admin),
            (Flag::Admin, Category::Dangerous),
            (Flag::Pubsub, Category::Pubsub),
            (Flag::Fast, Category::Fast),
        ];
        for (flag, cat) in implied {
            if self.flags.has(flag) {
                list.push(cat);
            }
        }
        if !self.flags.has(Flag::Fast) {
            list.push(Category::Slow);
        }
        list.extend(self.acl.iter());
        Category::ALL.into_iter().fold(Categories::NONE, |set, c| {
            if list.contains(&c) {
                set.with(c)
            } else {
                set
            }
        })
    }
}

/// A command found by name: its row and its index in the table (the counters' slot).
#[derive(Clone, Copy)]
pub struct Found {
    pub index: usize,
    pub spec: &'static CommandSpec,
}

/// Name → index, hashed with ahash: every request looks its command up here, and SipHash
/// (std's default) was ~1.3 % of a pipelined check. The names are ours, so there is nothing
/// to defend against hash flooding.
type Index = HashMap<&'static [u8], usize, ahash::RandomState>;

/// The command table.
pub struct Commands {
    rows: &'static [CommandSpec],
    index: OnceLock<Index>,
}

impl Commands {
    pub const fn new(rows: &'static [CommandSpec]) -> Commands {
        Commands {
            rows,
            index: OnceLock::new(),
        }
    }

    pub fn rows(&self) -> &'static [CommandSpec] {
        self.rows
    }

    /// The names in table order: a command's index is its position.
    pub fn names(&self) -> Vec<&'static str> {
        self.rows.iter().map(|c| c.name).collect()
    }

    /// What ACL rules can name: every row and subcommand, with its categories.
    pub fn catalog(&self) -> Catalog {
        let described: Vec<Described<'_>> = self
            .rows
            .iter()
            .map(|c| Described {
                name: c.name,
                categories: c.categories(),
                subs: c
                    .subcommands
                    .iter()
                    .map(|s| (s.name, s.categories()))
                    .collect(),
            })
            .collect();
        Catalog::new(&described)
    }

    /// The counters' slot of an unknown command (one past the last row).
    pub fn unknown_index(&self) -> usize {
        self.rows.len()
    }

    /// Find a command by name, ASCII case-insensitively, without allocating.
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<Found> {
        let mut buf = [0u8; 32];
        let lower = buf.get_mut(..name.len())?;
        for (dst, src) in lower.iter_mut().zip(name) {
            *dst = src.to_ascii_lowercase();
        }
        let index = self.index().get(&*lower).copied()?;
        Some(Found {
            index,
            spec: self.rows.get(index)?,
        })
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            self.rows
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.as_bytes(), i))
                .collect()
        })
    }
}

/// A cursor over a subcommand's arguments, positioned after the subcommand; its errors name
/// the container (`wrong number of arguments for 'client' command`), as Redis's do.
pub fn sub_args<'a>(args: &'a [&'a [u8]]) -> ratelimitd_protocol::Parse<'a> {
    let mut parse = ratelimitd_protocol::Parse::new(args);
    let _subcommand = parse.try_next();
    parse
}
