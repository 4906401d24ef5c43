//! CONFIG REWRITE: write the replication role the daemon has now back into its config file.
//!
//! Redis Sentinel sends `CONFIG REWRITE` right after every `SLAVEOF` it issues, so that a node
//! it re-pointed keeps following the new primary after a restart (instead of coming back as a
//! second primary). The only setting that changes at runtime and must survive a restart is the
//! role, so that is what is rewritten: the top-level `replicaof` key of the `--config` TOML file
//! is set (`replicaof = "host:port"`) or removed (a primary). The file is edited as a TOML
//! document with `toml_edit`, never by pasting strings: the value is quoted by a TOML
//! serialiser, so the file always parses back, and everything else in it — comments, order,
//! `[[limit]]` tables — is kept byte for byte.
//!
//! The file is replaced atomically and durably: a temporary file in the same directory,
//! fsynced, renamed over the original, then the directory fsynced; a crash leaves the old file
//! or the new one, never half of one. Note the precedence rule (src/settings.rs): a
//! `--replicaof` flag or `RATELIMITD_REPLICAOF` variable overrides the file at start, so
//! deployments under Sentinel should leave the role to the file.

use crate::config::MasterAddr;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use toml_edit::{DocumentMut, Item, Value};

/// One rewrite at a time: Sentinels send REPLICAOF + CONFIG REWRITE from several connections
/// at once, and two read-modify-writes interleaved could leave the role an earlier one read.
static REWRITING: Mutex<()> = Mutex::new(());

/// Rewrite the config file at `path`, if there is one, so that it names `master` (None: this
/// node is a primary). Ok(false): no `--config`, nothing to rewrite.
pub fn rewrite(path: Option<&Path>, master: Option<&MasterAddr>) -> Result<bool, String> {
    let Some(path) = path else {
        return Ok(false);
    };
    let _one_at_a_time = REWRITING.lock().unwrap_or_else(PoisonError::into_inner);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let new = with_replicaof(&text, master)
        .map_err(|e| format!("cannot rewrite {}: {e}", path.display()))?;
    if new != text {
        write_durably(path, &new).map_err(|e| format!("cannot rewrite {}: {e}", path.display()))?;
    }
    tracing::info!("CONFIG REWRITE: {} written", path.display());
    Ok(true)
}

/// The key CONFIG REWRITE owns.
const KEY: &str = "replicaof";

/// `text` with its top-level `replicaof` key set to `master` (or removed for None). The text is
/// edited as a TOML document (`toml_edit`), so the value is written by a TOML serialiser
/// (quoted and escaped, whatever it holds), and the rest of the file is kept as it is:
/// comments, blank lines, order, other keys, `[[limit]]` and `[[tier]]` tables, CRLF line ends.
/// A key that exists keeps its place and its comments; a new one goes after the last
/// top-level key, before the first table. Refused: a file that is not valid TOML (the daemon
/// started from it, so someone has edited it since; it is left alone).
pub fn with_replicaof(text: &str, master: Option<&MasterAddr>) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("not valid TOML: {}", e.message()))?;
    match master {
        Some(m) => set(&mut doc, &master_text(m)),
        None => remove(&mut doc),
    }
    let out = doc.to_string();
    // toml_edit writes LF; a file written with CRLF throughout keeps them.
    let crlf = text.contains("\r\n") && !text.replace("\r\n", "").contains('\n');
    Ok(if crlf {
        out.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        out
    })
}

/// `host:port`, or `host port` for an IPv6 address (it parses back unambiguously).
fn master_text(m: &MasterAddr) -> String {
    if m.host.contains(':') {
        format!("{} {}", m.host, m.port)
    } else {
        format!("{}:{}", m.host, m.port)
    }
}

/// Set the top-level key, keeping the old value's surroundings (` # set by Sentinel`).
fn set(doc: &mut DocumentMut, value: &str) {
    let root = doc.as_table_mut();
    match root.get_mut(KEY).and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = Value::from(value);
            *old.decor_mut() = decor;
        }
        None => {
            root.insert(KEY, toml_edit::value(value));
        }
    }
}

