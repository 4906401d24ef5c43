//! Durability: the limits log (limits and tiers, saved on every change) and the rate-state
//! snapshot file, both in `--dir`.
//!
//! ## The limits log (`limits.log`)
//! An append-only file: an 8-byte header, then one record per acknowledged `RL.LIMIT SET/DEL`
//! or `RL.TIER SET/DEL`. A record is `[payload length: u32 LE][xxh3-64 of payload: u64 LE]
//! [payload]`, and the payload is the command itself as a RESP array of bulk strings — binary
//! safe, and replayed at start through the very parser that handles the live command
//! (`cmd::rl::replay`), so the log can never accept something the API would refuse or vice
//! versa.
//!
//! Why a log and not a rewritten file per change: a change costs one append and one `fsync`
//! instead of rewriting every limit; the whole live set is rewritten only by compaction.
//!
//! Order of a change ([`Persist::commit`]): validate → append → `fdatasync` → apply to the
//! engine → reply, all under one mutex, so the log's order is the order changes were applied
//! and a reply is only sent for a change that is on disk. `kill -9` at any point leaves at
//! worst one torn record at the end, which [`Persist::open`] detects (short read, bad length
//! or bad checksum), reports, copies aside and truncates; every complete record loads.
//!
//! Compaction: when the log is more than twice the size of the live set (and past
//! [`COMPACT_MIN`]), the live set is written to `limits.log.tmp`, fsynced, renamed over the
//! log, and the directory fsynced. A crash before the rename leaves the old log (complete);
//! after it, the new one (complete).
//!
//! ## The snapshot (`state.snap`)
//! The engine produces and checks the bytes (its format is versioned and checksummed); this
//! file only writes them durably (temp file, fsync, rename, fsync the directory) and reads
//! them back.

use bytes::{Bytes, BytesMut};
use ratelimitd_engine::Scope;
use ratelimitd_protocol::{Decoder, Limits, Request};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use xxhash_rust::xxh3::xxh3_64;

/// First bytes of a limits log: a name and a format version.
const LOG_MAGIC: &[u8; 8] = b"RLDLOG\x00\x01";
const LOG_NAME: &str = "limits.log";
const LOG_TMP: &str = "limits.log.tmp";
const SNAP_NAME: &str = "state.snap";
const SNAP_TMP: &str = "state.snap.tmp";
const LOCK_NAME: &str = "LOCK";
/// Bytes of a record's header: length and checksum.
const RECORD_HEADER: usize = 12;
/// The largest record accepted on load: a live request can be 16 MiB, so anything larger is
/// a corrupt length, not a record.
const MAX_RECORD: usize = 17 * 1024 * 1024;
/// The log is not compacted below this size, whatever its ratio to the live set.
pub const COMPACT_MIN: u64 = 64 * 1024;

/// What can go wrong with the data directory.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot use data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another ratelimitd process (it holds {0}/LOCK); give each instance its own --dir")]
    Locked(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a ratelimitd limits log (unknown header); move it away to start")]
    BadHeader(PathBuf),
    #[error("the limits log has been unusable since an fsync failed ({0}); restart the daemon")]
    Broken(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a log record is about: one scope's limit or one client's tier. Records with the same
/// key replace one another, so the live set holds at most one per key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordKey {
    Limit(Scope),
    Tier(Vec<u8>),
    /// An ACL user, by name.
    User(Vec<u8>),
}

/// Whether a change is a set or a delete (a delete of a key the config file preloads is kept
/// in the live set as a tombstone, so that compaction does not resurrect the file's limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Set,
    Del,
}

/// How [`Persist::commit`] treats a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Limits from the config file: applied, not logged, remembered as preloaded.
    Preload = 0,
    /// Records read from the log at start: applied and added to the live set, not re-logged.
    Replay = 1,
    /// A client's command: logged durably, then applied.
    Live = 2,
}

