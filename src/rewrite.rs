//! CONFIG REWRITE: write the replication role the daemon has now back into its config file.
//!
//! Redis Sentinel sends `CONFIG REWRITE` right after every `SLAVEOF` it issues, so that a node
//! it re-pointed keeps following the new primary after a restart (instead of coming back as a
//! second primary). The only setting that changes at runtime and must survive a restart is the
//! role, so that is what is rewritten: the top-level `replicaof` key of the `--config` TOML file
//! is set (`replicaof = "host:port"`) or removed (a primary). Everything else in the file —
//! comments, order, `[[limit]]` tables — is kept byte for byte.
//!
//! The file is replaced atomically and durably: a temporary file in the same directory,
//! fsynced, renamed over the original, then the directory fsynced; a crash leaves the old file
//! or the new one, never half of one. Note the precedence rule (src/settings.rs): a
//! `--replicaof` flag or `RATELIMITD_REPLICAOF` variable overrides the file at start, so
//! deployments under Sentinel should leave the role to the file.

use crate::config::MasterAddr;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// One rewrite at a time: Sentinels send REPLICAOF + CONFIG REWRITE from several connections
/// at once, and two read-modify-writes interleaved could leave the role an earlier one read.
static REWRITING: Mutex<()> = Mutex::new(());

/// Makes every temporary file name unique within the process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Rewrite the config file at `path`, if there is one, so that it names `master` (None: this
/// node is a primary). Ok(false): no `--config`, nothing to rewrite.
pub fn rewrite(path: Option<&Path>, master: Option<&MasterAddr>) -> Result<bool, String> {
    let Some(path) = path else {
        return Ok(false);
    };
    let _one_at_a_time = REWRITING.lock().unwrap_or_else(PoisonError::into_inner);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let new = with_replicaof(&text, master);
    if new != text {
        write_durably(path, &new).map_err(|e| format!("cannot rewrite {}: {e}", path.display()))?;
    }
    tracing::info!("CONFIG REWRITE: {} written", path.display());
    Ok(true)
}

/// True for a top-level `replicaof = ...` line (bare or quoted key).
fn is_replicaof_line(line: &str) -> bool {
    let t = line.trim_start();
    let key = t.split('=').next().unwrap_or("").trim().trim_matches('"');
    t.contains('=') && key == "replicaof"
}

/// `text` with its top-level `replicaof` key set to `master` (or removed for None). Keys after
/// the first `[table]` header belong to that table, so the line goes where the old one was,
/// or else before the first header.
pub fn with_replicaof(text: &str, master: Option<&MasterAddr>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let first_table = lines
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(lines.len());
    let old = lines[..first_table]
        .iter()
        .position(|l| is_replicaof_line(l));
    let new_line = master.map(|m| {
        let value = if m.host.contains(':') {
            format!("{} {}", m.host, m.port) // an IPv6 address: "host port" parses unambiguously
        } else {
            format!("{}:{}", m.host, m.port)
        };
        format!(
            "replicaof = \"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        )
    });
    let insert_at = old.unwrap_or(first_table);
    let mut out = String::with_capacity(text.len() + 40);
    for (i, line) in lines.iter().enumerate() {
        if i == insert_at {
            if let Some(l) = &new_line {
                out.push_str(l);
                out.push('\n');
            }
        }
        if i < first_table && is_replicaof_line(line) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if insert_at == lines.len() {
        if let Some(l) = &new_line {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Replace `path` with `text`: temp file, fsync, rename, fsync the directory.
fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    // Unique per call, and created new: two writers sharing one temporary file would
    // truncate and write the same inode, and the rename would publish a mix of both.
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.rewrite-{}-{seq}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
        let set = with_replicaof(text, Some(&m("127.0.0.1", 6380)));
        assert_eq!(
            set,
            "# ours\nport = 7000\n\nreplicaof = \"127.0.0.1:6380\"\n[[limit]]\nscope = \"DEFAULT\"\nrate = \"1/1s\"\n"
        );
        let moved = with_replicaof(&set, Some(&m("::1", 6381)));
        assert!(
            moved.contains("replicaof = \"::1 6381\"\n[[limit]]"),
            "{moved}"
        );
        assert_eq!(moved.matches("replicaof").count(), 1);
        assert_eq!(with_replicaof(&set, None), text);
        let parsed: toml::Table = set.parse().expect("valid TOML");
        assert_eq!(
            crate::config::parse_master(parsed["replicaof"].as_str().unwrap_or("")),
            Ok(m("127.0.0.1", 6380))
        );
        assert_eq!(
            with_replicaof("port = 1", Some(&m("h", 2))),
            "port = 1\nreplicaof = \"h:2\"\n"
        );
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