/// Remove the top-level key. The comment lines above it belong to the key in toml_edit's
/// model; they are handed to what follows (the next top-level key, else the first table, else
/// the end of the file), so that only the key's own line goes.
fn remove(doc: &mut DocumentMut) {
    let root = doc.as_table_mut();
    let next_key = root
        .iter()
        .map(|(k, item)| (k.to_string(), item.is_value()))
        .skip_while(|(k, _)| k != KEY)
        .skip(1)
        .find_map(|(k, is_value)| is_value.then_some(k));
    let Some((key, _)) = root.remove_entry(KEY) else {
        return;
    };
    let above = key
        .leaf_decor()
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string();
    if above.is_empty() {
        return;
    }
    let prepend = |decor: &mut toml_edit::Decor| {
        let old = decor.prefix().and_then(|p| p.as_str()).unwrap_or("");
        decor.set_prefix(format!("{above}{old}"));
    };
    if let Some(mut k) = next_key.and_then(|k| root.key_mut(&k)) {
        prepend(k.leaf_decor_mut());
        return;
    }
    if let Some(table) = first_table(root) {
        prepend(table.decor_mut());
        return;
    }
    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
    doc.set_trailing(format!("{above}{trailing}"));
}

/// The table (or first table of an array of tables) written first in the file.
fn first_table(root: &mut toml_edit::Table) -> Option<&mut toml_edit::Table> {
    root.iter_mut()
        .filter_map(|(_, item)| match item {
            Item::Table(t) => Some(t),
            Item::ArrayOfTables(a) => a.iter_mut().next(),
            _ => None,
        })
        .min_by_key(|t| t.position().unwrap_or(isize::MAX))
}

