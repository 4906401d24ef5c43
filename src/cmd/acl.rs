//! ACL and its subcommands, as Redis 7 answers them: SETUSER, DELUSER, GETUSER, LIST, USERS,
//! WHOAMI, CAT, LOG, SAVE, LOAD, GENPASS, DRYRUN, HELP.
//!
//! SETUSER and DELUSER are changes of the configuration, like RL.LIMIT SET: logged durably in
//! `--dir` (as the rules that rebuild the user, passwords as SHA-256, never in clear), fed to
//! the replicas, and replayed at start. So users survive a restart and a failover without
//! ACL SAVE; `--aclfile` is where ACL SAVE writes them and ACL LOAD reads them, in Redis's
//! format.

use super::dispatch::{permitted, replay};
use super::durable::change;
use super::reply::help_reply;
use super::spec::{sub_args, Ctx, Run};
use crate::acl::file;
use crate::acl::users::SetUserError;
use crate::acl::{Category, User};
use crate::persist::{ChangeKind, RecordKey};
use crate::state::Shared;
use crate::text::shorten;
use bytes::Bytes;
use ratelimitd_protocol::{ParseError, Reply};

fn acl_error(e: SetUserError) -> ParseError {
    let text = e.to_string();
    ParseError::Invalid(text.strip_prefix("ERR ").unwrap_or(&text).to_string())
}

/// The arguments that rebuild `user`: what the log and the replicas receive.
fn setuser_args(user: &User) -> Vec<Vec<u8>> {
    let mut out = vec![
        b"ACL".to_vec(),
        b"SETUSER".to_vec(),
        user.name.as_bytes().to_vec(),
    ];
    out.extend(user.rules().into_iter().map(String::into_bytes));
    out
}

/// ACL SETUSER name [rule ...]: all rules or none.
pub fn setuser(shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let name = parse.next_bytes()?;
    let users = &shared.users;
    let _one_at_a_time = users.lock_changes();
    let user = users.build(name, &args[3..]).map_err(acl_error)?;
    let logged = setuser_args(&user);
    let logged: Vec<&[u8]> = logged.iter().map(Vec::as_slice).collect();
    change(
        shared,
        &logged,
        RecordKey::User(name.to_vec()),
        ChangeKind::Set,
        || false,
        || users.put(user),
    )?;
    Ok(Reply::ok())
}

/// ACL DELUSER name [name ...]: how many existed. Their connections are closed.
pub fn deluser(shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let users = &shared.users;
    let names = &args[2..];
    if names.iter().any(|n| *n == b"default") {
        return Err(acl_error(SetUserError::DefaultUser));
    }
    let _one_at_a_time = users.lock_changes();
    let mut deleted = 0;
    for name in names {
        let logged: [&[u8]; 3] = [b"ACL", b"DELUSER", name];
        let absent = || users.get(&String::from_utf8_lossy(name)).is_none();
        let removed = change(
            shared,
            &logged,
            RecordKey::User(name.to_vec()),
            ChangeKind::Del,
            absent,
            || users.del_user(name),
        )?
        .map_err(acl_error)?;
        if removed {
            close_connections_of(shared, name);
        }
        deleted += i64::from(removed);
    }
    Ok(Reply::Integer(deleted))
}

/// Close every connection signed in as `name` (RESP and memcached), as Redis does when a
/// user is deleted: one that sits idle or subscribed would otherwise keep its rights.
fn close_connections_of(shared: &Shared, name: &[u8]) {
    for client in shared.clients.snapshot() {
        let same = client.user.lock().is_ok_and(|u| u.as_bytes() == name);
        if same {
            client.kill();
        }
    }
}

/// ACL GETUSER name: flags, passwords (as hashes), commands, keys, channels, selectors.
pub fn getuser(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let name = sub_args(args).next_bytes()?;
    let Some(user) = ctx.shared.users.get(&String::from_utf8_lossy(name)) else {
        return Ok(Reply::Null);
    };
    let list = |v: Vec<String>| Reply::Array(v.into_iter().map(Reply::bulk).collect());
    Ok(Reply::Map(vec![
        (
            Reply::bulk("flags"),
            list(user.flags().into_iter().map(str::to_string).collect()),
        ),
        (Reply::bulk("passwords"), list(user.password_hashes())),
        (Reply::bulk("commands"), Reply::bulk(user.command_text())),
        (Reply::bulk("keys"), Reply::bulk(user.keys_text())),
        (Reply::bulk("channels"), Reply::bulk(user.channels_text())),
        (Reply::bulk("selectors"), Reply::Array(vec![])),
    ]))
}

