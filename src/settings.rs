//! Configuration beyond the flags: the TOML config file (`--config`), its preloaded limits and
//! tiers, and the runtime knobs of `CONFIG GET` / `CONFIG SET`.
//!
//! Precedence, highest first: command-line flags, `RATELIMITD_*` environment variables, the
//! config file, built-in defaults. The file uses the flags' own names (`max-bulk-len` or
//! `max_bulk_len`), and is merged by asking clap where each value came from: a file value is
//! used only where the flag was neither given nor set in the environment. Because the file is
//! read through clap's own parser, every flag — including ones added later — is valid in the
//! file with the same validation and error messages, and an unknown key is an error (a typo must
//! not be silently ignored).

use crate::server::Shared;
use crate::Config;
use bytes::Bytes;
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("config file {path}: unknown key '{key}' (the keys are the flags' names, e.g. 'port', 'max-bulk-len', plus [[limit]] and [[tier]] tables)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: {message}")]
    Value { path: PathBuf, message: String },
}

/// A flag parse error (including --help and --version, which clap reports as errors to print
/// and exit with) or a configuration error.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The parsed configuration and what the file preloads.
#[derive(Debug)]
pub struct Settings {
    pub config: Config,
    /// `RL.LIMIT SET ...` / `RL.TIER SET ...` commands from the file's [[limit]] and [[tier]]
    /// tables, applied at start through the live commands' parser. Each comes with a label
    /// ("[[limit]] #2") for error messages.
    pub preload: Vec<(String, Vec<Bytes>)>,
}

/// Parse the process's arguments, environment and config file.
pub fn load() -> Result<Settings, LoadError> {
    load_from(std::env::args_os().collect())
}

/// [`load`] with explicit arguments (`argv[0]` is the program name).
pub fn load_from(argv: Vec<OsString>) -> Result<Settings, LoadError> {
    let command = Config::command();
    let first = command.clone().try_get_matches_from(&argv)?;
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
        let config = Config::from_arg_matches(&first)?;
        return Ok(Settings {
            config,
            preload: Vec::new(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml {
            path: path.clone(),
            message: e.to_string().trim().replace('\n', " "),
        })?;

    let mut file_args: Vec<OsString> = Vec::new();
    let mut preload = Vec::new();
    for (key, value) in &table {
        match key.as_str() {
            "limit" => preload.extend(limits_from(&path, value)?),
            "tier" => preload.extend(tiers_from(&path, value)?),
            _ => {
                let long = key.replace('_', "-");
                let arg = command
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
                    .ok_or_else(|| ConfigError::UnknownKey {
                        path: path.clone(),
                        key: key.clone(),
                    })?;
                if matches!(
                    first.value_source(arg.get_id().as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                ) {
                    continue; // flags and environment win over the file
                }
                let flag = format!("--{long}");
                let takes_value = !matches!(
                    arg.get_action(),
                    ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
                );
                match (value, takes_value) {
                    (toml::Value::Boolean(b), false) => {
                        if *b {
                            file_args.push(flag.into());
                        }
                    }
                    (toml::Value::String(s), true) => {
                        file_args.push(flag.into());
                        file_args.push(s.into());
                    }
                    (toml::Value::Integer(i), true) => {
                        file_args.push(flag.into());
                        file_args.push(i.to_string().into());
                    }
                    (toml::Value::Float(f), true) => {
                        file_args.push(flag.into());
                        file_args.push(f.to_string().into());
                    }
                    (toml::Value::Boolean(b), true) => {
                        file_args.push(flag.into());
                        file_args.push(b.to_string().into());
                    }
                    (other, _) => {
                        return Err(ConfigError::Value {
                            path: path.clone(),
                            message: format!(
                                "'{key}' must be a {}, not {}",
                                if takes_value {
                                    "string or number"
                                } else {
                                    "boolean"
                                },
                                other.type_str()
                            ),
                        }
                        .into())
                    }
                }
            }
        }
    }
    // The file's values go before the real arguments; none of them repeats a flag given on the
    // command line (those were skipped above).
    let mut merged: Vec<OsString> = argv.first().cloned().into_iter().collect();
    merged.extend(file_args);
    merged.extend(argv.into_iter().skip(1));
    let matches = command.try_get_matches_from(&merged).map_err(|e| {
        // The command line parsed alone, so the fault is a value from the file.
        ConfigError::Value {
            path: path.clone(),
            message: first_line(&e.to_string()),
        }
    })?;
    let config = Config::from_arg_matches(&matches)?;
    Ok(Settings { config, preload })
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// `[[limit]]` tables: `scope = "ENDPOINT /login"`, `rate = "5/1m"` or `["10/1s", "1000/1h"]`,
/// optional `burst = 2` (every window) or `[2, 0]` (one per rate). Turned into the
/// `RL.LIMIT SET` command they mean, which the live parser validates at start.
fn limits_from(path: &Path, value: &toml::Value) -> Result<Vec<(String, Vec<Bytes>)>, ConfigError> {
    let bad = |message: String| ConfigError::Value {
        path: path.to_path_buf(),
        message,
    };
    let tables = value
        .as_array()
        .ok_or_else(|| bad("'limit' must be an array of tables: [[limit]]".into()))?;
    let mut out = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let label = format!("[[limit]] #{}", i + 1);
        let t = t
            .as_table()
            .ok_or_else(|| bad(format!("{label} must be a table")))?;
        for k in t.keys() {
            if !["scope", "rate", "burst"].contains(&k.as_str()) {
                return Err(bad(format!(
                    "{label}: unknown key '{k}' (expected scope, rate, burst)"
                )));
            }
        }
        let scope = t
            .get("scope")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("{label}: 'scope' (a string) is required")))?;
        let rates: Vec<&str> = match t.get("rate") {
            Some(toml::Value::String(s)) => vec![s.as_str()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(format!("{label}: 'rate' must be strings like \"5/1m\"")))?,
            _ => {
                return Err(bad(format!(
                    "{label}: 'rate' (\"5/1m\" or a list) is required"
                )))
            }
        };
        let bursts: Vec<i64> = match t.get("burst") {
            None => vec![0; rates.len()],
            Some(toml::Value::Integer(b)) => vec![*b; rates.len()],
            Some(toml::Value::Array(a)) => {
                let b = a
                    .iter()
                    .map(|v| v.as_integer())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(format!("{label}: 'burst' must be integers")))?;
                if b.len() != rates.len() {
                    return Err(bad(format!(
                        "{label}: 'burst' has {} values for {} rates",
                        b.len(),
                        rates.len()
                    )));
                }
                b
            }
            Some(_) => return Err(bad(format!("{label}: 'burst' must be an integer"))),
        };
        let mut args = vec![bytes("RL.LIMIT"), bytes("SET")];
        args.extend(scope.split_whitespace().map(bytes));
        for (rate, burst) in rates.iter().zip(&bursts) {
            args.extend([
                bytes("RATE"),
                bytes(rate),
                bytes("BURST"),
                bytes(&burst.to_string()),
            ]);
        }
        out.push((label, args));
    }
    Ok(out)
}

