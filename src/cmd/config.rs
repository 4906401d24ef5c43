//! CONFIG and its subcommands, and the runtime knobs: what CONFIG GET reads and CONFIG SET
//! changes while the daemon runs (the log level, snapshot interval, memory bounds, the
//! min-replicas rule), and CONFIG REWRITE, which Sentinel sends after every SLAVEOF.

use super::reply::help_reply;
use super::spec::{sub_args, Ctx};
use crate::state::Shared;
use crate::text::shorten;
use ratelimitd_protocol::parse::glob_match;
use ratelimitd_protocol::{ParseError, Reply};
use std::sync::atomic::Ordering;

/// CONFIG GET pattern [pattern ...].
pub fn get(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let shared = ctx.shared;
    let mut parse = sub_args(args);
    let mut params = fixed_params(shared);
    // The runtime knobs answer for themselves.
    for knob in KNOBS {
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
}

/// CONFIG RESETSTAT: INFO's statistics start again from zero.
pub fn resetstat(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    ctx.shared.counters.reset_info();
    Ok(Reply::ok())
}

/// CONFIG REWRITE: write the current replication role into the --config file (an OK without
/// one: Sentinel sends this after every SLAVEOF, and its MULTI/EXEC must read as a success).
pub fn rewrite(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let shared = ctx.shared;
    crate::rewrite::rewrite(
        shared.config.config.as_deref(),
        shared.repl.master().as_ref(),
    )
    .map(|_| Reply::ok())
    .map_err(|e| ParseError::Invalid(format!("Rewriting config file: {e}")))
}

/// CONFIG HELP.
pub fn help(_: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(help_reply(&[
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern> [<pattern> ...]",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "SET <parameter> <value> [<parameter> <value> ...]",
        "    Set the runtime parameters (loglevel, save-interval, maxmemory, max-keys,",
        "    maxmemory-policy, min-replicas-to-write, min-replicas-max-lag, protected-mode,",
        "    timeout, auth-timeout, client-output-buffer-limit).",
        "    The TLS files and rules (tls-cert-file, tls-key-file, tls-ca-cert-file,",
        "    tls-auth-clients, tls-replication) are loaded together, for new connections.",
        "RESETSTAT",
        "    Reset the statistics reported by INFO.",
        "REWRITE",
        "    Write the replication role into the --config file.",
    ]))
}

/// Parameters CONFIG GET answers: what clients probe at connect (`save`, `appendonly`,
/// `databases`) and the daemon's real settings.
fn fixed_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let c = &shared.config;
    vec![
        ("appendonly", "no".into()),
        ("bind", c.bind.to_string()),
        ("databases", "1".into()),
        ("io-threads", c.threads.unwrap_or(0).to_string()),
        ("maxclients", c.maxclients.to_string()),
        ("port", shared.ports.resp.to_string()),
        ("proto-max-bulk-len", c.max_bulk_len.to_string()),
        ("save", {
            let every = shared.persist.save_interval.load(Ordering::Relaxed);
            if every == 0 {
                String::new()
            } else {
                format!("{every} 1")
            }
        }),
        (
            "client-query-buffer-limit",
            c.client_query_buffer_limit.0.to_string(),
        ),
    ]
}

/// How CONFIG SET changes a knob: the value as text, or why it was refused.
pub type Setter = fn(&Shared, &str) -> Result<(), String>;

/// One runtime knob: how CONFIG GET reads it and, if it can change while running, how
/// CONFIG SET changes it. Add a row to [`KNOBS`] for a new knob (maxmemory, policy, ...).
pub struct Knob {
    pub name: &'static str,
    pub get: fn(&Shared) -> String,
    pub set: Option<Setter>,
}