/// ACL LIST: every user as the rules that describe it.
pub fn list(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Array(
        ctx.shared
            .users
            .all()
            .iter()
            .map(|u| Reply::bulk(u.describe()))
            .collect(),
    ))
}

/// ACL USERS: the names.
pub fn users(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Array(
        ctx.shared
            .users
            .all()
            .iter()
            .map(|u| Reply::bulk(u.name.clone()))
            .collect(),
    ))
}

/// ACL WHOAMI: the connection's user.
pub fn whoami(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::bulk(ctx.session.user.name.clone()))
}

/// ACL CAT [category]: the categories, or the commands of one.
pub fn cat(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let Some(name) = parse.try_next() else {
        return Ok(Reply::Array(
            Category::ALL
                .iter()
                .map(|c| Reply::bulk(c.name()))
                .collect(),
        ));
    };
    parse.finish()?;
    let category = Category::from_name(name)
        .ok_or_else(|| ParseError::Invalid(format!("Unknown category '{}'", shorten(name, 64))))?;
    let catalog = ctx.shared.users.catalog();
    Ok(Reply::Array(
        catalog
            .in_category(category)
            .filter_map(|id| catalog.entry(id))
            .map(|e| Reply::bulk(e.name.clone()))
            .collect(),
    ))
}

/// ACL LOG [count | RESET]: the newest refusals (10 by default).
pub fn log(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let mut count = 10;
    if let Some(arg) = parse.try_next() {
        parse.finish()?;
        if arg.eq_ignore_ascii_case(b"RESET") {
            ctx.shared.users.log_reset();
            return Ok(Reply::ok());
        }
        count = ratelimitd_protocol::parse::parse_u64(arg)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(ParseError::NotInteger)?;
    }
    let entries = ctx.shared.users.log_entries(count);
    Ok(Reply::Array(
        entries
            .into_iter()
            .map(|e| {
                let age = e.created.elapsed().as_secs_f64();
                Reply::Map(vec![
                    (Reply::bulk("count"), Reply::Integer(e.count as i64)),
                    (Reply::bulk("reason"), Reply::bulk(e.reason.name())),
                    (Reply::bulk("context"), Reply::bulk(e.context)),
                    (Reply::bulk("object"), Reply::bulk(e.object)),
                    (Reply::bulk("username"), Reply::bulk(e.username)),
                    (Reply::bulk("age-seconds"), Reply::bulk(format!("{age:.3}"))),
                    (Reply::bulk("client-info"), Reply::bulk(e.client_info)),
                    (Reply::bulk("entry-id"), Reply::Integer(e.entry_id as i64)),
                    (
                        Reply::bulk("timestamp-created"),
                        Reply::Integer(e.created_unix_ms as i64),
                    ),
                    (
                        Reply::bulk("timestamp-last-updated"),
                        Reply::Integer(e.updated_unix_ms as i64),
                    ),
                ])
            })
            .collect(),
    ))
}

fn acl_file(shared: &Shared) -> Result<&std::path::Path, ParseError> {
    shared.config.aclfile.as_deref().ok_or_else(|| {
        ParseError::Invalid(
            "This daemon has no --aclfile: users are kept in --dir on every change, and ACL SAVE and ACL LOAD need a file".into(),
        )
    })
}

/// ACL SAVE: every user into the `--aclfile`, replaced whole.
pub fn save(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let path = acl_file(ctx.shared)?;
    let text = file::format(&ctx.shared.users.all());
    let tmp = crate::durable_file::unique_tmp(path);
    crate::durable_file::replace(&tmp, path, text.as_bytes()).map_err(|e| {
        ParseError::Invalid(format!(
            "There was an error trying to save the ACLs. Please check the server logs for more information: {e}"
        ))
    })?;
    Ok(Reply::ok())
}

