//! Server commands: COMMAND, INFO, DBSIZE, FLUSHALL/FLUSHDB, TIME and CONFIG.
//!
//! INFO keeps Redis's section and field names (and `redis_version`) because monitoring tools and
//! client libraries parse them; ratelimitd's own figures are added under `rl_*` names.

use super::table::{CmdId, CommandSpec, COMMANDS};
use super::{text_reply, unknown_subcommand, Session};
use crate::cmd::connection::REDIS_COMPAT_VERSION;
use crate::server::Shared;
use bytes::Bytes;
use ratelimitd_protocol::parse::glob_match;
use ratelimitd_protocol::{Parse, ParseError, Reply};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

pub fn execute(
    id: CmdId,
    shared: &Shared,
    session: &mut Session,
    args: &[&[u8]],
) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    match id {
        CmdId::Command => command(&mut parse),
        CmdId::Info => {
            let mut sections = Vec::new();
            while let Some(s) = parse.try_next() {
                sections.push(String::from_utf8_lossy(s).to_ascii_lowercase());
            }
            Ok(text_reply(info(shared, &sections)))
        }
        CmdId::Dbsize => Ok(Reply::Integer(shared.engine.key_count() as i64)),
        CmdId::Flushall | CmdId::Flushdb => {
            // ASYNC and SYNC are accepted; dropping rate state is fast either way.
            if let Some(mode) = parse.try_next() {
                if !(mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC")) {
                    return Err(ParseError::Syntax);
                }
            }
            parse.finish().map_err(|_| ParseError::Syntax)?;
            shared.engine.flush_state();
            Ok(Reply::ok())
        }
        CmdId::Time => {
            let now = shared.engine.now();
            Ok(Reply::Array(vec![
                Reply::bulk((now / 1_000_000_000).to_string()),
                Reply::bulk((now % 1_000_000_000 / 1_000).to_string()),
            ]))
        }
        CmdId::Config => config(shared, session, &mut parse),
        _ => Err(ParseError::Syntax),
    }
}