/// `[[tier]]` tables: `client = "acme"`, `tier = "gold"`.
fn tiers_from(path: &Path, value: &toml::Value) -> Result<Vec<(String, Vec<Bytes>)>, ConfigError> {
    let bad = |message: String| ConfigError::Value {
        path: path.to_path_buf(),
        message,
    };
    let tables = value
        .as_array()
        .ok_or_else(|| bad("'tier' must be an array of tables: [[tier]]".into()))?;
    let mut out = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let label = format!("[[tier]] #{}", i + 1);
        let t = t
            .as_table()
            .ok_or_else(|| bad(format!("{label} must be a table")))?;
        for k in t.keys() {
            if !["client", "tier"].contains(&k.as_str()) {
                return Err(bad(format!(
                    "{label}: unknown key '{k}' (expected client, tier)"
                )));
            }
        }
        let get = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad(format!("{label}: '{k}' (a string) is required")))
        };
        let args = vec![
            bytes("RL.TIER"),
            bytes("SET"),
            bytes(get("client")?),
            bytes(get("tier")?),
        ];
        out.push((label, args));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// CONFIG GET / CONFIG SET

/// How CONFIG SET changes a knob: the value as text, or why it was refused.
pub type Setter = fn(&Shared, &str) -> Result<(), String>;

/// One runtime knob: how CONFIG GET reads it and, if it can change while running, how
/// CONFIG SET changes it. Add a row to [`KNOBS`] for a new knob (maxmemory, policy, ...).
pub struct Knob {
    pub name: &'static str,
    pub get: fn(&Shared) -> String,
    pub set: Option<Setter>,
}