/// Apply an ACL file's users, replacing every user: what ACL LOAD does at runtime and the
/// start does with `--aclfile`. The whole file is checked before anything changes. Each change
/// is logged and replicated as ACL SETUSER / DELUSER are.
pub fn load_file(shared: &Shared) -> Result<usize, String> {
    let Some(path) = shared.config.aclfile.as_deref() else {
        return Ok(0);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let wanted = file::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let users = &shared.users;
    // Every user is built first: a bad rule anywhere refuses the file and changes nothing.
    for (name, rules) in &wanted {
        let mut rules: Vec<&[u8]> = rules.iter().map(|r| r.as_bytes()).collect();
        rules.insert(0, b"reset");
        users
            .build(name.as_bytes(), &rules)
            .map_err(|e| format!("{}: user '{name}': {e}", path.display()))?;
    }
    let run = |args: Vec<Vec<u8>>| {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        replay(shared, &super::table::COMMANDS, &args).map_err(|e| e.to_string())
    };
    for user in users.all() {
        if user.name != "default" && !wanted.iter().any(|(n, _)| *n == user.name) {
            run(vec![
                b"ACL".to_vec(),
                b"DELUSER".to_vec(),
                user.name.clone().into_bytes(),
            ])?;
        }
    }
    if !wanted.iter().any(|(n, _)| n == "default") {
        // A file without the default user leaves it as at start: open, or with
        // --requirepass's password (never open because a file was loaded).
        let fresh = User::default_user(users.catalog());
        let mut args = setuser_args(&fresh);
        if let Some(pass) = &shared.config.requirepass {
            // resetpass also clears the default rules' nopass.
            args.push(b"resetpass".to_vec());
            args.push(format!(">{pass}").into_bytes());
        }
        run(args)?;
    } else if shared.config.requirepass.is_some() {
        tracing::warn!(
            "the ACL file sets the default user: --requirepass is not applied (as in Redis)"
        );
    }
    for (name, rules) in &wanted {
        let mut args = vec![
            b"ACL".to_vec(),
            b"SETUSER".to_vec(),
            name.clone().into_bytes(),
        ];
        args.push(b"reset".to_vec());
        args.extend(rules.iter().map(|r| r.clone().into_bytes()));
        run(args)?;
    }
    Ok(wanted.len())
}

/// ACL LOAD: replace every user with the `--aclfile`'s.
pub fn load(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    acl_file(ctx.shared)?;
    load_file(ctx.shared).map_err(ParseError::Invalid)?;
    Ok(Reply::ok())
}

/// ACL GENPASS [bits]: a random password, 256 bits by default, in hex.
pub fn genpass(_: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = sub_args(args);
    let bits = match parse.try_next() {
        Some(b) => ratelimitd_protocol::parse::parse_u64(b)
            .filter(|&n| (1..=4096).contains(&n))
            .ok_or_else(|| {
                ParseError::Invalid("ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096".into())
            })?,
        None => 256,
    };
    parse.finish()?;
    let bytes = (bits as usize).div_ceil(8);
    let mut buf = vec![0u8; bytes];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| ParseError::Invalid(format!("no randomness: {e}")))?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Reply::bulk(hex[..(bits as usize).div_ceil(4)].to_string()))
}

/// ACL DRYRUN user command [arg ...]: whether the user may run that request.
pub fn dryrun(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let name = args[2];
    let request = &args[3..];
    let Some(user) = ctx.shared.users.get(&String::from_utf8_lossy(name)) else {
        return Err(ParseError::Invalid(format!(
            "User '{}' not found",
            shorten(name, 64)
        )));
    };
    let Some(found) = ctx.commands.lookup(request[0]) else {
        return Err(ParseError::Invalid(format!(
            "Command '{}' not found",
            shorten(request[0], 64)
        )));
    };
    let (row, sub) = match (found.spec.run, request.get(1)) {
        (Run::Container(_), Some(s)) => match found.spec.subcommand_at(s) {
            Some((pos, row)) => (row, Some(pos)),
            None => (found.spec, None),
        },
        _ => (found.spec, None),
    };
    if !row.arity_ok(request.len()) {
        return Err(ParseError::WrongArity(row.name.to_string()));
    }
    let catalog = ctx.shared.users.catalog();
    Ok(
        match permitted(catalog, &user, found.index, sub, row, request) {
            Ok(()) => Reply::ok(),
            Err(denied) => {
                let text = denied.message(&user.name);
                Reply::Bulk(Bytes::from(
                    text.strip_prefix("NOPERM ").unwrap_or(&text).to_string(),
                ))
            }
        },
    )
}

/// ACL HELP.
pub fn help(_: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing it.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
    ]))
}