fn command_info(c: &CommandSpec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(c.name),
        Reply::Integer(c.arity as i64),
        Reply::Set(
            c.flags
                .iter()
                .map(|f| Reply::Simple(Bytes::from_static(f.as_bytes())))
                .collect(),
        ),
        Reply::Integer(c.first_key),
        Reply::Integer(c.last_key),
        Reply::Integer(c.step),
        Reply::Set(vec![]),
        Reply::Set(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

fn command_docs(c: &CommandSpec) -> Reply {
    let group = if c.name.starts_with("rl.") || c.name.starts_with("cl.") {
        "ratelimit"
    } else {
        "server"
    };
    Reply::Map(vec![
        (Reply::bulk("summary"), Reply::bulk(c.summary)),
        (Reply::bulk("since"), Reply::bulk("0.1.0")),
        (Reply::bulk("group"), Reply::bulk(group)),
    ])
}

fn command(parse: &mut Parse) -> Result<Reply, ParseError> {
    let Some(sub) = parse.try_next() else {
        return Ok(Reply::Array(COMMANDS.iter().map(command_info).collect()));
    };
    if sub.eq_ignore_ascii_case(b"COUNT") {
        parse.finish()?;
        Ok(Reply::Integer(COMMANDS.len() as i64))
    } else if sub.eq_ignore_ascii_case(b"LIST") {
        Ok(Reply::Array(
            COMMANDS.iter().map(|c| Reply::bulk(c.name)).collect(),
        ))
    } else if sub.eq_ignore_ascii_case(b"INFO") {
        if parse.remaining() == 0 {
            return Ok(Reply::Array(COMMANDS.iter().map(command_info).collect()));
        }
        let mut out = Vec::new();
        while let Some(name) = parse.try_next() {
            out.push(
                super::table::lookup(name)
                    .map(command_info)
                    .unwrap_or(Reply::NullArray),
            );
        }
        Ok(Reply::Array(out))
    } else if sub.eq_ignore_ascii_case(b"DOCS") {
        let mut out = Vec::new();
        if parse.remaining() == 0 {
            for c in COMMANDS {
                out.push((Reply::bulk(c.name), command_docs(c)));
            }
        }
        while let Some(name) = parse.try_next() {
            if let Some(c) = super::table::lookup(name) {
                out.push((Reply::bulk(c.name), command_docs(c)));
            }
        }
        Ok(Reply::Map(out))
    } else if sub.eq_ignore_ascii_case(b"HELP") {
        parse.finish()?;
        Ok(super::help_reply(&[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands.",
            "LIST",
            "    Return the names of all commands.",
            "INFO [<command-name> ...]",
            "    Return details about the given commands, or all of them.",
            "DOCS [<command-name> ...]",
            "    Return documentation for the given commands, or all of them.",
        ]))
    } else {
        Err(unknown_subcommand(sub, "COMMAND"))
    }
}

pub fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident shared ... in pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn human(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

/// The INFO text for the requested sections (none, "default", "all" or "everything": all).
pub fn info(shared: &Shared, requested: &[String]) -> String {
    const ALL: [&str; 8] = [
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "keyspace",
    ];
    let want = |name: &str| {
        requested.is_empty()
            || requested
                .iter()
                .any(|r| r == name || r == "all" || r == "default" || r == "everything")
    };
    let stats = &shared.stats;
    let uptime = shared.started.elapsed().as_secs();
    let mut out = String::new();
    for section in ALL {
        if !want(section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match section {
            "server" => {
                let _ = write!(
                    out,
                    "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nratelimitd_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:{}\r\nconfig_file:\r\n",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    usize::BITS,
                    std::process::id(),
                    shared.run_id,
                    shared.port,
                    uptime / 86_400,
                    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
                );
            }
            "clients" => {
                let _ = write!(
                    out,
                    "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
                    shared.clients.len(),
                    shared.config.maxclients
                );
            }
            "memory" => {
                let used = shared.engine.memory_bytes();
                let rss = rss_bytes();
                let (max_keys, maxmemory, policy) = shared.engine.bounds();
                let maxmemory = maxmemory.unwrap_or(0);
                let (arena_mapped, arena_used) = ratelimitd_engine::arena::usage();
                let _ = write!(
                    out,
                    "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nmaxmemory:{maxmemory}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmax_keys:{}\r\nmem_allocator:libc\r\nrl_huge_pages:{}\r\nrl_huge_page_arena_mapped:{arena_mapped}\r\nrl_huge_page_arena_used:{arena_used}\r\n",
                    human(used),
                    human(rss),
                    human(maxmemory),
                    policy.name(),
                    max_keys.unwrap_or(0),
                    if ratelimitd_engine::arena::enabled() { "yes" } else { "no" },
                );
            }
            "stats" => {
                let engine_stats = shared.engine.stats();
                let _ = write!(
                    out,
                    "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nunknown_commands:{}\r\nprotocol_errors:{}\r\nrl_checks_allowed:{}\r\nrl_checks_denied:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nrefused_keys:{}\r\n",
                    stats.connections_received.load(Ordering::Relaxed),
                    stats.commands_processed.load(Ordering::Relaxed),
                    stats.rejected_connections.load(Ordering::Relaxed),
                    stats.unknown_commands.load(Ordering::Relaxed),
                    stats.protocol_errors.load(Ordering::Relaxed),
                    stats.checks_allowed.load(Ordering::Relaxed),
                    stats.checks_denied.load(Ordering::Relaxed),
                    engine_stats.expired,
                    engine_stats.evicted,
                    engine_stats.refused,
                );
                crate::cmd::replication::info_stats(shared, &mut out);
            }
            "persistence" => crate::settings::info_persistence(shared, &mut out),
            "replication" => crate::cmd::replication::info_replication(shared, &mut out),
            "cpu" => {
                out.push_str("# CPU\r\n");
            }
            "keyspace" => {
                out.push_str("# Keyspace\r\n");
                let keys = shared.engine.key_count();
                if keys > 0 {
                    let _ = write!(out, "db0:keys={keys},expires={keys},avg_ttl=0\r\n");
                }
            }
            _ => {}
        }
    }
    out
}

/// Parameters CONFIG GET answers: what clients probe at connect (`save`, `appendonly`,
/// `databases`) and the daemon's real settings.
fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let c = &shared.config;
    vec![
        ("appendonly", "no".into()),
        ("bind", c.bind.to_string()),
        ("databases", "1".into()),
        ("io-threads", c.threads.unwrap_or(0).to_string()),
        ("maxclients", c.maxclients.to_string()),
        ("port", shared.port.to_string()),
        ("proto-max-bulk-len", c.max_bulk_len.to_string()),
        ("save", {
            let every = shared.persist.save_interval.load(Ordering::Relaxed);
            if every == 0 {
                String::new()
            } else {
                format!("{every} 1")
            }
        }),
        ("timeout", "0".into()),
    ]
}

fn config(shared: &Shared, _session: &mut Session, parse: &mut Parse) -> Result<Reply, ParseError> {
    let sub = parse.next_bytes()?;
    if sub.eq_ignore_ascii_case(b"GET") {
        if parse.remaining() == 0 {
            return Err(ParseError::WrongArity("config|get".into()));
        }
        let mut params = config_params(shared);
        // The runtime knobs (src/settings.rs) answer for themselves.
        for knob in crate::settings::KNOBS {
            params.retain(|(name, _)| *name != knob.name);
            params.push((knob.name, (knob.get)(shared)));
        }
        let mut out: Vec<(Reply, Reply)> = Vec::new();
        while let Some(pattern) = parse.try_next() {
            let pattern = pattern.to_ascii_lowercase();
            for (name, value) in &params {
                if glob_match(&pattern, name.as_bytes())
                    && !out.iter().any(|(k, _)| *k == Reply::bulk(*name))
                {
                    out.push((Reply::bulk(*name), Reply::bulk(value.clone())));
                }
            }
        }
        Ok(Reply::Map(out))
    } else if sub.eq_ignore_ascii_case(b"SET") {
        crate::settings::config_set(shared, parse)
    } else if sub.eq_ignore_ascii_case(b"RESETSTAT") {
        parse.finish()?;
        shared.stats.reset();
        Ok(Reply::ok())
    } else if sub.eq_ignore_ascii_case(b"REWRITE") {
        // Sentinel sends this after every SLAVEOF; without --config there is nothing to keep,
        // and an OK lets its MULTI/EXEC read as a success.
        parse.finish()?;
        crate::rewrite::rewrite(shared)
            .map(|_| Reply::ok())
            .map_err(|e| ParseError::Invalid(format!("Rewriting config file: {e}")))
    } else {
        Err(unknown_subcommand(sub, "CONFIG"))
    }
}