/// Every knob this module answers for. CONFIG GET also answers the fixed parameters of
/// [`fixed_params`] (bind, port, ...), which cannot change without a restart.
pub static KNOBS: &[Knob] = &[
    Knob {
        name: "loglevel",
        get: |_| crate::logging::current_level().to_string(),
        set: Some(|_, v| crate::logging::set_level(v).map_err(|e| e.to_string())),
    },
    Knob {
        name: "save-interval",
        get: |s| s.persist.save_interval.load(Ordering::Relaxed).to_string(),
        set: Some(|s, v| {
            let secs = seconds("save-interval", v)?;
            s.persist.save_interval.store(secs, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "maxmemory",
        get: |s| s.engine.bounds().1.unwrap_or(0).to_string(),
        set: Some(|s, v| {
            let bytes = crate::config::parse_memory(v)?.0;
            crate::settings::check_maxmemory(&s.engine, bytes)?;
            let (keys, _, policy) = s.engine.bounds();
            // 0 means "no bound", as in Redis.
            s.engine
                .set_bounds(keys, (bytes > 0).then_some(bytes), policy);
            Ok(())
        }),
    },
    Knob {
        name: "max-keys",
        get: |s| s.engine.bounds().0.unwrap_or(0).to_string(),
        set: Some(|s, v| {
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("max-keys must be a number of keys, got '{v}'"))?;
            let (_, bytes, policy) = s.engine.bounds();
            s.engine.set_bounds((n > 0).then_some(n), bytes, policy);
            Ok(())
        }),
    },
    Knob {
        name: "maxmemory-policy",
        get: |s| s.engine.bounds().2.name().to_string(),
        set: Some(|s, v| {
            let policy = crate::config::parse_policy(v)?.0;
            let (keys, bytes, _) = s.engine.bounds();
            s.engine.set_bounds(keys, bytes, policy);
            Ok(())
        }),
    },
    Knob {
        name: "min-replicas-to-write",
        get: |s| {
            s.repl
                .min_replicas_to_write
                .load(Ordering::Relaxed)
                .to_string()
        },
        set: Some(|s, v| {
            let n: u32 = v.trim().parse().map_err(|_| {
                format!("min-replicas-to-write must be a number of replicas, got '{v}'")
            })?;
            s.repl.min_replicas_to_write.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "min-replicas-max-lag",
        get: |s| {
            s.repl
                .min_replicas_max_lag
                .load(Ordering::Relaxed)
                .to_string()
        },
        set: Some(|s, v| {
            let n = seconds("min-replicas-max-lag", v)?;
            s.repl.min_replicas_max_lag.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "protected-mode",
        get: |s| {
            if s.protected_mode.load(Ordering::Relaxed) {
                "yes"
            } else {
                "no"
            }
            .to_string()
        },
        set: Some(|s, v| {
            let on = match v.trim().to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(format!("protected-mode must be yes or no, got '{v}'")),
            };
            s.protected_mode.store(on, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "timeout",
        get: |s| s.bounds.timeout_secs.load(Ordering::Relaxed).to_string(),
        set: Some(|s, v| {
            let n = seconds("timeout", v)?;
            s.bounds.timeout_secs.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "auth-timeout",
        get: |s| {
            s.bounds
                .auth_timeout_secs
                .load(Ordering::Relaxed)
                .to_string()
        },
        set: Some(|s, v| {
            let n = seconds("auth-timeout", v)?;
            s.bounds.auth_timeout_secs.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "client-output-buffer-limit",
        get: |s| s.bounds.describe_output_limits(),
        set: Some(|s, v| s.bounds.set_output_limits(v).map_err(|e| e.to_string())),
    },
    Knob {
        name: "dir",
        get: |s| s.persist.dir().display().to_string(),
        set: None,
    },
    Knob {
        name: "http-port",
        get: |s| s.ports.http.map(|p| p.to_string()).unwrap_or_default(),
        set: None,
    },
    // TLS (src/tls.rs): the ports and HTTPS are fixed at start; the files, tls-auth-clients
    // and tls-replication reload the certificates for new connections. One CONFIG SET that
    // names several of them loads them together (see `set`).
    Knob {
        name: "tls-port",
        get: |s| s.ports.tls.unwrap_or(0).to_string(),
        set: None,
    },
    Knob {
        name: "memcached-tls-port",
        get: |s| s.ports.memcached_tls.unwrap_or(0).to_string(),
        set: None,
    },
    Knob {
        name: "http-tls",
        get: |s| s.config.http_tls.clone(),
        set: None,
    },
    Knob {
        name: "tls-cert-file",
        get: |s| path_text(s.tls.files().cert),
        set: Some(|s, v| set_tls(s, &[("tls-cert-file", v)])),
    },
    Knob {
        name: "tls-key-file",
        get: |s| path_text(s.tls.files().key),
        set: Some(|s, v| set_tls(s, &[("tls-key-file", v)])),
    },
    Knob {
        name: "tls-ca-cert-file",
        get: |s| path_text(s.tls.files().ca),
        set: Some(|s, v| set_tls(s, &[("tls-ca-cert-file", v)])),
    },
    Knob {
        name: "tls-auth-clients",
        get: |s| s.tls.files().auth_clients.name().to_string(),
        set: Some(|s, v| set_tls(s, &[("tls-auth-clients", v)])),
    },
    Knob {
        name: "tls-replication",
        get: |s| yes_no(s.tls.files().replication),
        set: Some(|s, v| set_tls(s, &[("tls-replication", v)])),
    },
];

/// A whole number of seconds for the knob `name`.
fn seconds(name: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{name} must be a number of seconds, got '{v}'"))
}

/// The knobs one TLS reload covers: `set` hands all those of one CONFIG SET to [`set_tls`]
/// at once, so that a certificate and its new key change together.
const TLS_RELOAD: [&str; 5] = [
    "tls-cert-file",
    "tls-key-file",
    "tls-ca-cert-file",
    "tls-auth-clients",
    "tls-replication",
];

fn path_text(path: Option<std::path::PathBuf>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.to_string()
}

/// One change of the TLS files or switches, parsed.
enum TlsChange {
    Cert(Option<std::path::PathBuf>),
    Key(Option<std::path::PathBuf>),
    Ca(Option<std::path::PathBuf>),
    AuthClients(crate::tls::AuthClients),
    Replication(bool),
}

/// Set TLS knobs (`name`, value) together: every file is read again and checked, and only if
/// all are good are they in force, for new connections (an empty value removes a file).
fn set_tls(shared: &Shared, values: &[(&str, &str)]) -> Result<(), String> {
    let mut changes = Vec::new();
    for (name, value) in values {
        let path = (!value.is_empty()).then(|| std::path::PathBuf::from(value));
        changes.push(match *name {
            "tls-cert-file" => TlsChange::Cert(path),
            "tls-key-file" => TlsChange::Key(path),
            "tls-ca-cert-file" => TlsChange::Ca(path),
            "tls-auth-clients" => {
                TlsChange::AuthClients(crate::tls::AuthClients::parse(value).ok_or_else(|| {
                    format!("tls-auth-clients must be yes, no or optional, got '{value}'")
                })?)
            }
            "tls-replication" => {
                TlsChange::Replication(match value.trim().to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("tls-replication must be yes or no, got '{value}'")),
                })
            }
            other => return Err(format!("'{other}' is not a TLS setting")),
        });
    }
    // Reading files: off the worker's other connections, as every blocking file access is.
    crate::persist::in_place(|| {
        shared.tls.update(|files| {
            for change in changes {
                match change {
                    TlsChange::Cert(p) => files.cert = p,
                    TlsChange::Key(p) => files.key = p,
                    TlsChange::Ca(p) => files.ca = p,
                    TlsChange::AuthClients(a) => files.auth_clients = a,
                    TlsChange::Replication(on) => files.replication = on,
                }
            }
        })
    })
    .map_err(|e| e.to_string())
}

/// Find a knob by name (case-insensitive; `_` and `-` are the same).
pub fn knob(name: &[u8]) -> Option<&'static Knob> {
    let name = String::from_utf8_lossy(name)
        .to_ascii_lowercase()
        .replace('_', "-");
    KNOBS.iter().find(|k| k.name == name)
}

/// CONFIG SET name value [name value ...]: all names are checked before any is changed
/// (as Redis does), then each is set in order.
pub fn set(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let shared = ctx.shared;
    let mut parse = sub_args(args);
    let mut pairs = Vec::new();
    while let Some(name) = parse.try_next() {
        let value = parse.next_bytes()?;
        let setter = knob(name).and_then(|k| k.set.map(|s| (k.name, s)));
        let Some((name, set)) = setter else {
            return Err(ParseError::Invalid(format!(
                "Unknown option or number of arguments for CONFIG SET - '{}'",
                shorten(name, 64)
            )));
        };
        pairs.push((name, set, value));
    }
    // The TLS knobs of one CONFIG SET are one reload (a new certificate needs its new key),
    // made before the others: a refused one changes nothing.
    let tls: Vec<(&str, String)> = pairs
        .iter()
        .filter(|(name, _, _)| TLS_RELOAD.contains(name))
        .map(|(name, _, value)| (*name, String::from_utf8_lossy(value).into_owned()))
        .collect();
    if !tls.is_empty() {
        let values: Vec<(&str, &str)> = tls.iter().map(|(n, v)| (*n, v.as_str())).collect();
        set_tls(shared, &values).map_err(|e| {
            let names: Vec<&str> = tls.iter().map(|(n, _)| *n).collect();
            ParseError::Invalid(format!(
                "CONFIG SET failed (possibly related to argument '{}') - {e}",
                names.join("', '")
            ))
        })?;
        for (name, value) in &tls {
            tracing::info!("CONFIG SET {name} {value}");
        }
        pairs.retain(|(name, _, _)| !TLS_RELOAD.contains(name));
    }
    for (name, set, value) in pairs {
        let value = String::from_utf8_lossy(value);
        set(shared, &value).map_err(|e| {
            ParseError::Invalid(format!(
                "CONFIG SET failed (possibly related to argument '{name}') - {e}"
            ))
        })?;
        tracing::info!("CONFIG SET {name} {value}");
    }
    Ok(Reply::ok())
}