/// Replace `path` with `text` so that a crash leaves the old file or the new one.
fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    crate::durable_file::replace(
        &crate::durable_file::unique_tmp(path),
        path,
        text.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &str, port: u16) -> MasterAddr {
        MasterAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn sets_replaces_and_removes_the_key_and_keeps_the_rest() {
        let text = "# ours\nport = 7000\n\n[[limit]]\nscope = \"DEFAULT\"\nrate = \"1/1s\"\n";
        let set = rw(text, Some(&m("127.0.0.1", 6380)));
        assert_eq!(
            set,
            "# ours\nport = 7000\nreplicaof = \"127.0.0.1:6380\"\n\n[[limit]]\nscope = \"DEFAULT\"\nrate = \"1/1s\"\n"
        );
        let moved = rw(&set, Some(&m("::1", 6381)));
        assert!(
            moved.contains("replicaof = \"::1 6381\"\n\n[[limit]]"),
            "{moved}"
        );
        assert_eq!(moved.matches("replicaof").count(), 1);
        assert_eq!(rw(&set, None), text);
        let parsed: toml::Table = set.parse().expect("valid TOML");
        assert_eq!(
            crate::config::parse_master(parsed["replicaof"].as_str().unwrap_or("")),
            Ok(m("127.0.0.1", 6380))
        );
        assert_eq!(
            rw("port = 1", Some(&m("h", 2))),
            "port = 1\nreplicaof = \"h:2\"\n"
        );
        assert!(with_replicaof("port = \n", Some(&m("h", 2)))
            .expect_err("not TOML")
            .contains("not valid TOML"));
    }

    fn rw(text: &str, master: Option<&MasterAddr>) -> String {
        with_replicaof(text, master).expect("valid TOML")
    }

    /// A file with comments, a multi-line string holding a line that looks like a table
    /// header, an inline comment on the key, and tables: every byte but the value is kept.
    const FILE: &str = "# a node under Sentinel\n\
        port = 7000 # the RESP port\n\
        requirepass = \"\"\"\n[not a table]\nreplicaof = 'in a string'\n\"\"\"\n\
        \n\
        # follow this primary\n\
        replicaof = 'old:1' # set by Sentinel\n\
        bind = \"0.0.0.0\"\n\
        \n\
        # limits\n\
        [[limit]]\n\
        scope = \"DEFAULT\"\n\
        rate = [\"10/1s\", \"1000/1h\"]\n\
        \n\
        [[tier]]\n\
        client = \"acme\"\n\
        tier = \"gold\"\n";

    #[test]
    fn keeps_every_other_byte_of_the_file() {
        let set = rw(FILE, Some(&m("h", 2)));
        assert_eq!(
            set,
            FILE.replace("'old:1' # set", "\"h:2\" # set"),
            "only the value changes"
        );
        let removed = rw(FILE, None);
        assert_eq!(
            removed,
            FILE.replace("replicaof = 'old:1' # set by Sentinel\n", ""),
            "only the key's line goes; the comment above it stays"
        );
        // The last top-level key: its comment goes to the table after it, or the end of file.
        let last =
            "port = 1\n# follow\nreplicaof = \"h:1\"\n\n# limits\n[[limit]]\nscope = \"D\"\n";
        assert_eq!(
            rw(last, None),
            "port = 1\n# follow\n\n# limits\n[[limit]]\nscope = \"D\"\n"
        );
        assert_eq!(
            rw("port = 1\n# follow\nreplicaof = \"h:1\"\n", None),
            "port = 1\n# follow\n"
        );
        assert_eq!(
            rw("port = 1\n", None),
            "port = 1\n",
            "no key, nothing to remove"
        );
        // Added to a file that has no key: after the top-level keys, before the tables (not
        // inside the string whose line looks like a table header).
        let added = rw(&removed, Some(&m("h", 2)));
        assert_eq!(
            added,
            removed.replace(
                "bind = \"0.0.0.0\"\n",
                "bind = \"0.0.0.0\"\nreplicaof = \"h:2\"\n"
            )
        );
        let parsed: toml::Table = added.parse().expect("valid TOML");
        assert_eq!(parsed["replicaof"].as_str(), Some("h:2"));
        assert_eq!(
            parsed["requirepass"].as_str(),
            Some("[not a table]\nreplicaof = 'in a string'\n")
        );
        // CRLF files stay CRLF.
        let crlf = "port = 1\r\n\r\n[[limit]]\r\nscope = \"D\"\r\n";
        assert_eq!(
            rw(crlf, Some(&m("h", 2))),
            "port = 1\r\nreplicaof = \"h:2\"\r\n\r\n[[limit]]\r\nscope = \"D\"\r\n"
        );
    }

    #[test]
    fn the_rewritten_file_always_parses_back() {
        // Valid hosts, some of them unusual: they come back as they went in.
        let long = [
            "x".repeat(63),
            "y".repeat(63),
            "z".repeat(63),
            "w".repeat(61),
        ]
        .join(".");
        for host in [
            "::1",
            "fe80::1:2",
            "::ffff:127.0.0.1",
            "127.0.0.1",
            "localhost",
            "a-b.example.",
            "0",
            long.as_str(),
        ] {
            let addr = MasterAddr::new(host, 6380).expect(host);
            for text in [
                FILE,
                "",
                "port = 1",
                "# a comment\n[[limit]]\nscope = \"D\"\n",
            ] {
                let out = rw(text, Some(&addr));
                let parsed: toml::Table = out.parse().unwrap_or_else(|e| panic!("{out}: {e}"));
                let value = parsed["replicaof"].as_str().unwrap_or_default();
                assert_eq!(
                    crate::config::parse_master(value),
                    Ok(addr.clone()),
                    "{out}"
                );
            }
        }
        // Whatever the host holds (none of this passes MasterAddr::new, but the file must not
        // depend on that), the file parses and holds it exactly.
        for host in [
            "evil\r\nrole:master",
            "q\"uote\\d",
            "tab\there",
            "nul\0",
            "\"\"\"",
            "'''",
            "x\"\n[[limit]]\nscope = \"DEFAULT",
        ] {
            let addr = m(host, 1);
            let out = rw(FILE, Some(&addr));
            let parsed: toml::Table = out.parse().unwrap_or_else(|e| panic!("{out:?}: {e}"));
            assert_eq!(
                parsed["replicaof"].as_str(),
                Some(master_text(&addr).as_str()),
                "{out:?}"
            );
            assert_eq!(parsed["limit"].as_array().map(Vec::len), Some(1), "{out:?}");
        }
    }

    #[test]
    fn writes_durably_in_place() {
        let dir = std::env::temp_dir().join(format!("ratelimitd-rewrite-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("r.toml");
        std::fs::write(&path, "port = 1\n").expect("write");
        write_durably(&path, "port = 2\n").expect("rewrite");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("port = 2\n")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_writers_leave_one_whole_version() {
        // Two writers at once (as two Sentinels' CONFIG REWRITEs can be): the file must end as
        // one text or the other, never a mix (with one temporary file name per process, a round
        // within the first few dozen left a file that was neither).
        let dir = std::env::temp_dir().join(format!("ratelimitd-rewrite2-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("r.toml");
        let long = "[[limit]]\nscope = \"default\"\nrate = \"10/1s\"\n".repeat(2000);
        let short = "port = 2\n".to_string();
        for round in 0..300 {
            std::thread::scope(|s| {
                for text in [&long, &short] {
                    s.spawn(|| {
                        let _ = write_durably(&path, text);
                    });
                }
            });
            let got = std::fs::read_to_string(&path).expect("read");
            assert!(
                got == long || got == short,
                "round {round}: a mix of {} bytes",
                got.len()
            );
        }
        let leftovers = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
