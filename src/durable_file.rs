//! Replacing a file so that a crash leaves the old version or the new one, never half of
//! one: write a temporary file beside it, fsync it, rename it over the file, fsync the
//! directory. The snapshot, the compacted limits log, the ACL file and CONFIG REWRITE's config
//! file are all written this way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes every temporary name of [`unique_tmp`] unique within the process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The directory a file lives in (`.` for a bare name).
pub fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A temporary name beside `path` that no other writer of this process uses: two writers
/// sharing one temporary file would write the same inode, and the rename would publish a mix
/// of both.
pub fn unique_tmp(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir_of(path).join(format!(".{name}.tmp-{}-{seq}", std::process::id()))
}

/// Write `bytes` to `tmp`, fsync it, rename it over `path`, fsync the directory. A failed
/// write removes the temporary file (a half-written one is useless and takes space).
pub fn replace(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let result = (|| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(tmp, path)?;
        std::fs::File::open(dir_of(path))?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = std::env::temp_dir().join(format!("rld-durable-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("f.txt");
        for text in ["one", "two, longer"] {
            assert!(replace(&unique_tmp(&path), &path, text.as_bytes()).is_ok());
            assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some(text));
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(left.len(), 1, "{left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
