//! COMMAND and its subcommands: the command table described to clients (redis-cli's hints,
//! client libraries' key routing), read from the table itself so the two cannot disagree.

use super::reply::help_reply;
use super::spec::{sub_args, CommandSpec, Ctx};
use crate::counters::Family;
use bytes::Bytes;
use ratelimitd_protocol::{ParseError, Reply};

/// COMMAND INFO's array for one row; `container` names a subcommand's container.
fn info_of(c: &CommandSpec, container: Option<&str>) -> Reply {
    let name = match container {
        Some(parent) => format!("{parent}|{}", c.name),
        None => c.name.to_string(),
    };
    Reply::Array(vec![
        Reply::bulk(name),
        Reply::Integer(c.arity as i64),
        Reply::Set(
            c.flags
                .redis_names()
                .map(|f| Reply::Simple(Bytes::from_static(f.as_bytes())))
                .collect(),
        ),
        Reply::Integer(c.keys.first),
        Reply::Integer(c.keys.last),
        Reply::Integer(c.keys.step),
        Reply::Set(
            c.categories()
                .iter()
                .map(|a| Reply::Simple(Bytes::from(format!("@{}", a.name()))))
                .collect(),
        ),
        Reply::Set(vec![]),
        Reply::Array(vec![]),
        Reply::Array(
            c.subcommands
                .iter()
                .map(|s| info_of(s, Some(c.name)))
                .collect(),
        ),
    ])
}

fn docs_of(c: &CommandSpec) -> Reply {
    let group = match c.family {
        Family::RlCheck | Family::RlAdmin | Family::Cell => "ratelimit",
        Family::Server => "server",
    };
    Reply::Map(vec![
        (Reply::bulk("summary"), Reply::bulk(c.summary)),
        (Reply::bulk("since"), Reply::bulk("0.1.0")),
        (Reply::bulk("group"), Reply::bulk(group)),
    ])
}

/// COMMAND with no subcommand: every command.
pub fn all(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Array(
        ctx.commands
            .rows()
            .iter()
            .map(|c| info_of(c, None))
            .collect(),
    ))
}

/// COMMAND COUNT.
pub fn count(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Integer(ctx.commands.rows().len() as i64))
}

/// COMMAND LIST.
pub fn list(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Array(
        ctx.commands
            .rows()
            .iter()
            .map(|c| Reply::bulk(c.name))
            .collect(),
    ))
}

/// COMMAND INFO [name ...].
pub fn info(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    if parse.remaining() == 0 {
        return all(ctx, &args[..1]);
    }
    let mut out = Vec::new();
    while let Some(name) = parse.try_next() {
        out.push(
            ctx.commands
                .lookup(name)
                .map(|f| info_of(f.spec, None))
                .unwrap_or(Reply::NullArray),
        );
    }
    Ok(Reply::Array(out))
}

/// COMMAND DOCS [name ...].
pub fn docs(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let mut out = Vec::new();
    if parse.remaining() == 0 {
        for c in ctx.commands.rows() {
            out.push((Reply::bulk(c.name), docs_of(c)));
        }
    }
    while let Some(name) = parse.try_next() {
        if let Some(f) = ctx.commands.lookup(name) {
            out.push((Reply::bulk(f.spec.name), docs_of(f.spec)));
        }
    }
    Ok(Reply::Map(out))
}

/// COMMAND HELP.
pub fn help(_: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
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
}