struct LogState {
    /// None once a failed fsync made the file's contents uncertain.
    file: Option<File>,
    broken: Option<String>,
    size: u64,
    /// The live set: the latest record of each key, encoded as it is on disk.
    live: BTreeMap<RecordKey, Vec<u8>>,
    live_bytes: u64,
    /// Keys the config file set; deletes of these are kept as tombstones.
    preloaded: BTreeSet<RecordKey>,
    compactions: u64,
}

/// Figures for INFO and /metrics.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub dir: String,
    pub log_bytes: u64,
    pub log_live_records: u64,
    pub compactions: u64,
    pub last_save_unix: i64,
    pub last_save_ok: bool,
    pub bgsave_in_progress: bool,
    pub changes_since_save: u64,
    pub errors: u64,
    pub snapshot_load_ok: bool,
    pub snapshot_load: String,
    pub log_load: String,
}

/// The data directory: the limits log, the snapshot and the directory lock.
pub struct Persist {
    dir: PathBuf,
    log: Mutex<LogState>,
    mode: AtomicU8,
    compact_min: u64,
    /// Tests only: the reopening of a compacted log fails.
    fail_reopen: bool,
    /// Held for the life of the process so that a second daemon cannot share the directory.
    _lock: File,
    last_save_unix: AtomicI64,
    last_save_ok: AtomicBool,
    bgsave: AtomicBool,
    errors: AtomicU64,
    snapshot_load_ok: AtomicBool,
    snapshot_load: Mutex<String>,
    log_load: Mutex<String>,
    /// Seconds between periodic snapshots; 0 = off (`--save-interval`, CONFIG SET).
    pub save_interval: AtomicU64,
    /// Rate-state changes since the last snapshot: checks and resets counted by connections
    /// (approximate; for INFO's rdb_changes_since_last_save).
    pub changes: AtomicU64,
}