/// Every knob this module answers for. CONFIG GET also answers the fixed parameters listed in
/// `cmd/server.rs` (bind, port, ...), which cannot change without a restart.
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
            let secs: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("save-interval must be a number of seconds, got '{v}'"))?;
            s.persist.save_interval.store(secs, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "maxmemory",
        get: |s| s.engine.bounds().1.unwrap_or(0).to_string(),
        set: Some(|s, v| {
            let bytes = crate::config::parse_memory(v)?.0;
            check_maxmemory(&s.engine, bytes)?;
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
            let n: u64 = v.trim().parse().map_err(|_| {
                format!("min-replicas-max-lag must be a number of seconds, got '{v}'")
            })?;
            s.repl.min_replicas_max_lag.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Knob {
        name: "dir",
        get: |s| s.persist.dir().display().to_string(),
        set: None,
    },
    Knob {
        name: "http-port",
        get: |s| s.http_port().map(|p| p.to_string()).unwrap_or_default(),
        set: None,
    },
];

/// Find a knob by name (case-insensitive; `_` and `-` are the same).
pub fn knob(name: &[u8]) -> Option<&'static Knob> {
    let name = String::from_utf8_lossy(name)
        .to_ascii_lowercase()
        .replace('_', "-");
    KNOBS.iter().find(|k| k.name == name)
}

/// `CONFIG SET name value [name value ...]`: all names are checked before any is changed
/// (as Redis does), then each is set in order.
pub fn config_set(
    shared: &Shared,
    parse: &mut ratelimitd_protocol::Parse,
) -> Result<ratelimitd_protocol::Reply, ratelimitd_protocol::ParseError> {
    use ratelimitd_protocol::{ParseError, Reply};
    let mut pairs = Vec::new();
    while let Some(name) = parse.try_next() {
        let value = parse.next_bytes()?;
        let setter = knob(name).and_then(|k| k.set.map(|s| (k.name, s)));
        let Some((name, set)) = setter else {
            return Err(ParseError::Invalid(format!(
                "Unknown option or number of arguments for CONFIG SET - '{}'",
                crate::cmd::shorten(name, 64)
            )));
        };
        pairs.push((name, set, value));
    }
    if pairs.is_empty() {
        return Err(ParseError::WrongArity("config|set".into()));
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

/// INFO's `# Persistence` section: Redis's field names where they mean the same thing, and
/// `rl_*` for ours.
pub fn info_persistence(shared: &Shared, out: &mut String) {
    use std::fmt::Write as _;
    let p = shared.persist.status();
    let _ = write!(
        out,
        "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\naof_enabled:0\r\nrl_dir:{}\r\nrl_save_interval:{}\r\nrl_limits_log_bytes:{}\r\nrl_limits_log_live_records:{}\r\nrl_limits_log_compactions:{}\r\nrl_limits_log_load:{}\r\nrl_snapshot_load_status:{}\r\nrl_snapshot_load:{}\r\nrl_persistence_errors:{}\r\n",
        p.changes_since_save,
        p.bgsave_in_progress as u8,
        p.last_save_unix,
        if p.last_save_ok { "ok" } else { "err" },
        p.dir,
        shared.persist.save_interval.load(Ordering::Relaxed),
        p.log_bytes,
        p.log_live_records,
        p.compactions,
        p.log_load.replace(['\r', '\n'], " "),
        if p.snapshot_load_ok { "ok" } else { "err" },
        p.snapshot_load.replace(['\r', '\n'], " "),
        p.errors,
    );
}

/// A `maxmemory` of `bytes` is 0 (no bound) or at least what the empty store takes: below
/// that, every new key would be refused (or, under evict-nearest, evicted at once).
pub fn check_maxmemory(engine: &ratelimitd_engine::Engine, bytes: u64) -> Result<(), String> {
    let fixed = engine.fixed_memory_bytes();
    if bytes > 0 && bytes < fixed {
        return Err(format!(
            "maxmemory {bytes} is below the {fixed} bytes the empty store takes ({} shards): use 0 (no bound) or at least that",
            engine.shard_count()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("ratelimitd")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "ratelimitd-settings-{name}-{}.toml",
            std::process::id()
        ));
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn file_values_apply_where_no_flag_is_given_and_flags_win() {
        let f = file(
            "merge",
            "port = 7000\nmax_bulk_len = 1024\nlog-level = \"debug\"\n[[limit]]\nscope = \"ENDPOINT /login\"\nrate = [\"5/1m\", \"100/1h\"]\nburst = [1, 0]\n[[tier]]\nclient = \"acme\"\ntier = \"gold\"\n",
        );
        let s = load_from(argv(&[
            "--config",
            f.to_str().unwrap_or(""),
            "--port",
            "7001",
        ]))
        .expect("load");
        assert_eq!(s.config.port, 7001, "the flag wins");
        assert_eq!(
            s.config.max_bulk_len, 1024,
            "the file sets what no flag does"
        );
        assert_eq!(s.config.log_level, "debug");
        let texts: Vec<String> = s
            .preload
            .iter()
            .map(|(_, a)| {
                a.iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                "RL.LIMIT SET ENDPOINT /login RATE 5/1m BURST 1 RATE 100/1h BURST 0",
                "RL.TIER SET acme gold"
            ]
        );
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let cases = [
            ("unknown", "prot = 1\n", "unknown key 'prot'"),
            ("toml", "port = \n", "not valid TOML"),
            ("value", "port = \"abc\"\n", "invalid value 'abc'"),
            ("type", "port = [1]\n", "must be a string or number"),
            ("limit", "[[limit]]\nscope = \"DEFAULT\"\n", "'rate'"),
            (
                "limitkey",
                "[[limit]]\nscope = \"DEFAULT\"\nrate = \"1/1s\"\nbrust = 1\n",
                "unknown key 'brust'",
            ),
        ];
        for (name, text, expected) in cases {
            let f = file(name, text);
            let err = load_from(argv(&["--config", f.to_str().unwrap_or("")]))
                .expect_err(name)
                .to_string();
            assert!(err.contains(expected), "{name}: {err}");
            let _ = std::fs::remove_file(f);
        }
        let err = load_from(argv(&["--config", "/nonexistent/ratelimitd.toml"]))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("cannot read config file"), "{err}");
    }
}
