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

use crate::config::Config;
use bytes::Bytes;
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

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

/// A `maxmemory` of `bytes` is 0 (no bound) or at least what the empty store takes: below
/// that, every new key would be refused (or, under evict-nearest, evicted at once).
pub fn check_maxmemory<C: ratelimitd_engine::Clock>(
    engine: &ratelimitd_engine::Engine<C>,
    bytes: u64,
) -> Result<(), String> {
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