/// What [`Persist::open`] read from the log: the commands to replay, in order.
pub struct Loaded {
    pub records: Vec<Vec<Bytes>>,
    /// A human sentence about what was found (for the start-up log and INFO).
    pub report: String,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Encode a command as a log record: header and RESP payload.
fn encode_record(args: &[&[u8]]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    payload.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        payload.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        payload.extend_from_slice(a);
        payload.extend_from_slice(b"\r\n");
    }
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decode one RESP payload back into arguments, with the protocol crate's decoder (generous
/// limits: the record was accepted live, perhaps under a raised --max-bulk-len).
fn decode_payload(payload: &[u8]) -> Option<Vec<Bytes>> {
    let mut decoder = Decoder::new(Limits {
        max_bulk_len: MAX_RECORD,
        max_array_len: 1 << 20,
        max_inline_len: 64 * 1024,
        max_request_len: MAX_RECORD,
    });
    let mut buf = BytesMut::from(payload);
    match decoder.decode(&mut buf) {
        Ok(Some(Request::Command(args))) if buf.is_empty() && !args.is_empty() => {
            Some(args.to_bytes())
        }
        _ => None,
    }
}

/// Make `rename`s and file creations in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Write `bytes` to `dir/name` durably through `dir/tmp` (src/durable_file.rs). The temporary
/// name is fixed, so that one left by a crash is found and removed at the next start.
fn write_atomically(dir: &Path, tmp: &str, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
    let path = dir.join(name);
    crate::durable_file::replace(&dir.join(tmp), &path, bytes).map_err(io_err(&path))
}

impl Persist {
    /// Open (creating if needed) the data directory, lock it, and read the limits log. A torn
    /// or corrupt tail is reported, its bytes are copied to `limits.log.corrupt-<unix time>`,
    /// and the log is truncated to its last complete record.
    pub fn open(dir: &Path) -> Result<(Persist, Loaded), PersistError> {
        std::fs::create_dir_all(dir).map_err(|source| PersistError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(PersistError::Locked(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(PersistError::Io {
                    path: lock_path,
                    source,
                })
            }
        }
        // A temp file left by a crash mid-compaction or mid-snapshot is incomplete by
        // definition (the rename is what completes it).
        for tmp in [LOG_TMP, SNAP_TMP] {
            let _ = std::fs::remove_file(dir.join(tmp));
        }

        let path = dir.join(LOG_NAME);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        let mut records = Vec::new();
        let mut report;
        let keep;
        if bytes.len() < LOG_MAGIC.len() {
            // Empty, or a header torn by a crash while the log was first created.
            if !LOG_MAGIC.starts_with(&bytes) {
                return Err(PersistError::BadHeader(path));
            }
            keep = 0;
            report = "limits log: empty".to_string();
        } else if &bytes[..LOG_MAGIC.len()] != LOG_MAGIC {
            return Err(PersistError::BadHeader(path));
        } else {
            let mut pos = LOG_MAGIC.len();
            let mut problem = None;
            while pos < bytes.len() {
                let Some(header) = bytes.get(pos..pos + RECORD_HEADER) else {
                    problem = Some("a record header cut short");
                    break;
                };
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                let mut sum = [0u8; 8];
                sum.copy_from_slice(&header[4..12]);
                if len > MAX_RECORD {
                    problem = Some("an impossible record length");
                    break;
                }
                let Some(payload) = bytes.get(pos + RECORD_HEADER..pos + RECORD_HEADER + len)
                else {
                    problem = Some("a record cut short");
                    break;
                };
                if xxh3_64(payload) != u64::from_le_bytes(sum) {
                    problem = Some("a record whose checksum does not match");
                    break;
                }
                let Some(args) = decode_payload(payload) else {
                    problem = Some("a record that is not a RESP command");
                    break;
                };
                records.push(args);
                pos += RECORD_HEADER + len;
            }
            keep = pos;
            report = format!(
                "limits log: {} record(s) loaded from {}",
                records.len(),
                path.display()
            );
            if let Some(problem) = problem {
                let dropped = bytes.len() - pos;
                let aside = dir.join(format!("{LOG_NAME}.corrupt-{}", unix_now()));
                let saved = std::fs::write(&aside, &bytes[pos..]).is_ok();
                report = format!(
                    "{report}; found {problem} at byte {pos}: the last {dropped} byte(s) were dropped (the tail of a write interrupted by a crash, or damage){}",
                    if saved {
                        format!(" and copied to {}", aside.display())
                    } else {
                        String::new()
                    }
                );
            }
        }

        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let size = if keep == 0 {
            file.set_len(0).map_err(io_err(&path))?;
            file.write_all(LOG_MAGIC).map_err(io_err(&path))?;
            LOG_MAGIC.len() as u64
        } else {
            file.set_len(keep as u64).map_err(io_err(&path))?;
            keep as u64
        };
        file.sync_all().map_err(io_err(&path))?;
        sync_dir(dir)?;

        let persist = Persist {
            dir: dir.to_path_buf(),
            log: Mutex::new(LogState {
                file: Some(file),
                broken: None,
                size,
                live: BTreeMap::new(),
                live_bytes: 0,
                preloaded: BTreeSet::new(),
                compactions: 0,
            }),
            mode: AtomicU8::new(Mode::Preload as u8),
            compact_min: COMPACT_MIN,
            fail_reopen: false,
            _lock: lock,
            last_save_unix: AtomicI64::new(0),
            last_save_ok: AtomicBool::new(true),
            bgsave: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            snapshot_load_ok: AtomicBool::new(true),
            snapshot_load: Mutex::new("no snapshot".into()),
            log_load: Mutex::new(report.clone()),
            changes: AtomicU64::new(0),
            save_interval: AtomicU64::new(0),
        };
        Ok((persist, Loaded { records, report }))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[cfg(test)]
    fn with_compact_min(mut self, min: u64) -> Persist {
        self.compact_min = min;
        self
    }

    #[cfg(test)]
    fn failing_reopen(mut self) -> Persist {
        self.fail_reopen = true;
        self
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            0 => Mode::Preload,
            1 => Mode::Replay,
            _ => Mode::Live,
        }
    }

    /// Config-file limits are done; what follows comes from the log.
    pub fn begin_replay(&self) {
        self.mode.store(Mode::Replay as u8, Ordering::Release);
    }

    /// Start-up is done: from now on every change is logged. Compacts if replay showed the
    /// log to be mostly dead records.
    pub fn go_live(&self) {
        self.mode.store(Mode::Live as u8, Ordering::Release);
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = self.maybe_compact(&mut log) {
            tracing::warn!("limits log compaction failed (the log is intact): {e}");
        }
    }

    /// Record a limit or tier change durably, then apply it. `args` is the command as the
    /// client sent it (already validated); `apply` changes the engine and says whether
    /// anything changed. `noop` is asked first, under the same lock: a change that would change
    /// nothing (deleting what is not there) is applied without being logged.
    ///
    /// The mutex is held across the append, the fsync and the apply, so concurrent changes
    /// reach the log in the order they reach the engine. The fsync blocks this worker thread
    /// (inside `block_in_place`, so the runtime moves other connections elsewhere): limit
    /// changes are rare and must not be acknowledged before they are durable.
    pub fn commit<R>(
        &self,
        args: &[&[u8]],
        key: RecordKey,
        kind: ChangeKind,
        noop: impl FnOnce() -> bool,
        apply: impl FnOnce() -> R,
    ) -> Result<R, PersistError> {
        let mode = self.mode();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if mode == Mode::Preload {
            log.preloaded.insert(key);
            return Ok(apply());
        }
        if noop() {
            return Ok(apply());
        }
        let record = encode_record(args);
        if mode == Mode::Live {
            if let Some(why) = &log.broken {
                return Err(PersistError::Broken(why.clone()));
            }
            let result = in_place(|| self.append(&mut log, &record));
            if let Err(e) = result {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        }
        let out = apply();
        // Update the live set.
        let new_len = record.len() as u64;
        let keep_tombstone = kind == ChangeKind::Del && log.preloaded.contains(&key);
        let old = if kind == ChangeKind::Set || keep_tombstone {
            log.live.insert(key, record)
        } else {
            log.live.remove(&key)
        };
        if let Some(old) = old {
            log.live_bytes -= old.len() as u64;
        }
        if kind == ChangeKind::Set || keep_tombstone {
            log.live_bytes += new_len;
        }
        if mode == Mode::Live {
            if let Err(e) = in_place(|| self.maybe_compact(&mut log)) {
                // This change is durable either way (appended and fsynced before). A failure
                // before the rename leaves the log as it was; one after it marks the log
                // broken (see `maybe_compact`).
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("limits log compaction failed: {e}");
            }
        }
        Ok(out)
    }

    /// Append one record and fdatasync. On a failed write the file is cut back to its last
    /// complete record, so a later record can never sit behind garbage (which loading would
    /// treat as the end of the log). A failed fsync leaves the file's state unknown: the log
    /// is marked broken and refuses further changes.
    fn append(&self, log: &mut LogState, record: &[u8]) -> Result<(), PersistError> {
        let path = self.dir.join(LOG_NAME);
        let Some(file) = log.file.as_mut() else {
            return Err(PersistError::Broken(log.broken.clone().unwrap_or_default()));
        };
        if let Err(e) = file.write_all(record) {
            let restored = file.set_len(log.size).and_then(|_| file.sync_data());
            if let Err(e2) = restored {
                self.break_log(
                    log,
                    format!("write failed ({e}) and could not be undone ({e2})"),
                );
            }
            return Err(io_err(&path)(e));
        }
        if let Err(e) = file.sync_data() {
            self.break_log(log, format!("fsync failed ({e})"));
            return Err(io_err(&path)(e));
        }
        log.size += record.len() as u64;
        Ok(())
    }

    /// Rewrite the log as the live set when it has grown past twice the live set's size.
    fn maybe_compact(&self, log: &mut LogState) -> Result<(), PersistError> {
        let live_total = LOG_MAGIC.len() as u64 + log.live_bytes;
        if log.broken.is_some() || log.size < self.compact_min || log.size <= 2 * live_total {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(live_total as usize);
        bytes.extend_from_slice(LOG_MAGIC);
        for record in log.live.values() {
            bytes.extend_from_slice(record);
        }
        let path = self.dir.join(LOG_NAME);
        if let Err(e) = write_atomically(&self.dir, LOG_TMP, LOG_NAME, &bytes) {
            if self.still_the_log(log, &path) {
                // Failed before the rename: the log is intact, and appends go on to it.
                return Err(e);
            }
            // Renamed, then the directory's fsync failed: whether the new name survives a
            // crash is unknown, so nothing more may be acknowledged until a restart.
            return Err(self.break_log(log, format!("compaction: {e}")));
        }
        let reopened = if self.fail_reopen {
            Err(std::io::Error::other("injected by a test"))
        } else {
            OpenOptions::new().append(true).read(true).open(&path)
        };
        let file = match reopened {
            Ok(file) => file,
            Err(e) => {
                // The compacted log is in place but cannot be written: appending to the old
                // handle would write to a file no longer named, acknowledged and then lost at
                // the next start.
                let why = format!("compacted log could not be reopened: {e}");
                return Err(self.break_log(log, why));
            }
        };
        let before = log.size;
        log.file = Some(file);
        log.size = bytes.len() as u64;
        log.compactions += 1;
        tracing::info!(
            "limits log compacted: {before} -> {} bytes ({} live records)",
            log.size,
            log.live.len()
        );
        Ok(())
    }

    /// Whether the file at `path` is still the one `log` appends to (same device and inode).
    fn still_the_log(&self, log: &LogState, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let (Some(file), Ok(named)) = (log.file.as_ref(), std::fs::metadata(path)) else {
            return false;
        };
        file.metadata()
            .is_ok_and(|open| open.dev() == named.dev() && open.ino() == named.ino())
    }

    /// Refuse every further change until restart (as a failed fsync does), for `why`.
    fn break_log(&self, log: &mut LogState, why: String) -> PersistError {
        tracing::error!("limits log: {why}; further limit changes are refused until restart");
        log.broken = Some(why.clone());
        log.file = None;
        PersistError::Broken(why)
    }

    // -----------------------------------------------------------------------------------------
    // Snapshots

    /// Write a snapshot durably and record the outcome for LASTSAVE and INFO.
    pub fn write_snapshot(&self, bytes: &[u8]) -> Result<(), PersistError> {
        let result = write_atomically(&self.dir, SNAP_TMP, SNAP_NAME, bytes);
        match &result {
            Ok(()) => {
                self.last_save_unix.store(unix_now(), Ordering::Relaxed);
                self.last_save_ok.store(true, Ordering::Relaxed);
                self.changes.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                self.last_save_ok.store(false, Ordering::Relaxed);
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("snapshot failed: {e}");
            }
        }
        result
    }

    /// The snapshot's bytes, or None when there is none.
    pub fn read_snapshot(&self) -> Result<Option<Vec<u8>>, PersistError> {
        let path = self.dir.join(SNAP_NAME);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Remember how loading the snapshot went (for INFO and /metrics).
    pub fn set_snapshot_load(&self, ok: bool, what: String) {
        self.snapshot_load_ok.store(ok, Ordering::Relaxed);
        if let Ok(mut s) = self.snapshot_load.lock() {
            *s = what;
        }
    }

    /// Rename a snapshot that failed to load to `state.snap.corrupt-<unix time>`, so that it
    /// can be inspected and is not mistaken for a good one again. Returns a phrase for the log.
    pub fn move_snapshot_aside(&self) -> String {
        let from = self.dir.join(SNAP_NAME);
        let to = self.dir.join(format!("{SNAP_NAME}.corrupt-{}", unix_now()));
        match std::fs::rename(&from, &to) {
            Ok(()) => format!("; the bad file was moved to {}", to.display()),
            Err(e) => format!("; could not move the bad file aside: {e}"),
        }
    }

    /// Claim the single background-save slot; false if a save is already running.
    pub fn try_begin_bgsave(&self) -> bool {
        self.bgsave
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn end_bgsave(&self) {
        self.bgsave.store(false, Ordering::Release);
    }

    /// Unix time of the last successful save (LASTSAVE); the start time before any.
    pub fn last_save(&self) -> i64 {
        self.last_save_unix.load(Ordering::Relaxed)
    }

    /// Set the LASTSAVE time reported before the first save (the process start).
    pub fn init_last_save(&self) {
        let _ = self.last_save_unix.compare_exchange(
            0,
            unix_now(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub fn status(&self) -> Status {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        Status {
            dir: self.dir.display().to_string(),
            log_bytes: log.size,
            log_live_records: log.live.len() as u64,
            compactions: log.compactions,
            last_save_unix: self.last_save_unix.load(Ordering::Relaxed),
            last_save_ok: self.last_save_ok.load(Ordering::Relaxed),
            bgsave_in_progress: self.bgsave.load(Ordering::Relaxed),
            changes_since_save: self.changes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            snapshot_load_ok: self.snapshot_load_ok.load(Ordering::Relaxed),
            snapshot_load: self
                .snapshot_load
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            log_load: self.log_load.lock().map(|s| s.clone()).unwrap_or_default(),
        }
    }
}

/// Run blocking file I/O without stalling the other connections of this worker thread: on the
/// multi-threaded runtime, `block_in_place` hands them to other workers first. Elsewhere
/// (start-up, tests, and the current-thread runtime of a `--threads 1` daemon, which has no
/// other worker to hand them to) it simply runs. Every blocking call site goes through here.
pub fn in_place<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The default data directory, relative to the working directory.
pub const DEFAULT_DIR: &str = "./data";

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ratelimitd-persist-{name}-{}-{}",
            std::process::id(),
            unix_now()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn args<'a>(words: &[&'a str]) -> Vec<&'a [u8]> {
        words.iter().map(|w| w.as_bytes()).collect()
    }

    fn tier_key(c: &str) -> RecordKey {
        RecordKey::Tier(c.as_bytes().to_vec())
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_truncated_and_copied_aside() {
        let dir = tempdir("torn");
        {
            let (p, loaded) = Persist::open(&dir).expect("open");
            assert!(loaded.records.is_empty());
            p.go_live();
            for c in ["a", "b\r\nbinary\0"] {
                p.commit(
                    &args(&["RL.TIER", "SET", c, "gold"]),
                    tier_key(c),
                    ChangeKind::Set,
                    || false,
                    || (),
                )
                .expect("commit");
            }
        }
        // Simulate a crash mid-append: half a record at the end.
        let log = dir.join(LOG_NAME);
        let partial = encode_record(&args(&["RL.TIER", "SET", "c", "gold"]));
        let mut f = OpenOptions::new().append(true).open(&log).expect("log");
        f.write_all(&partial[..partial.len() / 2]).expect("write");
        drop(f);
        let before = std::fs::metadata(&log).expect("meta").len();
        let (_p, loaded) = Persist::open(&dir).expect("reopen");
        assert_eq!(loaded.records.len(), 2, "{}", loaded.report);
        assert_eq!(&loaded.records[1][2][..], b"b\r\nbinary\0");
        assert!(loaded.report.contains("cut short"), "{}", loaded.report);
        let after = std::fs::metadata(&log).expect("meta").len();
        assert_eq!(before - after, (partial.len() / 2) as u64);
        let aside = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(aside, "the dropped tail is kept for inspection");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_flipped_byte_is_detected_by_the_checksum() {
        let dir = tempdir("flip");
        {
            let (p, _) = Persist::open(&dir).expect("open");
            p.go_live();
            for c in ["a", "b", "c"] {
                p.commit(
                    &args(&["RL.TIER", "SET", c, "gold"]),
                    tier_key(c),
                    ChangeKind::Set,
                    || false,
                    || (),
                )
                .expect("commit");
            }
        }
        let log = dir.join(LOG_NAME);
        let mut bytes = std::fs::read(&log).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        std::fs::write(&log, &bytes).expect("write");
        let (_p, loaded) = Persist::open(&dir).expect("reopen");
        assert_eq!(loaded.records.len(), 2);
        assert!(loaded.report.contains("checksum"), "{}", loaded.report);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_only_the_live_set_and_preloaded_tombstones() {
        let dir = tempdir("compact");
        {
            let (p, _) = Persist::open(&dir).expect("open");
            let p = p.with_compact_min(256);
            // "file" is preloaded by the config file; its delete must survive compaction.
            p.commit(
                &args(&["RL.TIER", "SET", "file", "gold"]),
                tier_key("file"),
                ChangeKind::Set,
                || false,
                || (),
            )
            .expect("preload");
            p.begin_replay();
            p.go_live();
            p.commit(
                &args(&["RL.TIER", "DEL", "file"]),
                tier_key("file"),
                ChangeKind::Del,
                || false,
                || (),
            )
            .expect("del");
            for i in 0..200 {
                p.commit(
                    &args(&["RL.TIER", "SET", "x", &format!("t{i}")]),
                    tier_key("x"),
                    ChangeKind::Set,
                    || false,
                    || (),
                )
                .expect("commit");
            }
            let s = p.status();
            assert!(s.compactions > 0);
            assert!(s.log_bytes < 1024, "compacted to {} bytes", s.log_bytes);
        }
        let (_p, loaded) = Persist::open(&dir).expect("reopen");
        let texts: Vec<String> = loaded
            .records
            .iter()
            .map(|r| {
                r.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        // The compacted live set, plus what was appended after the last compaction.
        assert!(texts.len() <= 4, "{texts:?}");
        assert!(texts.contains(&"RL.TIER DEL file".to_string()));
        assert_eq!(texts.last().map(String::as_str), Some("RL.TIER SET x t199"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_compacted_log_that_cannot_be_reopened_refuses_further_changes() {
        // After the rename, the old handle writes to a file no longer named: a change
        // appended there would be acknowledged and then missing at the next start. Every
        // change that was acknowledged must be there after a restart.
        let dir = tempdir("reopen");
        let mut acknowledged = Vec::new();
        let mut refused = 0;
        {
            let (p, _) = Persist::open(&dir).expect("open");
            let p = p.with_compact_min(256).failing_reopen();
            p.go_live();
            for i in 0..100 {
                let tier = format!("t{i}");
                let r = p.commit(
                    &args(&["RL.TIER", "SET", "x", &tier]),
                    tier_key("x"),
                    ChangeKind::Set,
                    || false,
                    || (),
                );
                match r {
                    Ok(()) => acknowledged.push(tier),
                    Err(PersistError::Broken(_)) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(
                p.status().compactions,
                0,
                "every compaction failed to reopen"
            );
        }
        let (_p, loaded) = Persist::open(&dir).expect("reopen");
        let last = loaded
            .records
            .last()
            .map(|r| String::from_utf8_lossy(&r[3]).into_owned());
        assert_eq!(
            last.as_ref(),
            acknowledged.last(),
            "the last acknowledged change"
        );
        assert!(refused > 0, "changes after the failed reopen are refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory_and_a_foreign_file_is_refused() {
        let dir = tempdir("lock");
        let (_p, _) = Persist::open(&dir).expect("open");
        assert!(matches!(Persist::open(&dir), Err(PersistError::Locked(_))));
        drop(_p);
        std::fs::write(dir.join(LOG_NAME), b"hello world, not a log").expect("write");
        assert!(matches!(
            Persist::open(&dir),
            Err(PersistError::BadHeader(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
